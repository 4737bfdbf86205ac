"""The embedded private CA: certpilot's default issuer and EL-4's reissue path.

It creates its root and intermediate on first use (keys sealed in the vault; certificates and
key ids kept through a `PrivateCaStore` port, the store's `private_ca` tables), signs CSRs under a policy (validity, allowed name suffixes, a
simulated review delay for OV/EV flows), serves its chain, revokes and publishes a CRL. It is
not publicly trusted.

The signing itself is pure (`make_root`, `make_intermediate`, `sign_csr`, `build_crl`: data in,
certificate out, `now` injected); `PrivateCa` is the adapter that keeps its state through the port.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certpilot.adapters.issuers.base import Application, IssuedChain, OrderStatus, PollResult
from certpilot.core.errors import NotFoundError, PermanentError, Reason, Refusal, RefusedError
from certpilot.core.models import KeyAlgorithm
from certpilot.crypto.csr import canonical_name, check_csr, csr_names, load_csr
from certpilot.crypto.keys import PrivateKey, generate_key, open_key, public_fingerprint, store_key
from certpilot.crypto.vault import KeyVault, OfflineKey

CA_PURPOSE = "ca"
"""Bound into the associated data of the CA's sealed keys."""


class CaState(Protocol):
    """A private CA as kept: its certificates and its sealed keys' ids (no key material)."""

    @property
    def id(self) -> str:
        """The CA's id in the store."""
        ...

    @property
    def root_pem(self) -> str:
        """The root certificate (PEM)."""
        ...

    @property
    def intermediate_pem(self) -> str:
        """The intermediate certificate (PEM), which signs leaves and CRLs."""
        ...

    @property
    def intermediate_key_id(self) -> str:
        """The sealed intermediate key's id."""
        ...


class IssuedState(Protocol):
    """A request to the CA as kept: the signed leaf, held until its review has passed."""

    @property
    def names(self) -> Iterable[str]:
        """The certificate's names (canonical)."""
        ...

    @property
    def cert_pem(self) -> str:
        """The signed leaf (PEM)."""
        ...

    @property
    def ready_at(self) -> datetime:
        """When the simulated review ends."""
        ...


@dataclass(frozen=True)
class CaMaterial:
    """A new CA's certificates and its keys' ids, handed to `PrivateCaStore.ensure` to record."""

    root_pem: str
    root_key_id: str
    intermediate_pem: str
    intermediate_key_id: str
    created_at: datetime


class PrivateCaStore(Protocol):
    """Where the private CA keeps its state (the store implements it:
    `certpilot.store.ports.SqlPrivateCaStore`). Each method is one transaction."""

    def ensure(self, name: str, create: Callable[[Any], CaMaterial]) -> CaState:
        """The CA called `name`; on first use `create` (given a `crypto.keys` key store of the
        same transaction) seals its keys and returns its material. Exactly one CA is kept for a
        name, also when processes race to create it."""
        ...

    def record_issued(self, ca_id: str, *, ref: str, serial: str, names: list[str], cert_pem: str,
                      submitted_at: datetime, ready_at: datetime) -> None:
        """Keep a signed leaf under its order reference."""
        ...

    def issued(self, ref: str) -> IssuedState | None:
        """The request with order reference `ref`, or None."""
        ...

    def revoke(self, ca_id: str, serial: str, *, at: datetime, reason: str) -> bool:
        """Record a revocation of hex `serial` (idempotent); False when no such serial was issued."""
        ...

    def next_crl(self, ca_id: str) -> tuple[int, list[tuple[str, datetime]]]:
        """Take the next CRL number and the revocations `(hex serial, revoked_at)`."""
        ...

    def get_sealed_key(self, key_id: str) -> object:
        """The sealed key blob stored under `key_id` (opened by the vault here, never by the store)."""
        ...


@dataclass(frozen=True)
class PrivateCaPolicy:
    """What the private CA signs.

    Attributes:
        validity_days: lifetime of issued leaves when the application asks for no window.
        max_validity_days: the longest lifetime it signs (None: any); a longer window asked for is
            cut to it (certpilot records plan vs issued and the plan covers the rest, VA-5).
        allowed_suffixes: names must equal or end under one of these; they become the
            intermediate's NameConstraints when the CA is created. Empty: any name only for the
            embedded demo CA (`demo=True`); a configured CA refuses to sign until they are set.
        review_delay: a simulated CA review: `poll` says pending until it has passed (DV-5).
        review_rejects: names whose simulated review ends in a rejection (CA-2).
        review_more_info: names whose simulated review ends asking for more information (CA-2).
        key_algorithm: algorithm of the CA's own keys.
    """

    validity_days: int = 90
    max_validity_days: int | None = None
    allowed_suffixes: tuple[str, ...] = ()
    review_delay: timedelta = timedelta(0)
    review_rejects: tuple[str, ...] = ()
    review_more_info: tuple[str, ...] = ()
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256
    demo: bool = True
    """The embedded demo CA (and tests): empty suffixes sign any name. Blocks set False."""


# --- pure signing -------------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certpilot private CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca_cert(subject: x509.Name, issuer: x509.Name, public_key, signer: PrivateKey, *, now: datetime,
             days: int, path_length: int | None, issuer_key=None,
             constraints: x509.NameConstraints | None = None) -> x509.Certificate:
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    aki_src = (issuer_key or signer).public_key()
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True, crl_sign=True,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(ski, critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(aki_src), critical=False))
    if constraints is not None:
        builder = builder.add_extension(constraints, critical=True)
    return builder.sign(signer, hashes.SHA256())


def make_root(key: PrivateKey, name: str, *, now: datetime, days: int = 3650) -> x509.Certificate:
    """A self-signed root CA certificate for `key`."""
    return _ca_cert(_name(f"{name} Root"), _name(f"{name} Root"), key.public_key(), key, now=now,
                    days=days, path_length=1)


def make_intermediate(root: x509.Certificate, root_key: PrivateKey, key: PrivateKey, name: str, *,
                      now: datetime, days: int = 1825, permitted: Iterable[str] = ()) -> x509.Certificate:
    """An intermediate CA certificate for `key`, signed by the root.

    Args:
        permitted: DNS suffixes the intermediate may sign for: a critical NameConstraints
            extension (RFC 5280 4.2.1.10) makes clients refuse any other DNS name under it.
    """
    constraints = None
    suffixes = sorted({canonical_name(p).removeprefix("*.") for p in permitted})
    if suffixes:
        constraints = x509.NameConstraints(permitted_subtrees=[x509.DNSName(p) for p in suffixes],
                                           excluded_subtrees=None)
    return _ca_cert(_name(f"{name} Intermediate"), root.subject, key.public_key(), root_key, now=now,
                    days=days, path_length=0, constraints=constraints)


def constrained_suffixes(intermediate: x509.Certificate) -> tuple[str, ...] | None:
    """The DNS suffixes an intermediate's NameConstraints permit, or None when it has none."""
    try:
        nc = intermediate.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    return tuple(g.value for g in nc.permitted_subtrees or () if isinstance(g, x509.DNSName))


def name_allowed(name: str, suffixes: Iterable[str]) -> bool:
    """True when `name` equals or lies under one of `suffixes` (no suffixes: all names)."""
    suffixes = [canonical_name(s).lstrip("*.") for s in suffixes]
    if not suffixes:
        return True
    bare = canonical_name(name).removeprefix("*.")
    return any(bare == s or bare.endswith("." + s) for s in suffixes)


def policy_refusal(names: Iterable[str], policy: PrivateCaPolicy, ca_name: str = "default") -> Refusal | None:
    """The refusal for the first name the policy does not allow, naming it (EL-4).

    A configured (non-demo) CA without allowed suffixes signs nothing: "any name" is never a
    production policy.
    """
    if not policy.allowed_suffixes and not policy.demo:
        return Refusal(Reason.CA_POLICY,
                       f"the private CA '{ca_name}' has no allowed_suffixes, so it signs nothing until they are "
                       f"configured: set allowed_suffixes on the certpilot-private-ca/{ca_name} block (`certpilot "
                       f"setup --config FILE` with [private-ca.{ca_name}] allowed_suffixes = [\"corp.example\"]).",
                       "EL-4")
    for n in names:
        if not name_allowed(n, policy.allowed_suffixes):
            return Refusal(Reason.CA_POLICY,
                           f"the private CA's policy does not allow {n} (allowed: names under "
                           f"{', '.join(policy.allowed_suffixes)}); remove it from the certificate or "
                           "widen the policy's allowed suffixes.", "EL-4")
    return None


def signed_window(application: Application, policy: PrivateCaPolicy, now: datetime) -> tuple[datetime, datetime]:
    """The window the private CA signs: the one the application asks for (the plan's, VA-1/VA-2),
    else `policy.validity_days` from `now`; cut to `policy.max_validity_days` when set. Whole seconds."""
    start = (application.not_before or now).replace(microsecond=0)
    end = application.not_after or start + timedelta(days=policy.validity_days)
    if policy.max_validity_days is not None:
        end = min(end, start + timedelta(days=policy.max_validity_days))
    return start, end.replace(microsecond=0)


def sign_csr(csr: x509.CertificateSigningRequest, ca: x509.Certificate, ca_key: PrivateKey, *,
             now: datetime, validity_days: int | None = None, serial: int | None = None,
             not_after: datetime | None = None) -> x509.Certificate:
    """Sign a (checked) CSR as a TLS server leaf valid from `now` until `not_after` (or for
    `validity_days`)."""
    if not_after is None:
        not_after = now + timedelta(days=validity_days or 90)
    names = csr_names(csr)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
               .issuer_name(ca.subject).public_key(csr.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(now).not_valid_after(not_after)
               .add_extension(x509.SubjectAlternativeName(sans), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    return builder.sign(ca_key, hashes.SHA256())


def build_crl(ca: x509.Certificate, ca_key: PrivateKey, revoked: Iterable[tuple[int, datetime]], *,
              now: datetime, number: int, next_update: timedelta = timedelta(days=7)) -> x509.CertificateRevocationList:
    """A CRL signed by `ca` listing `(serial, revoked_at)` pairs."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(now).next_update(now + next_update)
               .add_extension(x509.CRLNumber(number), critical=False))
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    return builder.sign(ca_key, hashes.SHA256())


def application_ref(ca_name: str, application: Application) -> str:
    """The order reference of an application: a digest of the CA, the certificate id and the CSR."""
    digest = hashlib.sha256(b"\0".join([ca_name.encode(), application.certificate_id.encode(),
                                        bytes(application.csr_pem)])).hexdigest()
    return f"pca-{digest[:24]}"


def _refuse_outside_constraints(names: Iterable[str], intermediate: x509.Certificate) -> None:
    """Refuse a DNS name the intermediate's NameConstraints do not permit (clients would reject it).

    Raises:
        RefusedError(CA_POLICY): naming the name and the suffixes the intermediate covers.
    """
    permitted = constrained_suffixes(intermediate)
    if permitted is None:
        return
    for n in names:
        try:
            ipaddress.ip_address(n)
            continue
        except ValueError:
            pass
        if not name_allowed(n, permitted):
            raise RefusedError(Refusal(Reason.CA_POLICY,
                                       f"the private CA's intermediate is constrained to {', '.join(permitted)} "
                                       f"(its allowed suffixes when it was made), so clients would reject {n}; "
                                       "remove the name, or make a new CA (another ca_name) with wider suffixes.",
                                       "EL-4"))


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# --- the adapter --------------------------------------------------------------------------------

class PrivateCa:
    """The embedded private CA as an `Issuer` (state in the store, keys in the vault)."""

    remote_api = False
    """Signing is local: no remote API to rate-limit (`operations.pipeline.api_limits`)."""
    validates_domains = False
    """It proves no domain ownership, so no validation method is chosen for it (DV-1..DV-4)."""

    def __init__(self, store: PrivateCaStore, vault, *, policy: PrivateCaPolicy | None = None,
                 clock: Callable[[], datetime], ca_name: str = "default", paid: bool = True,
                 offline_sink: Callable[[str, str, bytes], None] | None = None) -> None:
        """Args:
            store: where the CA's certificates, requests and revocations are kept.
            vault: the `KeyVault` that seals the CA's keys.
            policy: what it signs; default `PrivateCaPolicy()`.
            clock: returns now (timezone-aware UTC); injected so reviews can be simulated.
            ca_name: which private CA (several may coexist in one store).
            paid: whether certificates it signs for official orders are billed like a paid CA
                service's (the seed's model; the block sets False). A private-CA certificate's
                reissue (EL-4) is never billed.
            offline_sink: receives `(ca_name, key_id, base64 key)` of the key the root is sealed
                under once it has signed the intermediate (to be moved offline); None: that key
                is dropped and the root can never sign again.
        """
        self.paid = paid
        self._store = store
        self._vault = vault
        self.policy = policy or PrivateCaPolicy()
        self._clock = clock
        self.ca_name = ca_name
        self._offline_sink = offline_sink

    @property
    def name(self) -> str:
        """``private-ca:<ca_name>``."""
        return f"private-ca:{self.ca_name}"

    @property
    def publicly_trusted(self) -> bool:
        """Never: browsers do not know this root."""
        return False

    # -- CA material --
    def _create(self, keys) -> CaMaterial:
        """Make the root and the intermediate, their keys sealed into `keys` (the store's transaction)."""
        now = self._clock()
        root_key = generate_key(self.policy.key_algorithm)
        int_key = generate_key(self.policy.key_algorithm)
        root = make_root(root_key, f"certpilot {self.ca_name}", now=now)
        inter = make_intermediate(root, root_key, int_key, f"certpilot {self.ca_name}", now=now,
                                  permitted=self.policy.allowed_suffixes)
        # The root has signed the intermediate: it is sealed offline (a fresh key no online vault
        # holds, handed to `offline_sink`), so nothing online can ever sign with it again.
        offline, offline_text = OfflineKey.generate(f"the offline key of private CA {self.ca_name}'s root")
        root_id, _ = store_key(root_key, vault=KeyVault(offline), repo=keys, purpose=CA_PURPOSE)
        if self._offline_sink is not None:
            self._offline_sink(self.ca_name, offline.key_id, offline_text)
        del root_key, offline, offline_text
        int_id, _ = store_key(int_key, vault=self._vault, repo=keys, purpose=CA_PURPOSE)
        return CaMaterial(root_pem=_pem(root), root_key_id=root_id, intermediate_pem=_pem(inter),
                          intermediate_key_id=int_id, created_at=now)

    def _ensure(self) -> CaState:
        return self._store.ensure(self.ca_name, self._create)

    def _intermediate_key(self, ca: CaState) -> PrivateKey:
        inter = x509.load_pem_x509_certificate(ca.intermediate_pem.encode())
        return open_key(ca.intermediate_key_id, public_fingerprint(inter.public_key()),
                        vault=self._vault, repo=self._store, purpose=CA_PURPOSE)

    def root_pem(self) -> str:
        """The root certificate (PEM): the trust anchor clients must be given."""
        return self._ensure().root_pem

    def chain_pems(self) -> tuple[str, str]:
        """`(intermediate_pem, root_pem)`."""
        ca = self._ensure()
        return ca.intermediate_pem, ca.root_pem

    # -- Issuer --
    def submit(self, application: Application) -> str:
        """Check the policy and the CSR, sign (exactly the window the application asks for, within
        `max_validity_days`: `signed_window`), and hold the result until the review delay passes.

        Raises:
            RefusedError(CA_POLICY): a name the policy does not allow (named in the message).
            RefusedError(CSR_*): the CSR fails CSR-4's check.
        """
        refusal = policy_refusal(application.names, self.policy, self.ca_name) or check_csr(
            application.csr_pem, list(application.names), None)
        if refusal is not None:
            raise RefusedError(refusal)
        csr = load_csr(application.csr_pem)
        # The reference is derived from the application, so a caller killed after the CA kept the
        # leaf and before it recorded the reference gets the same reference (and the same leaf,
        # never a second one) when it submits again.
        ref = application_ref(self.ca_name, application)
        if self._store.issued(ref) is not None:
            return ref
        now = self._clock()
        ca = self._ensure()
        intermediate = x509.load_pem_x509_certificate(ca.intermediate_pem.encode())
        _refuse_outside_constraints(application.names, intermediate)
        serial = x509.random_serial_number()
        start, end = signed_window(application, self.policy, now)
        leaf = sign_csr(csr, intermediate, self._intermediate_key(ca), now=start, not_after=end, serial=serial)
        self._store.record_issued(ca.id, ref=ref, serial=format(serial, "x"),
                                  names=[canonical_name(n) for n in application.names], cert_pem=_pem(leaf),
                                  submitted_at=now, ready_at=now + self.policy.review_delay)
        return ref

    def _issued(self, ref: str) -> IssuedState:
        issued = self._store.issued(ref)
        if issued is None:
            raise NotFoundError(f"no private-CA request {ref}; submit the application again.")
        return issued

    def _review(self, issued: IssuedState) -> PollResult:
        """Pending until the review delay has passed; then valid, or invalid for a rejected name."""
        now = self._clock()
        if now < issued.ready_at:
            return PollResult(OrderStatus.PENDING,
                              f"under review by the private CA until {issued.ready_at.isoformat()}",
                              retry_after=(issued.ready_at - now).total_seconds())
        rejected = [n for n in issued.names if name_allowed(n, self.policy.review_rejects)] \
            if self.policy.review_rejects else []
        if rejected:
            return PollResult(OrderStatus.INVALID, f"the private CA's review rejected {', '.join(rejected)}")
        asked = [n for n in issued.names if name_allowed(n, self.policy.review_more_info)] \
            if self.policy.review_more_info else []
        if asked:
            return PollResult(OrderStatus.INVALID, f"the private CA needs more information about {', '.join(asked)}: "
                                                   "proof that the organisation controls the name", more_info=True)
        return PollResult(OrderStatus.VALID)

    def poll(self, ref: str) -> PollResult:
        """Pending until the review delay has passed; then valid, or invalid for a rejected name.

        Raises:
            NotFoundError: no request with this reference.
        """
        return self._review(self._issued(ref))

    def advance(self, ref: str, application: Application) -> PollResult:
        """Nothing to drive: the private CA validates nothing; same as `poll`."""
        return self.poll(ref)

    def fetch_chain(self, ref: str) -> IssuedChain:
        """The signed leaf and the intermediate.

        Raises:
            PermanentError: the review has not passed or rejected the request.
        """
        issued = self._issued(ref)
        state = self._review(issued)
        if state.status is not OrderStatus.VALID:
            raise PermanentError(f"private-CA request {ref} is {state.status.value}: {state.detail}")
        return IssuedChain(leaf_pem=issued.cert_pem, chain_pems=(self._ensure().intermediate_pem,))

    # -- revocation --
    def revoke(self, serial: str | int, reason: str = "unspecified") -> None:
        """Revoke the certificate with `serial` (hex string or int, or the certificate's PEM: the
        `Revoking` protocol's `revoke(leaf_pem, reason)`); idempotent.

        Raises:
            NotFoundError: this CA never issued that serial.
        """
        if isinstance(serial, str) and serial.lstrip().startswith("-----BEGIN"):
            serial = x509.load_pem_x509_certificate(serial.encode()).serial_number
        hex_serial = format(serial, "x") if isinstance(serial, int) else serial.lower().lstrip("0") or "0"
        if not self._store.revoke(self._ensure().id, hex_serial, at=self._clock(), reason=reason):
            raise NotFoundError(f"the private CA issued no certificate with serial {hex_serial}; "
                                "check the serial (hex) of the certificate to revoke.")

    def crl_pem(self) -> bytes:
        """A fresh CRL (PEM) signed by the intermediate, listing every revocation."""
        ca = self._ensure()
        number, revoked = self._store.next_crl(ca.id)
        crl = build_crl(x509.load_pem_x509_certificate(ca.intermediate_pem.encode()), self._intermediate_key(ca),
                        [(int(serial, 16), at) for serial, at in revoked], now=self._clock(), number=number)
        return crl.public_bytes(serialization.Encoding.PEM)
