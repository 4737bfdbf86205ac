"""TLS prober: connect, read what an endpoint serves, and judge it against a trust bundle.

One asyncio connection per endpoint, no process per probe. The handshake is made WITHOUT
verification so that an expired, wrongly named or badly chained certificate is still read and
can be diagnosed; the checks (expiry, name, chain, DEP-6) are done afterwards, here and in
`certpilot.core.verification`.

How the served chain is read (Python 3.11): the public `ssl` API gives only the leaf
(`getpeercert(binary_form=True)`). CPython 3.10+ has the private `_ssl._SSLSocket.get_unverified_chain()`
(made public as `SSLObject.get_unverified_chain()` in 3.13), reachable as
`ssl_object._sslobj.get_unverified_chain()`; it returns the certificates exactly as served. We
use it when present and fall back to the leaf alone otherwise (then a chain that needs a served
intermediate reads as incomplete, which is the safe side).

Trust is decided strictly by `cryptography.x509.verification` (`TrustBundle.verify`: the server
verifier with the trust bundle, the SNI name, the probe's time, EKU serverAuth, RFC 5280 + the CA/B
web profile). Only when it refuses does the hand-written issuer walk (`TrustBundle.walk`: names and
signatures up to a certificate of the bundle, OpenSSL's "unable to get local issuer certificate"
judgement) run, with the leaf's facts, to say WHY (`core.verification.explain_fault`: expired
leaf, CN-only, wrong name, self-signed, incomplete, untrusted root, bad signature, expired
intermediate, issuer not a CA, not serverAuth).

Cost (bench/probe_rate.py, 1,000 SNI names on local nginx, 2 cores shared with other work): the
handshake dominates. Strict verification costs about what the walk did (~290 µs vs ~280 µs of CPU
per judged leaf): the first leaf of each served intermediate chain is verified in full, the next
ones against the already verified issuer alone (one signature; see `TrustBundle.verify`).
Rate ≈ 0.8 × the bare asyncio handshake loop, and 25-70 × a `openssl s_client | openssl x509
-enddate` shell loop.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store, VerificationError

from certpilot.adapters.probe.ssl_private import served_chain_ders
from certpilot.core.verification import (
    ChainFacts,
    ChainStatus,
    Endpoint,
    Family,
    ProbeOutcome,
    ProbeResult,
    TrustFault,
    explain_fault,
    fault_outcome,
    name_matches,
)
from certpilot.crypto.pem import fingerprint

_FAMILIES = {Family.AUTO: socket.AF_UNSPEC, Family.IPV4: socket.AF_INET, Family.IPV6: socket.AF_INET6}
_UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}


def fingerprint_der(der: bytes) -> str:
    """SHA-256 fingerprint of a DER certificate as handed over by the handshake (`crypto.pem.fingerprint`)."""
    return fingerprint(der)


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The certificate's subjectAltName DNS names and IP addresses (CN only when there is no SAN)."""
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return tuple(str(a.value) for a in cns)
    names: list[str] = list(san.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(names)


@dataclass(frozen=True, slots=True)
class CaCert:
    """A CA certificate parsed once: the names and fingerprint the chain walk compares."""

    cert: x509.Certificate
    fingerprint: str
    subject: bytes
    issuer: bytes
    public_key: object = None

    @classmethod
    def parse(cls, der: bytes, fp: str | None = None) -> CaCert:
        """Parse a DER certificate (raises ValueError when it does not parse)."""
        cert = x509.load_der_x509_certificate(der)
        try:
            key = cert.public_key()
        except (ValueError, TypeError):  # unsupported key type: verify_directly_issued_by will say so
            key = None
        return cls(cert, fp or fingerprint_der(der), cert.subject.public_bytes(), cert.issuer.public_bytes(), key)

    @classmethod
    def of(cls, cert: x509.Certificate) -> CaCert:
        """Wrap an already parsed certificate."""
        try:
            key = cert.public_key()
        except (ValueError, TypeError):  # unsupported key type: verify_directly_issued_by will say so
            key = None
        return cls(cert, fingerprint_der(cert.public_bytes(Encoding.DER)), cert.subject.public_bytes(),
                   cert.issuer.public_bytes(), key)


_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def _anchor(block: bytes) -> x509.Certificate | None:
    """One PEM trust anchor, or None when cryptography refuses it (see `TrustBundle.from_pem`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_pem_x509_certificate(block)
        except ValueError:
            return None


class TrustBundle:
    """The CA certificates a served chain must reach (DEP-6), indexed by subject.

    Two bounded caches make probing thousands of endpoints cheap without changing any answer:
    served intermediates are parsed once (they repeat across endpoints), and each signature check
    is done once per (child, issuer) pair of fingerprints (a VER-1 poll or a periodic scan sees
    the same leaves again).
    """

    _MAX_PARSED = 1024
    _MAX_VERIFIED = 16384

    def __init__(self, certificates: Iterable[x509.Certificate]):
        self._by_subject: dict[bytes, list[CaCert]] = {}
        self._fingerprints: set[str] = set()
        for cert in certificates:
            ca = CaCert.of(cert)
            self._by_subject.setdefault(ca.subject, []).append(ca)
            self._fingerprints.add(ca.fingerprint)
        self._parsed: dict[str, CaCert] = {}
        self._verified: dict[tuple[str, str], bool] = {}
        self._anchors = [ca.cert for cas in self._by_subject.values() for ca in cas]
        self._store: Store | None = None
        self._issuers: dict[tuple[str, ...], _VerifiedIssuer] = {}

    @classmethod
    def from_pem(cls, pem: bytes) -> TrustBundle:
        """A bundle from concatenated PEM certificates, each parsed on its own.

        System bundles hold legacy roots with a serial number of 0 (Go Daddy Class 2, Starfield
        Class 2, SECOM RootCA1/2, HARICA 2015: nine in Debian's): cryptography warns on each
        (`CryptographyDeprecationWarning`) and announces it will refuse them. An anchor's serial
        plays no part in reaching it, so the warning is not shown for anchors, and a root the
        library refuses is left out instead of failing the whole bundle (every probe with it).
        """
        return cls(cert for block in _PEM_BLOCK.findall(pem) if (cert := _anchor(block)) is not None)

    @classmethod
    def from_path(cls, path: str | Path) -> TrustBundle:
        """A bundle from a PEM CA file, parsed once per process while the file is unchanged (the
        same path, size and modification time): the system's bundle (~145 certificates) costs
        ~0.15 s of CPU to parse, and every deployment's check and every verify stage asks for it.
        A bundle is never changed by probing (its caches only remember answers), so one is shared.
        """
        source = Path(path)
        stat = source.stat()
        key = (cls, str(source.resolve()), stat.st_size, stat.st_mtime_ns)
        with _FILE_BUNDLES_LOCK:
            hit = _FILE_BUNDLES.get(key)
        if hit is None:
            hit = cls.from_pem(source.read_bytes())
            with _FILE_BUNDLES_LOCK:
                if len(_FILE_BUNDLES) >= _MAX_FILE_BUNDLES:
                    _FILE_BUNDLES.clear()
                _FILE_BUNDLES[key] = hit
        return hit

    def merged(self, pem: bytes) -> TrustBundle:
        """A new bundle: these anchors plus the PEM certificates in `pem`."""
        return type(self)([*self._anchors, *(c for b in _PEM_BLOCK.findall(pem) if (c := _anchor(b)) is not None)])

    @classmethod
    def from_context(cls, context: ssl.SSLContext) -> TrustBundle:
        """The CA certificates loaded into an `ssl.SSLContext` (from a cafile or cadata)."""
        ders = context.get_ca_certs(binary_form=True)
        return cls(x509.load_der_x509_certificate(d) for d in ders)

    @classmethod
    def system(cls) -> TrustBundle:
        """The system's default CA file (empty when there is none)."""
        cafile = ssl.get_default_verify_paths().cafile
        return cls.from_path(cafile) if cafile and Path(cafile).exists() else cls(())

    def __len__(self) -> int:
        return len(self._fingerprints)

    def contains(self, fp: str) -> bool:
        """True when the certificate with fingerprint `fp` is itself in the bundle."""
        return fp in self._fingerprints

    def served_ca(self, der: bytes) -> CaCert:
        """A served chain certificate, parsed once per fingerprint (raises ValueError if unparseable)."""
        fp = fingerprint_der(der)
        hit = self._parsed.get(fp)
        if hit is None:
            hit = CaCert.parse(der, fp)
            if len(self._parsed) >= self._MAX_PARSED:
                self._parsed.clear()
            self._parsed[fp] = hit
        return hit

    def signed_by(self, child: x509.Certificate, child_fp: str, parent: CaCert) -> bool:
        """True when `parent` signed `child` (cached by fingerprints)."""
        key = (child_fp, parent.fingerprint)
        hit = self._verified.get(key)
        if hit is None:
            try:
                pub = parent.public_key
                if isinstance(pub, ec.EllipticCurvePublicKey) and child.signature_hash_algorithm is not None:
                    # The parent's key is parsed once (its point check is not free); same check as below.
                    if child.issuer.public_bytes() != parent.subject:
                        raise ValueError("issuer name differs")
                    pub.verify(child.signature, child.tbs_certificate_bytes,
                               ec.ECDSA(child.signature_hash_algorithm))
                else:
                    child.verify_directly_issued_by(parent.cert)
                hit = True
            except (InvalidSignature, ValueError, TypeError, x509.UnsupportedGeneralNameType):
                hit = False
            if len(self._verified) >= self._MAX_VERIFIED:
                self._verified.clear()
            self._verified[key] = hit
        return hit

    def verify(self, leaf: x509.Certificate, served: list[CaCert], server_name: str,
               now: datetime) -> str | None:
        """Strict verification: does `leaf`, with the `served` certificates as intermediates, verify
        for `server_name` at `now` against this bundle? None when it does, else the verifier's reason.

        The verdict is `cryptography.x509.verification`'s server verifier (RFC 5280 path building
        with the CA/B web profile: signatures, validity of every certificate, basicConstraints and
        keyUsage of issuers, subjectAltName against the name, extendedKeyUsage serverAuth).

        Fast path, same verdict: a full verification's path proves that the leaf's issuer (the
        path's second certificate) is a valid CA under this bundle while `now` is inside every
        CA certificate's validity window. The next leaf served with the same intermediates by the
        same issuer is then verified by the same verifier against that issuer alone (one
        signature instead of one per link: the handshake's main cost otherwise). Paths with
        nameConstraints never take it (constraints of upper CAs bind the leaf's names); a leaf the
        fast path refuses is verified in full, so a refusal is always the full verifier's.
        """
        subject = _subject(server_name)
        if subject is None:
            return f"{server_name!r} is not a DNS name or an IP address"
        if not self._anchors:
            return "the trust bundle is empty"
        key = tuple(c.fingerprint for c in served)
        fast = self._issuers.get(key)
        if fast is not None and fast.valid_from <= now <= fast.valid_until:
            try:
                fast.policy.time(now).build_server_verifier(subject).verify(leaf, [])
                return None
            except VerificationError:
                pass  # e.g. another issuer of the same name: the full verification decides
        if self._store is None:
            self._store = Store(self._anchors)
        try:
            path = PolicyBuilder().store(self._store).time(now).build_server_verifier(subject).verify(
                leaf, [c.cert for c in served])
        except VerificationError as exc:
            return str(exc)
        cas = path[1:]
        if cas and not any(_has_name_constraints(c) for c in cas):
            if len(self._issuers) >= self._MAX_PARSED:
                self._issuers.clear()
            self._issuers[key] = _VerifiedIssuer(PolicyBuilder().store(Store([cas[0]])),
                                                 max(c.not_valid_before_utc for c in cas),
                                                 min(c.not_valid_after_utc for c in cas))
        return None

    def check_chain(self, leaf: x509.Certificate, leaf_fp: str, served: list[CaCert]) -> ChainStatus:
        """DEP-6: does `leaf` reach the bundle through the `served` certificates?

        Args:
            leaf: the served leaf.
            leaf_fp: its fingerprint.
            served: the other served certificates, in served order.
        Returns:
            COMPLETE; INCOMPLETE when an issuer is neither served nor trusted (a missing
            intermediate, OpenSSL's "unable to get local issuer certificate"); UNTRUSTED when the
            chain ends at a self-signed root the bundle does not hold, or a signature is wrong.
        """
        return self.walk(leaf, leaf_fp, served)[0]

    def walk(self, leaf: x509.Certificate, leaf_fp: str,
             served: list[CaCert]) -> tuple[ChainStatus, list[x509.Certificate], bool]:
        """The hand-written issuer walk behind `check_chain`, kept to say WHY a chain the strict
        verifier refused is wrong (names and signatures only, no policy).

        Returns:
            (status, the CA certificates walked through — leaf's issuer first, a trusted anchor
            last when reached —, whether an issuer found by name failed the signature check).
        """
        pool: dict[bytes, list[CaCert]] = {}
        for ca in served:
            pool.setdefault(ca.subject, []).append(ca)
        cert, fp, issuer = leaf, leaf_fp, leaf.issuer.public_bytes()
        path: list[x509.Certificate] = []
        for _ in range(len(served) + 1):
            if fp in self._fingerprints:
                return ChainStatus.COMPLETE, path, False
            anchor = next((a for a in self._by_subject.get(issuer, ()) if self.signed_by(cert, fp, a)), None)
            if anchor is not None:
                return ChainStatus.COMPLETE, [*path, anchor.cert], False
            candidates = [c for c in pool.get(issuer, ()) if c.fingerprint != fp]
            parent = next((c for c in candidates if self.signed_by(cert, fp, c)), None)
            if parent is None:
                if candidates:
                    return ChainStatus.UNTRUSTED, path, True
                if issuer == cert.subject.public_bytes():
                    return ChainStatus.UNTRUSTED, path, False
                return ChainStatus.INCOMPLETE, path, False
            path.append(parent.cert)
            cert, fp, issuer = parent.cert, parent.fingerprint, parent.issuer
        return ChainStatus.UNTRUSTED, path, False


@dataclass(frozen=True, slots=True)
class _VerifiedIssuer:
    """A leaf issuer the full verifier accepted (see `TrustBundle.verify`): a policy builder whose
    store holds it alone, and the window in which every CA certificate of its path is valid."""

    policy: PolicyBuilder
    valid_from: datetime
    valid_until: datetime


def _subject(server_name: str) -> DNSName | IPAddress | None:
    """The verifier's subject for a server name: an IP address or a DNS name (None if neither)."""
    name = server_name.rstrip(".")
    if name and (name[-1].isdigit() or ":" in name):  # cheap pre-check: most names are DNS names
        try:
            return IPAddress(ipaddress.ip_address(name))
        except ValueError:
            pass
    try:
        return DNSName(name)
    except ValueError:
        return None


def _has_name_constraints(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_oid(ExtensionOID.NAME_CONSTRAINTS)
    except x509.ExtensionNotFound:
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca)
    except x509.ExtensionNotFound:
        return False


def _server_auth(cert: x509.Certificate) -> bool:
    """False only when the certificate has an extendedKeyUsage that lacks serverAuth."""
    try:
        eku = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.SERVER_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku


def _has_san(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return False
    return True


_FILE_BUNDLES: dict[tuple, TrustBundle] = {}
"""Bundles parsed from CA files, by (class, resolved path, size, mtime) (`TrustBundle.from_path`)."""
_FILE_BUNDLES_LOCK = threading.Lock()
_MAX_FILE_BUNDLES = 16

Trust = ssl.SSLContext | str | Path | TrustBundle | None


def trust_bundle(trust: Trust) -> TrustBundle:
    """Normalise the `trust` argument: a bundle, a CA file path, an SSLContext, or None (system)."""
    if isinstance(trust, TrustBundle):
        return trust
    if isinstance(trust, ssl.SSLContext):
        return TrustBundle.from_context(trust)
    if trust is None:
        return TrustBundle.system()
    return TrustBundle.from_path(trust)


def probe_context() -> ssl.SSLContext:
    """A client context that completes the handshake whatever is served (checks come after)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@runtime_checkable
class EndpointProber(Protocol):
    """Anything that probes one endpoint (the real `Prober`; scripted ones in orchestration tests)."""

    async def probe(self, endpoint: Endpoint, *, timeout: float | None = None,
                    now: datetime | None = None) -> ProbeResult:
        """Probe `endpoint`; failures are outcomes, never exceptions."""
        ...


class Prober:
    """Probes endpoints with one shared client context and one trust bundle.

    Args:
        trust: the bundle served chains must reach (see `trust_bundle`).
        timeout: seconds for TCP connect + handshake, per connection.
    """

    def __init__(self, trust: Trust = None, *, timeout: float = 5.0):
        self.trust = trust_bundle(trust)
        self.timeout = timeout
        self._ctx = probe_context()

    async def probe(self, endpoint: Endpoint, *, timeout: float | None = None,
                    now: datetime | None = None) -> ProbeResult:
        """Connect to `endpoint`, read the served leaf and chain, and judge them.

        Never raises for a network or TLS failure: the outcome says what happened
        (refused, timeout, unreachable, handshake failure, expired, wrong name, incomplete
        chain, untrusted, invalid chain). `now` defaults to the wall clock when the handshake finished.
        """
        return (await self.fetch(endpoint, timeout=timeout, now=now))[0]

    async def fetch(self, endpoint: Endpoint, *, timeout: float | None = None,
                    now: datetime | None = None) -> tuple[ProbeResult, list[bytes]]:
        """`probe`, and the served certificates as DER, leaf first (empty without a handshake):
        discovery stores what it finds, a probe keeps only fingerprints."""
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                transport, _ = await asyncio.get_running_loop().create_connection(
                    asyncio.Protocol, endpoint.host, endpoint.port, ssl=self._ctx,
                    server_hostname=endpoint.server_name, family=_FAMILIES[endpoint.family],
                    ssl_handshake_timeout=limit + 1.0)  # the outer timeout fires first: one outcome
        except TimeoutError:
            return _failed(endpoint, ProbeOutcome.TIMEOUT, f"no TLS handshake within {limit:g}s", started), []
        except ConnectionRefusedError:
            return _failed(endpoint, ProbeOutcome.REFUSED, "connection refused", started), []
        except socket.gaierror as exc:
            return _failed(endpoint, ProbeOutcome.UNREACHABLE, f"name does not resolve: {exc.strerror}", started), []
        except ssl.SSLError as exc:
            return _failed(endpoint, ProbeOutcome.HANDSHAKE_FAILED, f"TLS: {exc.reason or exc}", started), []
        except OSError as exc:
            text = str(exc)
            if text.startswith("Multiple exceptions") and text.count("[Errno 111]") == text.count("[Errno"):
                # Every address of the name (e.g. ::1 and 127.0.0.1) refused the connection.
                return _failed(endpoint, ProbeOutcome.REFUSED, "connection refused on every address", started), []
            if exc.errno in _UNREACHABLE_ERRNOS or text.startswith("Multiple exceptions"):
                return _failed(endpoint, ProbeOutcome.UNREACHABLE, text, started), []
            return _failed(endpoint, ProbeOutcome.HANDSHAKE_FAILED, f"{type(exc).__name__}: {exc}", started), []
        except Exception as exc:  # noqa: BLE001 - a probe records every failure, never raises
            return _failed(endpoint, ProbeOutcome.HANDSHAKE_FAILED, f"{type(exc).__name__}: {exc}", started), []
        try:
            ders = _served_ders(transport)
        except Exception as exc:  # noqa: BLE001 - a probe records every failure, never raises
            return _failed(endpoint, ProbeOutcome.HANDSHAKE_FAILED, f"served chain unreadable: {exc}", started), []
        finally:
            transport.abort()  # a probe needs no orderly TLS close; abort frees the socket at once
        if not ders:
            return _failed(endpoint, ProbeOutcome.HANDSHAKE_FAILED, "the server sent no certificate", started), []
        try:
            return self.judge(endpoint, ders, now=now or datetime.now(UTC), elapsed=time.monotonic() - started), ders
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed extension: recorded, never raised
            return ProbeResult(endpoint, ProbeOutcome.HANDSHAKE_FAILED, fingerprint=fingerprint_der(ders[0]),
                               error=f"served certificate unreadable: {type(exc).__name__}: {exc}",
                               elapsed=time.monotonic() - started), ders

    def judge(self, endpoint: Endpoint, ders: list[bytes], *, now: datetime, elapsed: float = 0.0) -> ProbeResult:
        """Build the ProbeResult of served certificates `ders` (leaf first) at `now`."""
        leaf_fp = fingerprint_der(ders[0])
        try:
            leaf = x509.load_der_x509_certificate(ders[0])
            served = [self.trust.served_ca(d) for d in ders[1:]]
        except ValueError as exc:
            return ProbeResult(endpoint, ProbeOutcome.HANDSHAKE_FAILED, fingerprint=leaf_fp,
                               error=f"unparseable certificate: {exc}", elapsed=elapsed)
        names = certificate_names(leaf)
        not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        refused = self.trust.verify(leaf, served, endpoint.server_name, now)
        if refused is None:
            fault, chain, name_ok = TrustFault.NONE, ChainStatus.COMPLETE, True
        else:
            fault, chain, name_ok = self.explain(endpoint, leaf, leaf_fp, served, names, now)
        return ProbeResult(endpoint, fault_outcome(fault), fingerprint=leaf_fp, not_before=not_before,
                           not_after=not_after, names=names, serial=format(leaf.serial_number, "x"),
                           chain_fingerprints=tuple(c.fingerprint for c in served), chain=chain,
                           name_matches=name_ok, elapsed=elapsed, fault=fault,
                           error="" if refused is None or fault is not TrustFault.OTHER else refused,
                           earliest_not_after=min([not_after, *(c.cert.not_valid_after_utc for c in served)]))

    def explain(self, endpoint: Endpoint, leaf: x509.Certificate, leaf_fp: str, served: list[CaCert],
                names: tuple[str, ...], now: datetime) -> tuple[TrustFault, ChainStatus, bool]:
        """Why the strict verifier refused this chain (`core.verification.explain_fault` over the
        walk's facts): the fault, the walk's chain status, and whether the SAN covers the name."""
        has_san = _has_san(leaf)
        name_ok = has_san and name_matches(endpoint.server_name, names)
        status, path, bad_signature = self.trust.walk(leaf, leaf_fp, served)
        self_signed = leaf.issuer == leaf.subject and self.trust.signed_by(leaf, leaf_fp, CaCert.of(leaf))
        facts = ChainFacts(now=now, leaf_not_before=leaf.not_valid_before_utc, leaf_not_after=leaf.not_valid_after_utc,
                           has_san=has_san, name_ok=name_ok, self_signed=self_signed,
                           leaf_trusted=self.trust.contains(leaf_fp), walk=status, bad_signature=bad_signature,
                           path_windows=tuple((c.not_valid_before_utc, c.not_valid_after_utc) for c in path),
                           path_is_ca=tuple(_is_ca(c) for c in path), leaf_server_auth=_server_auth(leaf))
        return explain_fault(facts), status, name_ok


def _served_ders(transport: asyncio.BaseTransport) -> list[bytes]:
    """The served certificates, leaf first, as DER (whole chain where CPython exposes it)."""
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return []
    ders = served_chain_ders(sslobj)  # the private _ssl API, behind its shim
    if ders:
        return ders
    leaf = sslobj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _failed(endpoint: Endpoint, outcome: ProbeOutcome, error: str, started: float) -> ProbeResult:
    return ProbeResult(endpoint, outcome, error=error, elapsed=time.monotonic() - started)


async def probe(endpoint: Endpoint, *, timeout: float = 5.0, trust: Trust = None,
                now: datetime | None = None) -> ProbeResult:
    """Probe one endpoint (see `Prober.probe`); builds a one-off Prober for `trust`."""
    return await Prober(trust, timeout=timeout).probe(endpoint, now=now)


def probe_sync(endpoint: Endpoint, *, timeout: float = 5.0, trust: Trust = None,
               now: datetime | None = None) -> ProbeResult:
    """Blocking `probe` for callers outside an event loop (tasks, the CLI)."""
    return asyncio.run(probe(endpoint, timeout=timeout, trust=trust, now=now))
