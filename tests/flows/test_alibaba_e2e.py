"""Issue 14 end to end, through the flows on a Prefect test server, against the local Alibaba Cloud
emulator (tests/servers/alibaba_emulator.py: CAS + AliDNS + deployment jobs over the official SDK's
wire format; resources serve TLS): sync an account of five certificates, let the scan renew the
due one through CAS (package quota, AliDNS record added then removed, the CA's review waited for
by the scanner, not a worker), deploy it with a CAS deployment job and prove it served (VER-1).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

import pytest

from certpilot import runtime as rt
from certpilot.adapters.dns.alidns import AliDnsProvider
from certpilot.adapters.issuers.alibaba_cas import AlibabaCasIssuer, CasProduct
from certpilot.adapters.probe.tls import probe_sync
from certpilot.core.deployment import TargetKind
from certpilot.core.models import CertType, Level, Origin, Spec, Status
from certpilot.core.verification import Endpoint
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import deployments, inbox, orders
from certpilot.operations import scan as scan_ops
from certpilot.store.db import ensure_schema, reset_engines, session_scope
from certpilot.store.repository import Repository
from tests.flows.pipeline_env import CollectingNotifier

pytestmark = [pytest.mark.servers, pytest.mark.flows]

PRODUCT = "digicert-free-1-free"
SPEC = "DigiCert/DV/single"
ZONE = "example.cn"
DUE = "shop.example.cn"


def _iso(at: datetime) -> str:
    return at.isoformat()


class Account:
    """The emulated account and a certpilot installed over it."""

    def __init__(self, tmp_path, emu):
        now = datetime.now(UTC)
        self.emu = emu
        emu.add_zone(ZONE)
        emu.add_package(PRODUCT, total=5, used=2, brand="DigiCert")
        emu.settings(review_seconds=3600.0, deploy_seconds=0.3)  # a review no run outlasts; ended by the test
        self.due = emu.seed_certificate([DUE], product_code=PRODUCT, brand="DigiCert",
                                        not_before=_iso(now - timedelta(days=345)),
                                        not_after=_iso(now + timedelta(days=20)),
                                        resources=[{"domain": DUE, "cloud_product": "SLB"}])
        self.multi = emu.seed_certificate(["a.example.cn", "b.example.cn", "c.example.cn"], product_code=PRODUCT,
                                          brand="DigiCert", not_before=_iso(now - timedelta(days=350)),
                                          not_after=_iso(now + timedelta(days=15)))
        self.uploaded = emu.seed_certificate(["upload.example.cn"], source="upload", brand="DigiCert",
                                             not_after=_iso(now + timedelta(days=200)))
        self.others = [emu.seed_certificate([n], product_code=PRODUCT, brand="DigiCert",
                                            not_after=_iso(now + timedelta(days=d)))
                       for n, d in (("api.example.cn", 200), ("www.example.cn", 300))]
        self.db_url = f"sqlite:///{tmp_path / 'certpilot.db'}"
        ensure_schema(self.db_url)
        with session_scope(self.db_url) as s:
            orders.add_managed(s, 2, now=now)
        conn = emu.connection()
        self.dns = AliDnsProvider(conn.alidns(), zones=[ZONE])
        issuer = AlibabaCasIssuer(conn.cas(), CasProduct(PRODUCT, SPEC), dns_providers=[self.dns], review_retry=0.5,
                                  account=conn.access_key_id)
        root = tmp_path / "emulator-root.pem"
        root.write_text(emu.root_pem)
        self.notifier = CollectingNotifier()
        self.svc = rt.local_services(database_url=self.db_url, vault=KeyVault(LocalMasterKey(os.urandom(32))),
                                     issuers={"alibaba-cas/default": issuer}, default_issuer="alibaba-cas/default",
                                     dns_providers=[self.dns], notifiers=[self.notifier], trust=str(root),
                                     extra={"alibaba": lambda _name: conn})
        self.svc.poll_seconds = 0.5  # the run looks at the review briefly, then leaves it to the scanner

    def session(self):
        return session_scope(self.db_url)

    def served(self, name: str) -> str | None:
        return probe_sync(Endpoint("127.0.0.1", self.emu.tls_port, name), timeout=3).fingerprint


@pytest.fixture
def account(tmp_path, alibaba, prefect_harness, monkeypatch):
    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "inline")
    built = Account(tmp_path, alibaba)
    with rt.use(built.svc):
        yield built
    reset_engines()


def _by_name(s) -> dict:
    from sqlalchemy import select

    from certpilot.store.tables import CertificateRow

    repo = Repository(s)
    return {c.common_name: c for c in (repo.certificate_model(i) for i in s.scalars(select(CertificateRow.id)))}


def test_pay1_dep2_ver1_cas_account_synced_and_due_certificate_renewed_end_to_end(account, caplog):
    """Sync five certificates (one due in 20 days, one multi-domain, one uploaded); the scan renews
    the due one through CAS: PAY-1 from the package's quota as CAS counts it (decremented there),
    the AliDNS record added for CAS's domain check and removed after issuance (DV-2), the CA's
    review followed by the next scan with no run waiting on it (CA-1/CA-2), a CAS deployment job
    to the SLB that served the old certificate (DEP-2), and the TLS probe sees the new one (VER-1).
    The multi-domain one is refused with EL-1's reason; a throttled call is retried; the AccessKey
    secret is in no log line, flow result or artifact."""
    from flows.alibaba import sync_alibaba
    from flows.scan import scan

    emu = account.emu
    caplog.set_level(logging.DEBUG)
    old_fp = account.served(DUE)
    assert old_fp == account.due["fingerprint_sha256"]

    counts = sync_alibaba(connect_to=f"127.0.0.1:{emu.tls_port}")
    assert counts == {"imported": 5, "skipped": 0, "refused": 0}
    assert sync_alibaba(connect_to=f"127.0.0.1:{emu.tls_port}") == {"imported": 0, "skipped": 5, "refused": 0}
    with account.session() as s:
        certs = _by_name(s)
        assert {n: c.origin for n, c in certs.items()} == {
            DUE: Origin.OFFICIAL, "a.example.cn": Origin.OFFICIAL, "upload.example.cn": Origin.UPLOADED,
            "api.example.cn": Origin.OFFICIAL, "www.example.cn": Origin.OFFICIAL}
        assert certs["a.example.cn"].cert_type is CertType.MULTI
        assert {c.brand for c in certs.values()} == {"DigiCert"} and {c.level for c in certs.values()} == {Level.DV}
        (target,) = deployments.targets_of(s, certs[DUE].id)
        assert target.kind is TargetKind.ALIBABA_JOB and target.config["resource_ids"] == account.due["resource_ids"]
        # PAY-3: the local quota is the package's, as CAS counts it (5 bought, 2 used).
        assert Repository(s).balances().quota_for(Spec.from_key(SPEC)) == 3
        due_id = certs[DUE].id

    emu.fault("DescribeCertificateState", code="Throttling.User", times=1, retry_after_ms=200)
    first = scan()
    # EL-1: the multi-domain certificate is due too, but its renewal is refused before any order:
    # the scan's line for it says why (a new purchase replaces it), and no run is launched for it.
    assert first.renewals == 1 and first.launched == 1 and first.failed == 0
    with account.session() as s:
        new = min(Repository(s).children(due_id), key=lambda c: c.plan_index)
        assert new.state is Status.UNDER_REVIEW  # CA-1: the run ended; the review is the scanner's to follow
        assert not Repository(s).children(certs["a.example.cn"].id)
    lines = {line.id: line for line in scan_ops.decide(account.svc).lines}
    assert lines[certs["a.example.cn"].id].next_action.startswith("MultiDomain: ")
    assert emu.packages()[PRODUCT]["used"] == 3  # PAY-1 at the service: one unit of the package
    placed = emu.calls("AddDomainRecord")
    assert [c["params"]["RR"] for c in placed] == ["_dnsauth.shop"]
    throttled = [c for c in emu.calls("DescribeCertificateState") if c["status"] == 400]
    assert len(throttled) == 1  # ... and the stage's retry asked again

    emu.settings(review_seconds=0.0)  # the CA's review is over
    second = scan()
    assert second.issued == 1, second
    with account.session() as s:
        new = Repository(s).certificate_model(new.id)
        assert new.state is Status.ISSUED
        new_fp = new.fingerprint_sha256
    assert new_fp != old_fp and account.served(DUE) == new_fp  # VER-1 at the SLB's listener
    (res,) = account.due["resource_ids"]
    assert emu.resource_cert_id(res) != account.due["cert_id"]
    assert emu.txt(f"_dnsauth.{DUE}") == set()  # DV-2: the validation record is gone again
    assert emu.calls("CreateDeploymentJob") and emu.calls("RenewCertificateOrderForPackageRequest")

    secret = emu.access_key_secret
    assert secret not in caplog.text
    for result in (counts, first, second):
        assert secret not in repr(result)
    assert secret not in _artifacts_text()
    with open(account.db_url.removeprefix("sqlite:///"), "rb") as fh:
        assert secret.encode() not in fh.read()


def _artifacts_text() -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return "\n".join(repr(a.data) + repr(a.description) for a in client.read_artifacts(limit=200))


def test_ca2_nt2_permanent_cas_error_reaches_the_inbox_with_the_service_message(account):
    """A refusal CAS gives (not throttling, not 5xx) is not retried: the renewal fails, and the
    owner's inbox has CAS's own words (CA-2, NT-2)."""
    from flows.alibaba import sync_alibaba
    from flows.scan import scan

    emu = account.emu
    sync_alibaba(connect_to=f"127.0.0.1:{emu.tls_port}")
    message = "The domain shop.example.cn is on the package's deny list."
    emu.fault("RenewCertificateOrderForPackageRequest", code="DomainNotAllowed", message=message, times=10)
    out = scan()
    assert out.failed >= 1
    calls = [c for c in emu.calls("RenewCertificateOrderForPackageRequest")]
    assert len(calls) == 1  # permanent: asked once
    texts = [f"{m.subject} {m.body}" for m in inbox.messages(account.svc, limit=50)]
    assert any(message in t for t in texts), texts
