"""Use case: discover certificates served on the network and add them to the inventory.

`discover` probes a list of `host:port/sni` endpoints, or the TLS server names of an nginx
configuration, and adds each certificate it has not seen as a *discovered* certificate: stored
like an upload without a key (key_held false, the served chain kept), audited by actor
`discover`, listed by `certpilot list` for the operator to adopt (`certpilot adopt ID --key FILE`
seals its key; or leave it watched). It only connects and reads: a served site is never changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from certpilot.adapters.probe.scale import fetch_many
from certpilot.core.discovery import Discovered, DiscoveryReport, nginx_tls_servers, parse_endpoint
from certpilot.core.errors import BadInputError, CertpilotError, Reason, Refusal, RefusedError
from certpilot.core.models import Level, Origin
from certpilot.core.names import OWN_BRAND
from certpilot.core.verification import Endpoint
from certpilot.crypto.keys import public_fingerprint, store_key
from certpilot.operations.common import iso
from certpilot.operations.importing import import_certificate
from certpilot.store.repository import Repository

if TYPE_CHECKING:
    from certpilot.runtime import Services

ACTOR = "discover"


def _endpoints(endpoints: list[str], nginx_config: str | None, connect: str) -> tuple[list[Endpoint], tuple[str, ...]]:
    found = [parse_endpoint(e) for e in endpoints]
    skipped: tuple[str, ...] = ()
    if nginx_config:
        try:
            text = Path(nginx_config).read_text()
        except OSError as exc:
            raise BadInputError(f"cannot read the nginx configuration {nginx_config}: {exc.strerror}") from exc
        servers = nginx_tls_servers(text, connect=connect)
        found += list(servers.endpoints)
        skipped = servers.skipped
    if not found:
        raise BadInputError("nothing to discover: give endpoints (host:port/sni) or an nginx configuration "
                            "with TLS server blocks (`listen ... ssl` and `server_name`)")
    return found, skipped


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


def discover(svc: Services, *, endpoints: list[str] | tuple[str, ...] = (), nginx_config: str | None = None,
             connect: str = "127.0.0.1", concurrency: int = 50, timeout: float = 5.0) -> DiscoveryReport:
    """Probe the endpoints (and the nginx configuration's TLS server names) and add every
    certificate not yet in the inventory as a discovered certificate (no key held).

    Args:
        endpoints: `host`, `host:port`, `host:port/sni` specs.
        nginx_config: an nginx configuration file; each `server` block with a `listen ... ssl`
            gives one endpoint per `server_name` (connecting to `connect` when `listen` names only a port).
        concurrency: connections in flight at most. timeout: seconds per connection.
    Returns:
        one line per endpoint (added, known, or the error), and the names skipped.
    Raises:
        BadInputError: a bad endpoint spec, an unreadable configuration, nothing to probe.
    """
    eps, skipped = _endpoints(list(endpoints), nginx_config, connect)
    fetched = fetch_many(eps, concurrency=concurrency, timeout=timeout)  # outside any transaction
    items: list[Discovered] = []
    seen: dict[str, str] = {}
    for result, ders in fetched:
        where = str(result.endpoint)
        if not ders:
            items.append(Discovered(where, error=f"{result.outcome.value}: {result.error}"))
            continue
        fp = result.fingerprint or ""
        line = {"endpoint": where, "fingerprint": fp, "common_name": ", ".join(result.names[:1]),
                "not_after": iso(result.not_after)}
        if fp in seen:
            items.append(Discovered(certificate_id=seen[fp], known=True, **line))
            continue
        items.append(_store(svc, fp, ders, line, seen))
    return DiscoveryReport(tuple(items), skipped)


def _store(svc: Services, fp: str, ders: list[bytes], line: dict, seen: dict[str, str]) -> Discovered:
    """Add one served certificate (its own transaction: one refusal does not undo the others)."""
    with svc.session() as s:
        existing = Repository(s).find_by_fingerprint(fp)
        if existing is not None:
            seen[fp] = existing.id
            return Discovered(certificate_id=existing.id, known=True, **line)
        chain = [d for d in ders[1:] if not _self_signed(d)]
        try:
            res = import_certificate(s, cert_pem=_pem(ders[0]), key_pem=None, chain_pem=b"".join(map(_pem, chain)),
                                     origin=Origin.UPLOADED, level=Level.DV, brand=OWN_BRAND, owner=None,
                                     now=svc.now(), vault=svc.vault, actor=f"{ACTOR} {line['endpoint']}")
        except CertpilotError as exc:
            return Discovered(error=f"not added: {exc}", **line)
    seen[fp] = res.certificate.id
    return Discovered(certificate_id=res.certificate.id, added=True, **line)


def _self_signed(der: bytes) -> bool:
    cert = x509.load_der_x509_certificate(der)
    return cert.issuer == cert.subject


def adopt(svc: Services, certificate_id: str, key_pem: bytes, *, passphrase: bytes | None = None,
          actor: str = "cli") -> str:
    """Adopt a discovered certificate: seal its private key in the vault so certpilot can deploy
    it and renew it with the same key (CSR-5: the key is checked against the certificate first).

    Returns:
        the certificate id.
    Raises:
        NotFoundError: no such certificate. BadInputError: not a private key, or not this
        certificate's key. RefusedError(ALREADY_HELD): its key is held already.
    """
    try:
        key = load_pem_private_key(key_pem, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise BadInputError(f"the key file is not a readable PEM private key ({type(exc).__name__}); "
                            "give the key the certificate was issued for (with --passphrase if encrypted)") from None
    with svc.session() as s:
        repo = Repository(s)
        cert = repo.certificate_model(certificate_id)
        if cert.key_held:
            raise RefusedError(Refusal(Reason.BAD_INPUT, f"certificate {certificate_id} ({cert.common_name}) has "
                                       "its key held already: nothing to adopt", "CSR-5"))
        row = repo.get_certificate(certificate_id)
        leaf = x509.load_pem_x509_certificate(row.leaf_pem.encode())
        if public_fingerprint(leaf.public_key()) != public_fingerprint(key.public_key()):
            raise BadInputError(f"this key is not the key of certificate {certificate_id} ({cert.common_name}); "
                                "give the key the served certificate was issued for")
        key_id, _ = store_key(key, vault=svc.vault, repo=repo)
        repo.update_certificate(certificate_id, key_id=key_id, key_held=True, now=svc.now())
    return certificate_id
