"""CA review without holding a worker: an OV application under a review of days (CA-1, DV-5,
DV-6) ends its renewal run UNDER_REVIEW when the run may not suspend (see test_renewal_suspend
for a run that suspends); the scanner follows it when the CA is done (CA-2). A rejection ends
the run Failed, told once (CA-2, NT-2)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from certpilot import runtime as rt
from certpilot.adapters.issuers.private_ca import PrivateCa, PrivateCaPolicy
from certpilot.core.models import CertType, Level, Origin, Spec, Status
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import orders
from certpilot.operations.importing import import_certificate
from certpilot.store.db import ensure_schema, reset_engines, session_scope
from certpilot.store.ports import SqlPrivateCaStore
from certpilot.store.repository import Repository
from certpilot.store.scan_queries import CA_REJECTED, notices_sent
from tests.flows.ov_env import ov_site
from tests.flows.test_pipeline_forms import Resumer
from tests.servers.certs import make_ca, make_leaf

pytestmark = [pytest.mark.flows]


def test_ca1_dv5_dv6_ov_review_of_days_holds_no_worker_and_scanner_resumes(tmp_path, prefect_harness,
                                                                         monkeypatch):
    """CA-1: an OV review takes days: the renewal run asks for the CA's contact on a form (DV-6),
    submits, polls briefly and — as a run that may not suspend (no deployment) — ends with the
    certificate UNDER_REVIEW (DV-5): no process waits for five days. CA-2: five days later the
    scanner follows the review and the certificate is ISSUED."""
    from flows.renewal import renewal
    from flows.scan import scan

    site_ = ov_site(tmp_path, name="review", quota=2)
    cid, db_url, runtime, clock = site_.cid, site_.db_url, site_.svc, site_.clock
    now = clock()
    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "inline")
    resumer = Resumer({"name": "Hanako Ops", "email": "ops@example.test", "phone": "+81 3 1234 5678"})
    resumer.start()
    with rt.use(runtime):
        started = time.monotonic()
        out = renewal(cid, years=1)
        elapsed = time.monotonic() - started
        resumer.join(5)
        with session_scope(db_url) as s:
            new = Repository(s).children(cid)[0]
            assert new.state is Status.UNDER_REVIEW and out.state is Status.UNDER_REVIEW
            assert new.owner.phone == "+81 3 1234 5678"  # DV-6: the contact the CA will call
        assert elapsed < 30, "the run must end, not wait out the review"
        clock.now = now + timedelta(days=1)
        scan()
        with session_scope(db_url) as s:
            assert Repository(s).certificate_model(new.id).state is Status.UNDER_REVIEW
        clock.now = now + timedelta(days=5, minutes=1)
        out = scan()
    assert out.issued == 1
    with session_scope(db_url) as s:
        assert Repository(s).certificate_model(new.id).state is Status.ISSUED
    reset_engines()


def test_ca3_plan_requests_start_early_so_validities_overlap():
    """CA-3: each next certificate of a plan is requested at the managed-start threshold, so the
    old and the new validity overlap by at least that much and the site never goes without one."""
    from certpilot.config import load_policy, load_schedule
    from certpilot.core.models import OrderKind
    from certpilot.core.plans import plan_order

    policy, schedule = load_policy(), load_schedule()
    now = datetime(2025, 9, 10, tzinfo=UTC)
    plan = plan_order(OrderKind.RENEWAL, years=3, now=now, policy=policy, schedule=schedule,
                      old_not_after=datetime(2025, 9, 30, tzinfo=UTC))
    windows = [(c.not_before, c.not_after) for c in plan.certificates]
    assert windows[0][0] < datetime(2025, 9, 30, tzinfo=UTC)  # the first overlaps the old one
    for (_, prev_end), (next_start, _) in zip(windows, windows[1:], strict=False):
        assert prev_end - next_start >= timedelta(days=policy.managed_start_days[OrderKind.RENEWAL])


def _rejected_by_ca(tmp_path, name: str):
    """An official DV certificate `name` due in 20 days, one quota, and services whose private CA
    rejects `name` at review (CA-2); returns (certificate id, database URL, services, notifier)."""
    from tests.flows.pipeline_env import CollectingNotifier

    db_url = f"sqlite:///{tmp_path / (name + '.db')}"
    ensure_schema(db_url)
    now = datetime.now(UTC)
    leaf = make_leaf(make_ca(f"{name} CA"), [name], not_before=now - timedelta(days=345),
                     not_after=now + timedelta(days=20))
    vault = KeyVault(LocalMasterKey(os.urandom(32)))
    with session_scope(db_url) as s:
        cid = import_certificate(s, cert_pem=leaf.cert_pem, key_pem=leaf.key_pem, chain_pem=b"".join(leaf.chain_pems),
                                 origin=Origin.OFFICIAL, level=Level.DV, brand="DigiCert", owner="ops@example.test",
                                 now=now, vault=vault).certificate.id
        orders.add_quota(s, Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE), 1, now=now)
    ca = PrivateCa(SqlPrivateCaStore(partial(session_scope, db_url)), vault, clock=lambda: datetime.now(UTC),
                   policy=PrivateCaPolicy(review_rejects=(name,)))
    notifier = CollectingNotifier()
    return cid, db_url, rt.local_services(database_url=db_url, vault=vault, issuers={"ca": ca},
                                          notifiers=[notifier]), notifier


def test_ca2_nt2_rejection_told_to_owner_ends_the_run_failed_then_resubmitted(tmp_path, prefect_harness):
    """CA-2: the CA rejects the application → REJECTED, the owner is told why (NT-2) and the
    renewal run ends Failed; after the fix, running the renewal again finds the same order and
    resubmits (REJECTED → PENDING_APPLICATION, new CSR and CA order): the certificate is issued."""
    from flows.renewal import renewal

    cid, db_url, runtime, notifier = _rejected_by_ca(tmp_path, "rj.example.test")
    ca = runtime.issuers["ca"]
    with rt.use(runtime):
        first = renewal(cid, years=1, return_state=True)
        with session_scope(db_url) as s:
            new = sorted(Repository(s).children(cid), key=lambda c: c.plan_index)[0]
        assert first.is_failed() and new.state is Status.REJECTED
        assert f"the CA rejected the application of rj.example.test ({new.id})" in first.message
        rejected = "certpilot: the CA rejected rj.example.test"
        assert _told(notifier) == [rejected]  # once, though `submit` and the review poll both saw it
        ca.policy = PrivateCaPolicy()  # the owner fixed what the CA objected to
        again = renewal(cid, years=1)
        assert (again.worked_on, again.state) == (new.id, Status.ISSUED)
    assert _told(notifier) == [rejected]
    with session_scope(db_url) as s:
        trail = [a.to_state for a in Repository(s).audit(new.id) if a.to_state]
        assert len(Repository(s).orders_for_certificate(cid)) == 1
    assert trail == ["pending_application", "under_review", "rejected", "pending_application", "under_review",
                     "issued"]  # LC-5's path through a rejection and a resubmission
    reset_engines()


def _told(notifier) -> list[str]:
    """The subjects of the action-needed notices the owner got, in order."""
    from certpilot.adapters.notify.base import EventKind

    return [e.subject for e in notifier.events if e.kind is EventKind.ACTION_NEEDED]


def test_ca2_nt2_each_rejection_told_once_whichever_path_saw_it(tmp_path, prefect_harness, monkeypatch):
    """CA-2/NT-2: the owner hears of each rejection exactly once, through the one CA-rejected
    notice: the first seen by the validation stage's submission, the second (after a
    resubmission) by the ca-review stage's poll; each run ends Failed; the scanner afterwards
    tells neither again."""
    from flows.renewal import renewal
    from flows.scan import scan

    cid, db_url, runtime, notifier = _rejected_by_ca(tmp_path, "rj2.example.test")
    ca = runtime.issuers["ca"]
    runtime.poll_seconds = 10
    rejected = "certpilot: the CA rejected rj2.example.test"
    with rt.use(runtime):
        assert renewal(cid, years=1, return_state=True).is_failed()  # rejected at submission
        with session_scope(db_url) as s:
            new = sorted(Repository(s).children(cid), key=lambda c: c.plan_index)[0]
        assert _told(notifier) == [rejected]
        # Resubmitted, and the CA's review (half a second: the ca-review stage polls it) rejects it again.
        ca.policy = PrivateCaPolicy(review_rejects=("rj2.example.test",), review_delay=timedelta(seconds=0.5))
        assert renewal(new.id, return_state=True).is_failed()
        assert _told(notifier) == [rejected, rejected]  # a new rejection: told again
        monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "inline")
        scan()  # nothing under review: the scanner tells nothing again
        assert _told(notifier) == [rejected, rejected]
    with session_scope(db_url) as s:
        trail = [a.to_state for a in Repository(s).audit(new.id) if a.to_state]
        kept = sorted(th for c, th in notices_sent(s, CA_REJECTED) if c == new.id)
    assert trail == ["pending_application", "under_review", "rejected", "pending_application", "under_review",
                     "rejected"]
    assert kept == [1, 2]  # one notice recorded per rejection, keyed by its ordinal
    reset_engines()
