"""Real ACME and DNS servers for tests and benchmarks: BIND 9, Pebble, pebble-challtestsrv.

Every launcher is a plain function (usable outside pytest, e.g. by ``bench/``) returning a
dataclass; the session fixtures below wrap them and skip (or fail with CI=true) when a binary
is missing. Each server is a child process bound to 127.0.0.1 on a free port, killed by PID.

API
---
``start_bind(workdir, *, tsig_name=..., tsig_secret=None) -> BindServer``
    ``named -g`` with ``recursion no`` and these zones (all on one server):

    - ``example.test`` — TSIG-updatable (``grant KEY zonesub ANY``); ``@``, ``ns1`` and the
      wildcard ``*`` are ``A 127.0.0.1`` (so HTTP-01 for any name resolves to loopback);
      ``caa-forbid.example.test. CAA 0 issue "otherca.example"`` (forbids every other CA);
      ``caa-allow.example.test. CAA 0 issue "pebble.test"`` plus
      ``CAA 0 issuewild "otherca.example"`` (allows Pebble for names, not for wildcards);
      ``_acme-challenge.delegated.example.test. CNAME delegated.example.test.acme-delegate.test.``
    - ``acme-delegate.test`` — TSIG-updatable: the target zone of delegations (PL-5).
    - ``readonly.test`` — no updates allowed (an update is REFUSED).

    ``BindServer`` fields: ``host``, ``port``, ``zones``, ``tsig_name``, ``tsig_secret``,
    ``tsig_algorithm`` (dnspython name, ``hmac-sha256``), ``workdir``, ``proc``, ``log``,
    ``started_in`` (seconds). Helpers: ``nameservers`` ((host, port) list for the checks of
    ``certpilot.adapters.dns.checks``), ``keyring()``, ``update(zone, add=[...], delete=[...])``
    (records as ``(fqdn, rdtype, value)``; raises on a non-NOERROR answer),
    ``query(fqdn, rdtype) -> list[str]`` (authoritative, straight from BIND; ``[]`` when none),
    ``txt(fqdn) -> set[str]``, ``zone_of(fqdn)``.

``start_pebble(workdir, dns_port, *, nonce_reject=0, authz_reuse=0, http_port=None, eab=None,
validity_seconds=None) -> PebbleServer``
    A CA and a server certificate for 127.0.0.1/localhost are made at start-up.
    ``PebbleServer`` fields: ``directory_url`` (https://127.0.0.1:PORT/dir), ``management_url``,
    ``ca_bundle`` (path of the PEM to pass as ``verify_ssl``), ``http_port`` (where Pebble
    connects for HTTP-01: bind your responder to 127.0.0.1:http_port), ``tls_port``,
    ``dns_port``, ``ca_identifiers`` (what a CAA ``issue`` value must say to allow Pebble:
    ``("pebble.test",)`` by convention of these zones — Pebble itself does not check CAA),
    ``proc``, ``log``, ``started_in``. ``roots() -> (root_pem, intermediate_pem)`` fetches them
    from the management port (they change at every start). ``eab`` is ``{kid: base64url_hmac}``
    and makes external account binding required.

``start_challtestsrv(workdir) -> ChallTestSrv``
    Mock DNS (every A query answers 127.0.0.1, no AAAA) plus its management API.
    Fields ``dns_port``, ``management_url``; helpers ``set_txt(host, value)``,
    ``clear_txt(host)`` (host with or without the trailing dot).

Fixtures (session scope): ``bind_server``, ``pebble`` (resolves through ``bind_server``),
``challtestsrv``, ``pebble_challtestsrv`` (a second Pebble resolving through challtestsrv).
``unique_label`` (function scope) gives a fresh DNS label so tests never collide on names.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.base import (
    free_port,
    free_udp_tcp_port,
    missing,
    port_open,
    spawn,
    stop,
    wait_until,
    which,
)

TSIG_NAME = "certpilot-test-key."
TSIG_ALGORITHM = "hmac-sha256"
PEBBLE_CA_IDENTIFIER = "pebble.test"
"""The CAA issuer domain the test zones use for Pebble (RFC 8659 issuer-domain-name)."""
OTHER_CA_IDENTIFIER = "otherca.example"

UPDATABLE_ZONES = ("example.test", "acme-delegate.test")
READONLY_ZONES = ("readonly.test",)

Record = tuple[str, str, str]
"""(fqdn, rdtype, value) as in a zone file, e.g. ("x.example.test.", "TXT", '"v"')."""


# --------------------------------------------------------------------------- BIND


def _zone_text(zone: str) -> str:
    origin = zone.rstrip(".") + "."
    lines = [
        f"$ORIGIN {origin}",
        "$TTL 60",
        f"@ IN SOA ns1.{origin} hostmaster.{origin} 1 3600 600 86400 60",
        f"@ IN NS ns1.{origin}",
        "ns1 IN A 127.0.0.1",
        "@ IN A 127.0.0.1",
        "* IN A 127.0.0.1",
    ]
    if zone == "example.test":
        lines += [
            f'caa-forbid IN CAA 0 issue "{OTHER_CA_IDENTIFIER}"',
            f'caa-allow IN CAA 0 issue "{PEBBLE_CA_IDENTIFIER}"',
            f'caa-allow IN CAA 0 issuewild "{OTHER_CA_IDENTIFIER}"',
            "_acme-challenge.delegated IN CNAME delegated.example.test.acme-delegate.test.",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class BindServer:
    """A running BIND 9 (authoritative only) with TSIG-updatable zones."""

    host: str
    port: int
    zones: tuple[str, ...]
    tsig_name: str
    tsig_secret: str
    tsig_algorithm: str
    workdir: Path
    proc: subprocess.Popen | None = None
    log: Path | None = None
    started_in: float = 0.0

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        """The authoritative servers of every zone here, as (host, port) pairs."""
        return [(self.host, self.port)]

    def keyring(self):
        """A dnspython TSIG keyring holding the server's key."""
        import dns.tsigkeyring

        return dns.tsigkeyring.from_text({self.tsig_name: (self.tsig_algorithm, self.tsig_secret)})

    def zone_of(self, fqdn: str) -> str:
        """The zone of this server that holds `fqdn` (longest suffix match)."""
        name = fqdn.rstrip(".").lower()
        best = [z for z in self.zones if name == z or name.endswith("." + z)]
        if not best:
            raise ValueError(f"{fqdn} is in no zone of this BIND ({', '.join(self.zones)})")
        return max(best, key=len)

    def update(self, zone: str, *, add: Iterable[Record] = (), delete: Iterable[Record] = (),
               ttl: int = 60) -> None:
        """Apply a signed RFC 2136 update: delete then add exact records (test helper)."""
        import dns.query
        import dns.rcode
        import dns.update

        msg = dns.update.UpdateMessage(zone, keyring=self.keyring(), keyname=self.tsig_name,
                                       keyalgorithm=self.tsig_algorithm)
        for fqdn, rdtype, value in delete:
            msg.delete(_abs(fqdn), rdtype, value)
        for fqdn, rdtype, value in add:
            msg.add(_abs(fqdn), ttl, rdtype, value)
        answer = dns.query.tcp(msg, self.host, port=self.port, timeout=5)
        if answer.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"update of {zone} failed: {dns.rcode.to_text(answer.rcode())}")

    def query(self, fqdn: str, rdtype: str) -> list[str]:
        """The records of `fqdn`/`rdtype` as BIND answers them (no recursion, no cache)."""
        import dns.message
        import dns.query
        import dns.rdatatype

        q = dns.message.make_query(_abs(fqdn), rdtype)
        r = dns.query.tcp(q, self.host, port=self.port, timeout=5)
        want = dns.rdatatype.from_text(rdtype)
        return [rd.to_text() for rrset in r.answer if rrset.rdtype == want for rd in rrset]

    def txt(self, fqdn: str) -> set[str]:
        """The TXT strings at `fqdn` (unquoted, multi-string values joined)."""
        import dns.message
        import dns.query

        q = dns.message.make_query(_abs(fqdn), "TXT")
        r = dns.query.tcp(q, self.host, port=self.port, timeout=5)
        return {b"".join(rd.strings).decode() for rrset in r.answer if rrset.rdtype == 16 for rd in rrset}


def _abs(fqdn: str) -> str:
    return fqdn if fqdn.endswith(".") else fqdn + "."


def start_bind(workdir: Path, *, tsig_name: str = TSIG_NAME, tsig_secret: str | None = None,
               timeout: float = 20.0) -> BindServer:
    """Start `named -g` on a free loopback port with the test zones; wait until it answers SOA.

    Args:
        workdir: an empty directory for named.conf, zone files, journals and the log.
        tsig_name: the TSIG key name granted updates in the updatable zones.
        tsig_secret: base64 secret; a fresh random 32-byte one by default.
        timeout: seconds to wait for the first SOA answer.

    Raises:
        FileNotFoundError: named is not installed.
        RuntimeError: named did not answer in time (the message holds its log tail).
    """
    binary = which("named", "/usr/sbin/named")
    if binary is None:
        raise FileNotFoundError("named")
    t0 = time.monotonic()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_udp_tcp_port()
    secret = tsig_secret or base64.b64encode(secrets.token_bytes(32)).decode()
    key_name = tsig_name.rstrip(".")
    conf = [
        f'key "{key_name}" {{ algorithm {TSIG_ALGORITHM}; secret "{secret}"; }};',
        "options {",
        f'  directory "{workdir}";',
        f"  listen-on port {port} {{ 127.0.0.1; }};",
        "  listen-on-v6 { none; };",
        "  recursion no;",
        "  dnssec-validation no;",
        "  notify no;",
        f'  pid-file "{workdir}/named.pid";',
        f'  session-keyfile "{workdir}/session.key";',
        f'  managed-keys-directory "{workdir}";',
        "};",
        "controls { };",
    ]
    for zone in UPDATABLE_ZONES + READONLY_ZONES:
        (workdir / f"db.{zone}").write_text(_zone_text(zone))
        policy = (f'update-policy {{ grant "{key_name}" zonesub ANY; }};' if zone in UPDATABLE_ZONES
                  else "allow-update { none; };")
        conf.append(f'zone "{zone}" {{ type primary; file "{workdir}/db.{zone}"; {policy} }};')
    (workdir / "named.conf").write_text("\n".join(conf) + "\n")
    log = workdir / "named.log"
    # -g: foreground, log to stderr; running as root we keep root (no -u), and the files are ours.
    proc = spawn([binary, "-g", "-4", "-n", "1", "-c", str(workdir / "named.conf")], log=log, cwd=workdir)
    server = BindServer(host="127.0.0.1", port=port, zones=UPDATABLE_ZONES + READONLY_ZONES,
                        tsig_name=_abs(tsig_name), tsig_secret=secret, tsig_algorithm=TSIG_ALGORITHM,
                        workdir=workdir, proc=proc, log=log)

    def answers_soa() -> bool:
        return bool(server.query("example.test.", "SOA"))

    wait_until(answers_soa, timeout=timeout, what="named", proc=proc, log=log)
    server.started_in = time.monotonic() - t0
    return server


# --------------------------------------------------------------------------- Pebble


def _make_tls_material(workdir: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certpilot test Pebble TLS CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = workdir / "tls-ca.pem", workdir / "tls-cert.pem", workdir / "tls-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return ca_path, cert_path, key_path


@dataclass
class PebbleServer:
    """A running Pebble ACME test CA."""

    directory_url: str
    management_url: str
    ca_bundle: Path
    http_port: int
    tls_port: int
    dns_port: int
    ca_identifiers: tuple[str, ...] = (PEBBLE_CA_IDENTIFIER,)
    proc: subprocess.Popen | None = None
    log: Path | None = None
    started_in: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    def roots(self) -> tuple[str, str]:
        """(root PEM, intermediate PEM) of this run's issuing hierarchy (new at every start)."""
        import httpx

        with httpx.Client(verify=str(self.ca_bundle), timeout=10) as c:
            root = c.get(f"{self.management_url}/roots/0")
            root.raise_for_status()
            inter = c.get(f"{self.management_url}/intermediates/0")
            inter.raise_for_status()
            return root.text, inter.text


def start_pebble(workdir: Path, dns_port: int, *, nonce_reject: int = 0, authz_reuse: int = 0,
                 http_port: int | None = None, eab: dict[str, str] | None = None,
                 validity_seconds: int | None = None, timeout: float = 20.0) -> PebbleServer:
    """Start Pebble resolving names through 127.0.0.1:`dns_port`; wait until /dir answers.

    Args:
        workdir: an empty directory for the config, the TLS material and the log.
        dns_port: the DNS server Pebble resolves through (BIND or challtestsrv).
        nonce_reject: percentage of nonces Pebble rejects (PEBBLE_WFE_NONCEREJECT).
        authz_reuse: percentage of valid authorizations reused (PEBBLE_AUTHZREUSE).
        http_port: port Pebble connects to for HTTP-01; a free one by default.
        eab: external account MAC keys ``{kid: base64url key}``; makes EAB required.
        validity_seconds: certificateValidityPeriod of issued certificates.
        timeout: seconds to wait for the directory.

    Raises:
        FileNotFoundError: pebble is not installed.
        RuntimeError: Pebble did not answer in time (the message holds its log tail).
    """
    binary = which("pebble", "/usr/bin/pebble")
    if binary is None:
        raise FileNotFoundError("pebble")
    t0 = time.monotonic()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = _make_tls_material(workdir)
    port, mgmt, tls = free_port(), free_port(), free_port()
    http = http_port or free_port()
    cfg: dict = {
        "listenAddress": f"127.0.0.1:{port}",
        "managementListenAddress": f"127.0.0.1:{mgmt}",
        "certificate": str(cert_path),
        "privateKey": str(key_path),
        "httpPort": http,
        "tlsPort": tls,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": bool(eab),
    }
    if eab:
        cfg["externalAccountMACKeys"] = dict(eab)
    if validity_seconds is not None:
        cfg["certificateValidityPeriod"] = validity_seconds
    (workdir / "pebble.json").write_text(json.dumps({"pebble": cfg}, indent=2))
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": str(nonce_reject),
        "PEBBLE_AUTHZREUSE": str(authz_reuse),
    }
    log = workdir / "pebble.log"
    proc = spawn([binary, "-config", str(workdir / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
                 log=log, env=env, cwd=workdir)
    server = PebbleServer(directory_url=f"https://127.0.0.1:{port}/dir",
                          management_url=f"https://127.0.0.1:{mgmt}", ca_bundle=ca_path, http_port=http,
                          tls_port=tls, dns_port=dns_port, proc=proc, log=log,
                          env={k: env[k] for k in ("PEBBLE_VA_NOSLEEP", "PEBBLE_WFE_NONCEREJECT",
                                                   "PEBBLE_AUTHZREUSE")})

    def directory_answers() -> bool:
        import httpx

        if not (port_open(port) and port_open(mgmt)):
            return False
        return httpx.get(server.directory_url, verify=str(ca_path), timeout=2).status_code == 200

    wait_until(directory_answers, timeout=timeout, what="pebble", proc=proc, log=log)
    server.started_in = time.monotonic() - t0
    return server


# --------------------------------------------------------------------------- challtestsrv


@dataclass
class ChallTestSrv:
    """A running pebble-challtestsrv (mock DNS: A → 127.0.0.1, TXT as set through the API)."""

    dns_port: int
    management_url: str
    proc: subprocess.Popen | None = None
    log: Path | None = None
    started_in: float = 0.0

    def set_txt(self, host: str, value: str) -> None:
        """Serve `value` as a TXT record at `host`."""
        import httpx

        httpx.post(f"{self.management_url}/set-txt", json={"host": _abs(host), "value": value},
                   timeout=5).raise_for_status()

    def clear_txt(self, host: str) -> None:
        """Stop serving TXT records at `host`."""
        import httpx

        httpx.post(f"{self.management_url}/clear-txt", json={"host": _abs(host)},
                   timeout=5).raise_for_status()


def start_challtestsrv(workdir: Path, *, timeout: float = 20.0) -> ChallTestSrv:
    """Start pebble-challtestsrv with only its DNS and management listeners, on loopback.

    Raises:
        FileNotFoundError: pebble-challtestsrv is not installed.
        RuntimeError: it did not listen in time.
    """
    binary = which("pebble-challtestsrv", "/usr/bin/pebble-challtestsrv")
    if binary is None:
        raise FileNotFoundError("pebble-challtestsrv")
    t0 = time.monotonic()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dns_port, mgmt = free_udp_tcp_port(), free_port()
    log = workdir / "challtestsrv.log"
    # -defaultIPv6 "": with ::1 Pebble would validate HTTP-01 over IPv6 and miss 127.0.0.1.
    proc = spawn([binary, "-defaultIPv6", "", "-dns01", f"127.0.0.1:{dns_port}", "-http01", "",
                  "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{mgmt}"],
                 log=log, cwd=workdir)
    srv = ChallTestSrv(dns_port=dns_port, management_url=f"http://127.0.0.1:{mgmt}", proc=proc, log=log)
    wait_until(lambda: port_open(mgmt) and port_open(dns_port), timeout=timeout, what="pebble-challtestsrv",
               proc=proc, log=log)
    srv.started_in = time.monotonic() - t0
    return srv


# --------------------------------------------------------------------------- fixtures


def _start_or_skip(what: str, start, *args, **kwargs):
    try:
        return start(*args, **kwargs)
    except (FileNotFoundError, RuntimeError) as exc:
        missing(f"{what} ({exc})")


@pytest.fixture(scope="session")
def bind_server(tmp_path_factory) -> Iterable[BindServer]:
    """One BIND for the session (tests use `unique_label` names so they never collide)."""
    server = _start_or_skip("named", start_bind, tmp_path_factory.mktemp("bind"))
    yield server
    stop(server.proc)


@pytest.fixture(scope="session")
def pebble(tmp_path_factory, bind_server) -> Iterable[PebbleServer]:
    """One Pebble for the session, resolving through `bind_server`."""
    server = _start_or_skip("pebble", start_pebble, tmp_path_factory.mktemp("pebble"), bind_server.port)
    yield server
    stop(server.proc)


@pytest.fixture(scope="session")
def challtestsrv(tmp_path_factory) -> Iterable[ChallTestSrv]:
    """One pebble-challtestsrv for the session (mock DNS with settable TXT records)."""
    srv = _start_or_skip("pebble-challtestsrv", start_challtestsrv, tmp_path_factory.mktemp("challtestsrv"))
    yield srv
    stop(srv.proc)


@pytest.fixture(scope="session")
def pebble_challtestsrv(tmp_path_factory, challtestsrv) -> Iterable[PebbleServer]:
    """A second Pebble for the session whose DNS is `challtestsrv`."""
    server = _start_or_skip("pebble", start_pebble, tmp_path_factory.mktemp("pebble-cts"),
                            challtestsrv.dns_port)
    yield server
    stop(server.proc)


@pytest.fixture
def unique_label() -> str:
    """A fresh DNS label (``t`` + 10 hex digits) so tests sharing a server never collide."""
    return "t" + uuid.uuid4().hex[:10]


__all__: Sequence[str] = (
    "BindServer", "PebbleServer", "ChallTestSrv", "start_bind", "start_pebble", "start_challtestsrv",
    "bind_server", "pebble", "challtestsrv", "pebble_challtestsrv", "unique_label",
    "PEBBLE_CA_IDENTIFIER", "OTHER_CA_IDENTIFIER", "TSIG_NAME", "TSIG_ALGORITHM",
)
