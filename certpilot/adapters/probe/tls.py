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
intermediate reads as incomplete, which is the safe side). Chain completeness is decided by
walking issuer links over the served certificates with signature checks (`cryptography`) up to
a certificate of the trust bundle — the same judgement as OpenSSL's "unable to get local issuer
certificate", without a second handshake.

Cost (bench/probe_rate.py, 1,000 SNI names on local nginx, 2 cores shared with other work):
the handshake dominates; certpilot adds ~250-300 µs of client CPU per probe to the bare asyncio
handshake's ~1,300-1,400 µs, about 60 % of it the ECDSA check of the leaf's signature (done once
per leaf and issuer pair, then cached). Rate ≈ 0.8-0.9 × the bare loop cold, ≈ 1.0 on a re-scan,
and 25-70 × a `openssl s_client | openssl x509 -enddate` shell loop.
"""

from __future__ import annotations

import asyncio
import errno
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
from cryptography.x509.oid import ExtensionOID

from certpilot.adapters.probe.ssl_private import served_chain_ders
from certpilot.core.verification import (
    ChainStatus,
    Endpoint,
    Family,
    ProbeOutcome,
    ProbeResult,
    classify,
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
        pool: dict[bytes, list[CaCert]] = {}
        for ca in served:
            pool.setdefault(ca.subject, []).append(ca)
        cert, fp, issuer = leaf, leaf_fp, leaf.issuer.public_bytes()
        for _ in range(len(served) + 1):
            if fp in self._fingerprints:
                return ChainStatus.COMPLETE
            if any(self.signed_by(cert, fp, a) for a in self._by_subject.get(issuer, ())):
                return ChainStatus.COMPLETE
            candidates = [c for c in pool.get(issuer, ()) if c.fingerprint != fp]
            parent = next((c for c in candidates if self.signed_by(cert, fp, c)), None)
            if parent is None:
                if candidates or issuer == cert.subject.public_bytes():
                    return ChainStatus.UNTRUSTED
                return ChainStatus.INCOMPLETE
            cert, fp, issuer = parent.cert, parent.fingerprint, parent.issuer
        return ChainStatus.UNTRUSTED


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
        chain, untrusted). `now` defaults to the wall clock when the handshake finished.
        """
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                transport, _ = await asyncio.get_running_loop().create_connection(
                    asyncio.Protocol, endpoint.host, endpoint.port, ssl=self._ctx,
                    server_hostname=endpoint.server_name, family=_FAMILIES[endpoint.family],
                    ssl_handshake_timeout=limit + 1.0)  # the outer timeout fires first: one outcome
        except TimeoutError:
            return _failed(endpoint, ProbeOutcome.TIMEOUT, f"no TLS handshake within {limit:g}s", started)
        except ConnectionRefusedError:
            return _failed(endpoint, ProbeOutcome.REFUSED, "connection refused", started)
        except socket.gaierror as exc:
            return _failed(endpoint, ProbeOutcome.UNREACHABLE, f"name does not resolve: {exc.strerror}", started)
        except ssl.SSLError as exc:
            return _failed(endpoint, ProbeOutcome.HANDSHAKE_FAILED, f"TLS: {exc.reason or exc}", started)
        except OSError as exc:
            text = str(exc)
            if text.startswith("Multiple exceptions") and text.count("[Errno 111]") == text.count("[Errno"):
                # Every address of the name (e.g. ::1 and 127.0.0.1) refused the connection.
                return _failed(endpoint, ProbeOutcome.REFUSED, "connection refused on every address", started)
            if exc.errno in _UNREACHABLE_ERRNOS or text.startswith("Multiple exceptions"):
                return _failed(endpoint, ProbeOutcome.UNREACHABLE, text, started)
            return _failed(endpoint, ProbeOutcome.HANDSHAKE_FAILED, f"{type(exc).__name__}: {exc}", started)
        except Exception as exc:  # noqa: BLE001 - a probe records every failure, never raises
            return _failed(endpoint, ProbeOutcome.HANDSHAKE_FAILED, f"{type(exc).__name__}: {exc}", started)
        try:
            ders = _served_ders(transport)
        except Exception as exc:  # noqa: BLE001 - a probe records every failure, never raises
            return _failed(endpoint, ProbeOutcome.HANDSHAKE_FAILED, f"served chain unreadable: {exc}", started)
        finally:
            transport.abort()  # a probe needs no orderly TLS close; abort frees the socket at once
        if not ders:
            return _failed(endpoint, ProbeOutcome.HANDSHAKE_FAILED, "the server sent no certificate", started)
        try:
            return self.judge(endpoint, ders, now=now or datetime.now(UTC), elapsed=time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed extension: recorded, never raised
            return ProbeResult(endpoint, ProbeOutcome.HANDSHAKE_FAILED, fingerprint=fingerprint_der(ders[0]),
                               error=f"served certificate unreadable: {type(exc).__name__}: {exc}",
                               elapsed=time.monotonic() - started)

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
        name_ok = name_matches(endpoint.server_name, names)
        chain = self.trust.check_chain(leaf, leaf_fp, served)
        not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        outcome = classify(now=now, not_before=not_before, not_after=not_after, name_ok=name_ok, chain=chain)
        return ProbeResult(endpoint, outcome, fingerprint=leaf_fp, not_before=not_before, not_after=not_after,
                           names=names, serial=format(leaf.serial_number, "x"),
                           chain_fingerprints=tuple(c.fingerprint for c in served), chain=chain,
                           name_matches=name_ok, elapsed=elapsed)


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
