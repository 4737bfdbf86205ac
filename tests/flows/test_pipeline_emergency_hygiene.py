"""EM-1..EM-3 (a site down with an expired certificate) and key hygiene across Prefect (CSR-5)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from certpilot import runtime as rt
from certpilot.adapters.issuers.acme import ACCOUNT_PURPOSE
from certpilot.adapters.probe.tls import probe_sync
from certpilot.core.models import Level, OrderKind, OrderState, Status
from certpilot.core.verification import Endpoint
from certpilot.crypto.vault import VaultError, key_aad
from certpilot.store.db import reset_engines
from certpilot.store.repository import Repository
from tests.flows.pipeline_env import SITE, build_site

pytestmark = [pytest.mark.servers, pytest.mark.flows]


def test_em1_em2_em3_emergency_restores_site_serving_expired_certificate(
        tmp_path, pebble, bind_server, nginx_factory, nginx_ca, prefect_harness):
    """EM-1: nginx serves a certificate expired two days ago; `emergency` buys a DV certificate,
    validates it by DNS at once, deploys it and proves it is served. EM-2: it is marked temporary
    and the follow-up order of the original specification is on record. EM-3: the targets were
    looked up while issuance ran."""
    from flows.emergency import emergency

    site = build_site(tmp_path, pebble=pebble, bind_server=bind_server, nginx_factory=nginx_factory,
                      nginx_ca=nginx_ca, days_left=-2)
    endpoint = Endpoint("127.0.0.1", site.nginx.port, SITE)
    assert probe_sync(endpoint, timeout=3).outcome.value == "expired"
    with rt.use(site.runtime):
        out = emergency(site.cert_id)
        again = emergency(site.cert_id)  # re-entrant: nothing is bought twice
    assert out.state is Status.ISSUED and out.targets == ("nginx:nginx www",)
    assert out.verify.served == (f"127.0.0.1:{site.nginx.port} (SNI {SITE})",)  # VER-1, the final proof
    assert again.temporary_certificate_id == out.temporary_certificate_id
    with site.session() as s:
        repo = Repository(s)
        temp = repo.certificate_model(out.temporary_certificate_id)
        assert (temp.temporary, temp.level, temp.state, temp.parent_id) == (True, Level.DV, Status.ISSUED,
                                                                              site.cert_id)
        assert repo.get_order(temp.order_id).kind is OrderKind.EMERGENCY
        follow_up = repo.get_order(out.follow_up.order_id)
        assert follow_up.spec == repo.certificate_model(site.cert_id).spec  # EM-2: original specification
    from certpilot.adapters.probe.tls import TrustBundle

    served = probe_sync(endpoint, timeout=3, trust=TrustBundle.from_pem(pebble.roots()[0].encode()))
    assert served.fingerprint == temp.fingerprint_sha256 and served.outcome.value == "ok"
    reset_engines()


def test_em2_follow_up_of_the_original_specification_replaces_the_temporary_certificate(
        tmp_path, pebble, bind_server, nginx_factory, nginx_ca, prefect_harness, monkeypatch):
    """EM-2 completed: the follow-up purchase of the original specification is the temporary
    certificate's successor (LC-2), paid from quota; the owner is told; the next scan's renewal run
    applies for it, deploys it to the targets the temporary certificate serves (DEP-1) and nginx
    serves it in place of the temporary one. The temporary certificate is never renewed by itself
    (its policy: no automatic renewal) and cannot be renewed while its follow-up stands."""
    from certpilot.adapters.probe.tls import TrustBundle
    from certpilot.operations.inventory import set_policy
    from flows.emergency import emergency
    from flows.scan import scan

    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "inline")
    site = build_site(tmp_path, pebble=pebble, bind_server=bind_server, nginx_factory=nginx_factory,
                      nginx_ca=nginx_ca, days_left=-2)
    endpoint = Endpoint("127.0.0.1", site.nginx.port, SITE)
    with rt.use(site.runtime):
        out = emergency(site.cert_id)
        assert out.follow_up.state is OrderState.PAID
        assert set_policy(site.runtime, out.temporary_certificate_id).auto_renew is False
        told = [e for e in site.notifier.events if "(EM-2)" in e.subject]
        assert len(told) == 1 and out.follow_up.order_id in told[0].body
        scan()
    with site.session() as s:
        repo = Repository(s)
        (final,) = [c for c in repo.children(out.temporary_certificate_id) if c.state is Status.ISSUED]
        original = repo.certificate_model(site.cert_id)
        assert (final.order_id, final.temporary, final.spec) == (out.follow_up.order_id, False, original.spec)
    served = probe_sync(endpoint, timeout=3, trust=TrustBundle.from_pem(pebble.roots()[0].encode()))
    assert served.fingerprint == final.fingerprint_sha256 and served.outcome.value == "ok"
    reset_engines()


def _needles(site_db_url: str, vault) -> list[bytes]:
    """Every private key of the store, as the byte strings a leak would contain."""
    from cryptography.hazmat.primitives import serialization

    from certpilot.store.db import session_scope
    from certpilot.store.tables import KeyRow

    out: list[bytes] = []
    with session_scope(site_db_url) as s:
        repo = Repository(s)
        for row in s.query(KeyRow).all():
            pem = None
            for purpose in ("tls-key", ACCOUNT_PURPOSE, "ca"):  # TLS keys, the ACME account key, CA keys
                try:
                    pem = vault.open(repo.get_sealed_key(row.id), key_aad(row.public_fingerprint, purpose))
                    break
                except VaultError:
                    continue
            assert pem is not None, f"key {row.id} opens under no known purpose"

            key = serialization.load_pem_private_key(pem, None)
            der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            out.append(der)
            body = b"".join(pem.strip().splitlines()[1:-1])
            out += [body[i:i + 48] for i in range(0, len(body) - 48, 48)]  # any PEM line of it
            out.append(base64.b64encode(der)[8:56])
    return out


def test_csr5_no_key_bytes_in_prefect_database_results_logs_or_artifacts(
        tmp_path, pebble, bind_server, nginx_factory, nginx_ca, prefect_harness):
    """CSR-5: after a renewal end to end, the Prefect database (flow runs, task runs, parameters,
    results, logs, artifacts), its result storage and PREFECT_HOME hold no byte of any key."""
    from prefect.settings import get_current_settings

    from flows.renewal import renewal

    site = build_site(tmp_path, pebble=pebble, bind_server=bind_server, nginx_factory=nginx_factory,
                      nginx_ca=nginx_ca)
    with rt.use(site.runtime):
        out = renewal(site.cert_id, years=1)
    assert out.order.state is OrderState.PAID and out.state is Status.ISSUED
    needles = _needles(site.db_url, site.runtime.vault)
    assert len(needles) > 10
    settings = get_current_settings()
    db_url = str(settings.server.database.connection_url.get_secret_value()
                 if hasattr(settings.server.database.connection_url, "get_secret_value")
                 else settings.server.database.connection_url)
    db_file = Path(re.sub(r"^sqlite\+aiosqlite:///", "", db_url))
    places = [db_file, Path(str(db_file) + "-wal"), Path(settings.home),
              Path(settings.results.local_storage_path) if settings.results.local_storage_path else None]
    files = []
    for place in filter(None, places):
        if place.is_file():
            files.append(place)
        elif place.is_dir():
            files += [p for p in place.rglob("*") if p.is_file()]
    assert db_file in files, f"the Prefect database was not found at {db_file}"
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"key material found in {path}"
    reset_engines()
