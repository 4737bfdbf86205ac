"""Certificate signing requests: build one from a key and names, check one before it is sent.

CSR-4: every CSR, system-built or supplied, goes through `check_csr` before any CA sees it:
the signature verifies, the names equal the order's (normalized, order-free), and the key
algorithm equals the original certificate's (CSR-2).
"""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from certpilot.core.errors import Reason, Refusal
from certpilot.core.models import KeyAlgorithm
from certpilot.crypto.keys import PrivateKey, key_algorithm_of
from certpilot.crypto.pem import public_key_fingerprint


def canonical_name(name: str) -> str:
    """A name as compared by CSR checks: the same normal form as the inventory's names
    (`certpilot.core.names.normalize_name`: lower case, no trailing dot, UTS-46 A-labels, IPs as
    text), so a CSR, an issued certificate and a stored name compare equal. A name that
    normal form refuses is only lower-cased (the check that uses it then reports the mismatch).
    """
    from certpilot.core.errors import BadInputError
    from certpilot.core.names import normalize_name

    try:
        return normalize_name(name)
    except BadInputError:
        return name.strip().rstrip(".").lower()


def build_csr(key: PrivateKey, names: list[str]) -> bytes:
    """Build a PEM CSR for `names` (first one the subject CN), signed by `key`.

    Args:
        key: the private key (RSA or EC) whose public half the CSR carries.
        names: DNS names or IP addresses; the first becomes the common name.
    Raises:
        ValueError: when `names` is empty.
    """
    if not names:
        raise ValueError("a CSR needs at least one name")
    canon = [canonical_name(n) for n in names]
    sans: list[x509.GeneralName] = []
    for n in canon:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, canon[0][:64])])
    ).add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """The names a CSR asks for: its SAN entries, or its CN when it has no SAN (canonical form)."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [canonical_name(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        return names
    except x509.ExtensionNotFound:
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [canonical_name(str(cns[0].value))] if cns else []


def load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest | None:
    """Parse a PEM (or DER) CSR; None when it is not one."""
    for loader in (x509.load_pem_x509_csr, x509.load_der_x509_csr):
        try:
            return loader(csr_pem)
        except ValueError:
            continue
    return None


def check_csr(csr_pem: bytes, names: list[str], expected_alg: KeyAlgorithm | None) -> Refusal | None:
    """CSR-4 (and CSR-2): check a CSR before it is sent to a CA.

    Args:
        csr_pem: the CSR, PEM.
        names: the order's names; compared as a set after normalization.
        expected_alg: the original certificate's key algorithm; None skips that check.
    Returns:
        None when the CSR may be sent, else a Refusal (CSR_INVALID, CSR_NAMES, CSR_ALGORITHM)
        naming what is wrong and what to do.
    """
    csr = load_csr(csr_pem)
    if csr is None:
        return Refusal(Reason.CSR_INVALID, "the CSR is not a PEM or DER certificate signing request; "
                       "supply a PEM 'CERTIFICATE REQUEST'.", "CSR-4")
    if not csr.is_signature_valid:
        return Refusal(Reason.CSR_INVALID, "the CSR's signature does not verify against its own public "
                       "key; regenerate the CSR with the matching private key.", "CSR-4")
    alg = key_algorithm_of(csr.public_key())
    if alg is None:
        return Refusal(Reason.CSR_ALGORITHM, "the CSR's key algorithm is not supported; use RSA "
                       "2048/3072/4096 or ECDSA P-256/P-384.", "CSR-2")
    if expected_alg is not None and alg != KeyAlgorithm(expected_alg):
        return Refusal(Reason.CSR_ALGORITHM, f"the CSR's key is {alg.value} but the original certificate's "
                       f"is {KeyAlgorithm(expected_alg).value}; generate the CSR with a "
                       f"{KeyAlgorithm(expected_alg).value} key, or let certpilot generate the key.", "CSR-2")
    got = set(csr_names(csr))
    want = {canonical_name(n) for n in names}
    if got != want:
        missing = sorted(want - got)
        extra = sorted(got - want)
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"not in the order: {', '.join(extra)}")
        return Refusal(Reason.CSR_NAMES, f"the CSR's names differ from the order's ({'; '.join(parts)}); "
                       f"build the CSR for exactly {', '.join(sorted(want))}.", "CSR-4")
    return None


def csr_public_fingerprint(csr_pem: bytes) -> str:
    """The SHA-256 fingerprint of a CSR's public key (to link a supplied CSR to its certificate)."""
    csr = load_csr(csr_pem)
    if csr is None:
        raise ValueError("not a CSR")
    return public_key_fingerprint(csr.public_key())
