"""Checks an uploaded certificate, its key and its chain before anything is stored (UP-3).

`inspect_bundle` is pure over its inputs (no store, no network): it parses, checks and
describes the bundle, or raises a `BadInputError` whose `Reason` and sentence say what failed and
what to do instead. Decisions taken here (documented for operators):

- ``--cert`` holds the server certificate. A full chain pasted there (one leaf followed by CA
  certificates, like certbot's ``fullchain.pem``) is accepted: the CA certificates join the chain,
  with a warning. Two or more leaf certificates are refused (BAD_PEM).
- The chain is re-ordered so each certificate issued the previous one (issuer name matches and
  the signature verifies); a re-ordering is reported as a warning. A certificate that does not
  link is refused (BAD_CHAIN, naming its subject). The leaf repeated in the chain and duplicate
  intermediates are dropped with a warning. A self-signed root is dropped from the served
  chain (clients carry their own roots) with a warning.
- Key algorithms: exactly the `KeyAlgorithm` members (RSA 2048/3072/4096, EC P-256/P-384);
  anything else is refused naming its size, curve or type (WEAK_KEY).
- Expired or not yet valid certificates are imported with a warning, not refused.
- No subjectAltName → NO_SAN (browsers ignore the CN). Names go through `core.names` (UP-1).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from certpilot.core import names as core_names
from certpilot.core.errors import BadInputError, Reason, Warning_
from certpilot.core.limits import MAX_BUNDLE_CERTS, MAX_CHAIN_LENGTH, MAX_COMMON_NAME, MAX_SANS, too_many
from certpilot.core.models import DEFAULT_POLICY, CertType, KeyAlgorithm, Policy, utc
from certpilot.core.text import has_unsafe_chars, visible
from certpilot.crypto.pem import (
    as_bytes,
    fingerprint,
    key_algorithm_of,
    load_certificates,
    load_private_key,
    private_key_pem,
    public_key_fingerprint,
    spki_der,
    to_pem,
)


@dataclass(frozen=True)
class ImportedBundle:
    """What an uploaded bundle holds, checked. The private key is kept out of `repr`."""

    names: tuple[str, ...]
    common_name: str
    cert_type: CertType
    key_algorithm: KeyAlgorithm
    not_before: datetime
    not_after: datetime
    serial: str
    """Serial number, lowercase hex without colons or leading zeros."""
    fingerprint_sha256: str
    """SHA-256 of the leaf's DER, lowercase hex without colons."""
    public_key_fingerprint: str
    """SHA-256 of the leaf's SubjectPublicKeyInfo DER (identifies the key pair; not secret)."""
    issuer: str
    subject: str
    leaf_pem: str
    chain_pems: tuple[str, ...]
    """Intermediates, the leaf's issuer first; a self-signed root is never included."""
    has_key: bool
    warnings: tuple[Warning_, ...] = ()
    key_pem: bytes | None = field(default=None, repr=False, compare=False)
    """The private key as unencrypted PKCS#8 PEM, for the vault only; never log or return it."""

    @property
    def fullchain_pem(self) -> str:
        """Leaf followed by the intermediates (the bundle a server sends, DEP-6)."""
        return self.leaf_pem + "".join(self.chain_pems)


def _given(data: bytes | str | None) -> bool:
    """An optional input counts as given when it holds more than whitespace."""
    return bool(as_bytes(data).strip())


def _name(n: x509.Name) -> str:
    """The name as RFC 4514 text with control characters escaped (it reaches messages and the store)."""
    return visible(n.rfc4514_string(), limit=300) or "(empty name)"


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _links(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True when `parent` issued `child`: names match and the signature verifies."""
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm
        return False
    return True


def _self_signed(cert: x509.Certificate) -> bool:
    return _links(cert, cert)


def _common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return (value.decode("utf-8", "replace") if isinstance(value, bytes) else value).strip().lower()


def _checked_common_name(leaf: x509.Certificate, names: list[str], warnings: list[Warning_]) -> str:
    """The CN to store: the CN in normal form when it is one of the certificate's names.

    The CN is what notices and the inventory show, so it must be a name, not free text: a CN
    holding control characters (CR/LF, NUL, bidi overrides) is refused; a CN that is not a
    valid name, or names none of the SANs, is replaced by the first SAN with a warning.

    Raises:
        BadInputError(INVALID_NAME): the CN holds control characters or is longer than RFC 5280 allows.
    """
    attrs = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return names[0]
    value = attrs[0].value
    raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if has_unsafe_chars(raw) or len(raw) > MAX_COMMON_NAME:
        why = "holds control or invisible characters" if has_unsafe_chars(raw) else \
            f"is {len(raw)} characters long (RFC 5280 allows {MAX_COMMON_NAME})"
        raise BadInputError(f"the certificate's common name '{visible(raw, limit=80)}' {why}: it is not a name; "
                            "reissue the certificate with its host name as CN (or no CN).", Reason.INVALID_NAME)
    try:
        cn = core_names.normalize_name(raw)
    except BadInputError:
        cn = None
    if cn in names:
        return cn
    warnings.append(Warning_("cn-not-a-san", f"the common name '{visible(raw, limit=80)}' is not one of the "
                             f"certificate's names; the inventory shows it as '{names[0]}'."))
    return names[0]


def _pick_leaf(certs: list[x509.Certificate]) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The one server certificate of --cert, and any CA certificates that came with it."""
    if len(certs) == 1:
        return certs[0], []
    leaves = [c for c in certs if not _is_ca(c)]
    if len(leaves) != 1:
        subjects = ", ".join(f"'{_name(c.subject)}'" for c in (leaves or certs))
        raise BadInputError(
            f"--cert holds {len(certs)} certificates of which {len(leaves)} are server (leaf) certificates "
            f"({subjects}); put only the server certificate in --cert and the intermediates in --chain.",
            Reason.BAD_PEM,
        )
    return leaves[0], [c for c in certs if c is not leaves[0]]


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    found: list[str] = []
    if san is not None and len(san) > MAX_SANS:
        raise BadInputError(f"the certificate holds {len(san)} subjectAltName entries, more than the {MAX_SANS} "
                            "certpilot reads; no certificate it can renew or deploy holds that many.",
                            Reason.INPUT_TOO_LARGE)
    if san is not None:
        # In the certificate's own order: the first name is the primary one when there is no CN.
        found = [str(gn.value) for gn in san if isinstance(gn, x509.DNSName | x509.IPAddress)]
    if not found:
        cn = visible(_common_name(cert) or "(none)", limit=80)
        raise BadInputError(
            f"the certificate (CN '{cn}') has no subjectAltName with a DNS name or IP address: browsers "
            "ignore the common name, so it would not be trusted; reissue it with the names in the SAN.",
            Reason.NO_SAN,
        )
    return found


def _check_names(raw: list[str], policy: Policy, publicly_trusted: bool) -> tuple[list[str], CertType]:
    """Normalize and check the SAN names (UP-1); private IPs are fine for private-CA certificates."""
    normalized: list[str] = []
    for n in raw:
        value = core_names.normalize_name(n)
        if value not in normalized:
            normalized.append(value)
    cert_type = core_names.infer_type(normalized)
    checked = normalized
    if not publicly_trusted:
        # A private CA may name private IPs: check the shape (count, type, wildcards) with each
        # private IP standing in as an ordinary host name.
        checked = [f"private-ip-{i}.internal" if _is_private_ip(n) else n for i, n in enumerate(normalized)]
    refusal = core_names.check_names(checked, cert_type, policy)
    if refusal is not None:
        hint = (" (a certificate from a private CA: import it with origin private-ca)"
                if refusal.reason is Reason.PRIVATE_IP else "")
        raise BadInputError(f"the certificate's names are refused: {refusal.message}{hint}.", refusal.reason)
    return normalized, cert_type


def _is_private_ip(name: str) -> bool:
    try:
        return not ipaddress.ip_address(name).is_global
    except ValueError:
        return False


def _order_chain(leaf: x509.Certificate, given: list[x509.Certificate], warnings: list[Warning_]
                 ) -> list[x509.Certificate]:
    """Order `given` from the leaf's issuer upwards; refuse a certificate that does not link."""
    leaf_fp = fingerprint(leaf)
    unique: list[x509.Certificate] = []
    seen: set[str] = set()
    for cert in given:
        fp = fingerprint(cert)
        if fp == leaf_fp:
            warnings.append(Warning_("leaf-in-chain", "the chain repeated the server certificate itself; "
                                     "that copy was dropped (give only intermediates in --chain)."))
            continue
        if fp in seen:
            warnings.append(Warning_("duplicate-in-chain",
                                     f"'{_name(cert.subject)}' appeared twice in the chain; one copy was dropped."))
            continue
        seen.add(fp)
        unique.append(cert)

    too_long = too_many(len(unique), MAX_CHAIN_LENGTH, what="the chain holds that many CA certificates",
                        advice="give only the intermediates between the server certificate and its root.")
    if too_long is not None:
        raise too_long
    path: list[x509.Certificate] = []
    remaining = list(unique)
    # Indexed by subject: each step verifies signatures only of the certificates named as the
    # current issuer (a flood of unrelated certificates costs nothing; issue 15).
    by_subject: dict[bytes, list[x509.Certificate]] = {}
    for cert in unique:
        by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)
    current = leaf
    while remaining:
        candidates = by_subject.get(current.issuer.public_bytes(), [])
        parent = next((c for c in candidates if _links(current, c)), None)
        if parent is None:
            break
        path.append(parent)
        remaining.remove(parent)
        candidates.remove(parent)  # each certificate is used once: a cycle cannot loop
        current = parent
    if remaining:
        stray = remaining[0]
        below = "the server certificate" if not path else f"'{_name(path[-1].subject)}'"
        if stray.subject == current.issuer:
            raise BadInputError(
                f"the chain holds '{_name(stray.subject)}', which has the name of {below}'s issuer but did not "
                "sign it (the signature does not verify): it is another CA certificate with the same name; "
                "get the intermediates that belong to this certificate from its CA.",
                Reason.BAD_CHAIN,
            )
        raise BadInputError(
            f"the chain holds '{_name(stray.subject)}' (issued by '{_name(stray.issuer)}'), which does not "
            f"link up from the server certificate: it did not issue {below} nor any certificate of the chain; "
            "remove it, or give the intermediates that belong to this certificate.",
            Reason.BAD_CHAIN,
        )
    _refuse_cycle(path)
    if path != unique:
        warnings.append(Warning_("chain-reordered", "the chain was not in order (each certificate followed by "
                                 "its issuer); it was re-ordered from the server certificate up."))
    if path and _self_signed(path[-1]):
        root = path.pop()
        warnings.append(Warning_("root-dropped", f"the self-signed root '{_name(root.subject)}' was dropped from "
                                 "the served chain: clients carry their own roots."))
    return path


def _refuse_cycle(path: list[x509.Certificate]) -> None:
    """Refuse a chain whose top certificate was issued by one below it (cross-signed in a loop).

    Raises:
        BadInputError(BAD_CHAIN): naming the certificate the chain loops back to.
    """
    if len(path) < 2 or _self_signed(path[-1]):
        return
    top = path[-1]
    loop = next((c for c in path[:-1] if c.subject == top.issuer and _links(top, c)), None)
    if loop is not None:
        raise BadInputError(
            f"the chain loops: '{_name(top.subject)}' was issued by '{_name(loop.subject)}', which is below it in "
            "the chain, so it never reaches a root; give the intermediates that lead to the CA's root.",
            Reason.BAD_CHAIN,
        )


def inspect_bundle(cert_pem: bytes | str, key_pem: bytes | str | None = None,
                   chain_pem: bytes | str | None = None, *, now: datetime,
                   passphrase: bytes | str | None = None, policy: Policy = DEFAULT_POLICY,
                   publicly_trusted: bool = True) -> ImportedBundle:
    """Parse and check an uploaded certificate with its optional key and chain (UP-3, UP-1).

    Args:
        cert_pem: the server certificate (PEM); a full chain after it is accepted with a warning.
        key_pem: its private key (PEM, maybe encrypted), or None when the key is not held.
        chain_pem: the intermediates (PEM), in any order.
        now: the time of the import (timezone-aware UTC), for the expiry warnings.
        passphrase: the key's passphrase when it is encrypted.
        policy: limits of the name rules (UP-1).
        publicly_trusted: False for private-CA certificates, whose SAN may hold private IPs.

    Returns:
        The checked bundle, with warnings (expired, not yet valid, chain re-ordered, root dropped...).

    Raises:
        BadInputError: with reason BAD_PEM, WEAK_KEY, NO_SAN, a UP-1 name reason, ENCRYPTED_KEY,
            KEY_MISMATCH or BAD_CHAIN; the message never holds key material.
    """
    now = utc(now)
    warnings: list[Warning_] = []
    leaf, extra_chain = _leaf_of(cert_pem, warnings)
    algorithm = key_algorithm_of(leaf.public_key())
    names, cert_type = _check_names(_san_names(leaf), policy, publicly_trusted)
    key_pkcs8 = _key_of(leaf, key_pem, passphrase, warnings)
    chain = _chain_of(leaf, extra_chain, chain_pem, warnings)
    warnings += _validity_warnings(leaf, chain, now)
    return ImportedBundle(
        names=tuple(names),
        common_name=_checked_common_name(leaf, names, warnings),
        cert_type=cert_type,
        key_algorithm=algorithm,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        serial=format(leaf.serial_number, "x"),
        fingerprint_sha256=fingerprint(leaf),
        public_key_fingerprint=public_key_fingerprint(leaf.public_key()),
        issuer=_name(leaf.issuer),
        subject=_name(leaf.subject),
        leaf_pem=to_pem(leaf),
        chain_pems=tuple(to_pem(c) for c in chain),
        has_key=key_pkcs8 is not None,
        warnings=tuple(warnings),
        key_pem=key_pkcs8,
    )


def _leaf_of(cert_pem: bytes | str, warnings: list[Warning_]) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The server certificate of --cert and the CA certificates pasted after it (with a warning)."""
    leaf, extra_chain = _pick_leaf(load_certificates(cert_pem, what="--cert"))
    if extra_chain:
        warnings.append(Warning_("chain-in-cert-file", f"--cert also held {len(extra_chain)} CA certificate(s); "
                                 "they were taken as the chain."))
    return leaf, extra_chain


def _key_of(leaf: x509.Certificate, key_pem: bytes | str | None, passphrase: bytes | str | None,
            warnings: list[Warning_]) -> bytes | None:
    """The leaf's private key as unencrypted PKCS#8 PEM (for the vault only), or None when not given.

    Raises:
        BadInputError: the key does not parse, is encrypted without a (right) passphrase, is
            weak, or does not belong to the certificate (KEY_MISMATCH).
    """
    if not _given(key_pem):
        warnings.append(Warning_("no-key", "no private key was given: certpilot cannot deploy this certificate "
                                 "itself (CSR-2); import it again with --key to let it."))
        return None
    key, was_encrypted = load_private_key(key_pem, passphrase=passphrase, what="--key")
    if spki_der(key.public_key()) != spki_der(leaf.public_key()):
        raise BadInputError(
            f"the private key does not belong to the certificate '{_name(leaf.subject)}' (their public keys "
            "differ); give the key this certificate was issued for.",
            Reason.KEY_MISMATCH,
        )
    if passphrase and not was_encrypted:
        warnings.append(Warning_("passphrase-unused", "a passphrase was given but the key is not encrypted."))
    return private_key_pem(key)


def _chain_of(leaf: x509.Certificate, extra_chain: list[x509.Certificate], chain_pem: bytes | str | None,
              warnings: list[Warning_]) -> list[x509.Certificate]:
    """The served chain: --cert's extra CA certificates and --chain, ordered from the leaf's issuer up.

    Raises:
        BadInputError: (BAD_PEM) --chain does not parse; (BAD_CHAIN) a certificate does not link.
    """
    given = extra_chain + (load_certificates(chain_pem, what="--chain") if _given(chain_pem) else [])
    too_big = too_many(len(given) + 1, MAX_BUNDLE_CERTS, what="the bundle holds that many certificates",
                       advice="give the server certificate and only its intermediates.")
    if too_big is not None:
        raise too_big
    chain = _order_chain(leaf, given, warnings)
    if chain or _self_signed(leaf):
        return chain
    root = next((w for w in warnings if w.code == "root-dropped"), None)
    if root is not None:
        # The root linked to the leaf, so it issued it directly: the leaf alone is a complete chain.
        warnings.remove(root)
        warnings.append(Warning_("root-only-chain", f"the chain held only the root '{_name(leaf.issuer)}', which "
                                 "issued this certificate directly; no intermediate is needed: servers send the "
                                 "certificate alone and clients check it against their own copy of that root."))
    else:
        warnings.append(Warning_("no-chain", "no intermediate certificates were given: unless its issuer is a root "
                                 "that clients trust, servers will send an incomplete chain (DEP-6); pass --chain."))
    return chain


def _validity_warnings(leaf: x509.Certificate, chain: list[x509.Certificate], now: datetime) -> list[Warning_]:
    """Expired or not-yet-valid leaf, expired intermediates: imported, with a warning each."""
    warnings: list[Warning_] = []
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if now > not_after:
        warnings.append(Warning_("expired", f"the certificate expired on {not_after:%Y-%m-%d}; it is imported so it "
                                 "can be replaced, but it is not valid now."))
    elif now < not_before:
        warnings.append(Warning_("not-yet-valid", f"the certificate is valid only from {not_before:%Y-%m-%d %H:%M} UTC."))
    for c in chain:
        if now > c.not_valid_after_utc:
            warnings.append(Warning_("chain-expired", f"the intermediate '{_name(c.subject)}' expired on "
                                     f"{c.not_valid_after_utc:%Y-%m-%d}; get the current chain from the CA."))
    return warnings
