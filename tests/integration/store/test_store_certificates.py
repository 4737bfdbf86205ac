"""Certificates in the store: lineage (LC-2), audited state changes, LC-5 refusals, scanner rows."""

from __future__ import annotations

import pytest
from helpers_store import NOW, cert, day, order
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from certpilot.core.errors import IllegalTransitionError, NotFoundError, PermanentError
from certpilot.core.models import Status
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository
from certpilot.store.tables import CertificateRow


def test_lc2_certificate_round_trip_with_lineage(store_url):
    """LC-2: renewals are stored under their original, parent -> children, and read back unchanged."""
    original = cert("c-0", fingerprint="ab" * 32)
    first = cert("c-1", state=Status.PENDING_APPLICATION, parent_id="c-0", order_id="o-1", plan_index=1,
                 not_after="2026-09-30")
    second = cert("c-2", state=Status.NOT_ACTIVATED, parent_id="c-0", order_id="o-1", plan_index=2,
                  not_after=None)
    with session_scope(store_url) as s:
        repo = Repository(s)
        repo.add_certificate(original, leaf_pem="LEAF", chain_pem="CHAIN", now=NOW)
        repo.add_order(order("o-1", certificate_id="c-0"), now=NOW)
        repo.add_certificate(second, now=NOW)  # added out of plan order on purpose
        repo.add_certificate(first, now=NOW)

    with session_scope(store_url) as s:
        repo = Repository(s)
        assert repo.certificate_model("c-0") == original
        assert repo.certificate_model("c-1") == first
        assert repo.certificate_model("c-2") == second
        assert [c.id for c in repo.children("c-0")] == ["c-1", "c-2"]
        assert repo.children("c-1") == []
        assert repo.parent("c-2") == original
        assert repo.parent("c-0") is None
        assert repo.find_by_fingerprint("AB:" * 31 + "AB") == original
        assert repo.find_by_fingerprint("cd" * 32) is None
        assert [c.id for c in repo.certificates_for_order("o-1")] == ["c-1", "c-2"]
        row = repo.get_certificate("c-0")
        assert (row.leaf_pem, row.chain_pem) == ("LEAF", "CHAIN")
        assert row.not_after == day("2025-09-30") and row.not_after.tzinfo is not None


def test_lc2_child_of_unknown_parent_is_refused_by_the_database(store_url):
    """LC-2: lineage is a real foreign key; a dangling parent cannot be stored."""
    with pytest.raises(IntegrityError), session_scope(store_url) as s:
        Repository(s).add_certificate(cert("c-x", parent_id="nope"), now=NOW)
    with session_scope(store_url) as s, pytest.raises(NotFoundError):
        Repository(s).get_certificate("c-x")


def test_duplicate_fingerprint_is_refused(store_url):
    with session_scope(store_url) as s:
        Repository(s).add_certificate(cert("c-0", fingerprint="ab" * 32), now=NOW)
    with pytest.raises(IntegrityError), session_scope(store_url) as s:
        Repository(s).add_certificate(cert("c-1", fingerprint="ab" * 32), now=NOW)


def test_lc5_every_state_change_is_audited(store_url):
    """LC-5: each move along the lifecycle writes one audit line (who, when, from, to, why)."""
    with session_scope(store_url) as s:
        Repository(s).add_certificate(cert("c-1", state=Status.NOT_ACTIVATED, not_after=None),
                                      actor="orders", why="order o-1 paid", now=NOW)
    path = [Status.PENDING_APPLICATION, Status.UNDER_REVIEW, Status.ISSUED]
    for i, to in enumerate(path, start=1):
        with session_scope(store_url) as s:
            got = Repository(s).set_state("c-1", to, actor=f"a{i}", why=f"step {i}", now=day(f"2025-09-1{i}"))
            assert got.state is to
    with session_scope(store_url) as s:
        trail = [(a.actor, a.entity_type, a.from_state, a.to_state, a.why, a.at)
                 for a in Repository(s).audit("c-1")]
    assert trail == [
        ("orders", "certificate", None, "not_activated", "order o-1 paid", NOW),
        ("a1", "certificate", "not_activated", "pending_application", "step 1", day("2025-09-11")),
        ("a2", "certificate", "pending_application", "under_review", "step 2", day("2025-09-12")),
        ("a3", "certificate", "under_review", "issued", "step 3", day("2025-09-13")),
    ]


@pytest.mark.parametrize("frm, to", [
    (Status.NOT_ACTIVATED, Status.ISSUED),
    (Status.NOT_ACTIVATED, Status.UNDER_REVIEW),
    (Status.PENDING_APPLICATION, Status.ISSUED),
    (Status.ISSUED, Status.PENDING_APPLICATION),
    (Status.CANCELLED, Status.PENDING_APPLICATION),
    (Status.PENDING_APPLICATION, Status.CANCELLED),
])
def test_lc5_illegal_transition_refused_and_nothing_changed(store_url, frm, to):
    """LC-5: a move off the lifecycle raises IllegalTransitionError; state and audit unchanged."""
    with session_scope(store_url) as s:
        Repository(s).add_certificate(cert("c-1", state=frm), now=NOW)
    with pytest.raises(IllegalTransitionError) as err, session_scope(store_url) as s:
        Repository(s).set_state("c-1", to, actor="t", why="try", now=NOW)
    assert err.value.message  # a sentence for the operator
    with session_scope(store_url) as s:
        repo = Repository(s)
        assert repo.certificate_model("c-1").state is frm
        assert [(a.from_state, a.to_state) for a in repo.audit("c-1")] == [(None, frm.value)]


def test_pl8_state_changed_by_someone_else_is_not_overwritten(store_url):
    """PL-8: set_state is a compare-and-set; a session holding a stale read cannot move it twice."""
    with session_scope(store_url) as s:
        Repository(s).add_certificate(cert("c-1", state=Status.NOT_ACTIVATED, not_after=None), now=NOW)
    with session_scope(store_url) as s:
        repo = Repository(s)
        assert repo.get_certificate("c-1").state == "not_activated"  # read cached in the session
        # Another writer cancels it behind the session's back (a Core UPDATE the identity map
        # does not see; on SQLite a second connection would wait for this one's write lock).
        s.execute(update(CertificateRow).where(CertificateRow.id == "c-1").values(state="cancelled")
                  .execution_options(synchronize_session=False))
        with pytest.raises(IllegalTransitionError):
            repo.set_state("c-1", Status.PENDING_APPLICATION, actor="scanner", why="managed start", now=NOW)
        repo.record_audit("certificate", "c-1", actor="other", why="cancel", now=NOW,
                          from_state="not_activated", to_state="cancelled")
    with session_scope(store_url) as s:
        repo = Repository(s)
        assert repo.certificate_model("c-1").state is Status.CANCELLED
        assert [a.to_state for a in repo.audit("c-1")] == ["not_activated", "cancelled"]


def test_update_certificate_changes_fields_never_the_state(store_url):
    with session_scope(store_url) as s:
        repo = Repository(s)
        repo.add_certificate(cert("c-1", state=Status.UNDER_REVIEW, not_after=None), now=NOW)
        got = repo.update_certificate("c-1", not_before=day("2025-09-10"), not_after=day("2026-09-30"),
                                      serial="ff01", fingerprint_sha256="cd" * 32, now=NOW)
        assert (got.not_after, got.serial, got.fingerprint_sha256) == (day("2026-09-30"), "ff01", "cd" * 32)
        with pytest.raises(PermanentError):
            repo.update_certificate("c-1", state="issued")
        assert repo.certificate_model("c-1").state is Status.UNDER_REVIEW


def test_status_rows_are_plain_tuples_for_the_scanner(store_url):
    with session_scope(store_url) as s:
        repo = Repository(s)
        repo.add_certificate(cert("c-0", not_after="2025-10-31"), now=NOW)
        repo.add_order(order("o-1", certificate_id="c-0"), now=NOW)
        repo.add_certificate(cert("c-1", state=Status.NOT_ACTIVATED, parent_id="c-0", order_id="o-1",
                                  plan_index=2, not_after=None), now=NOW)
        repo.add_certificate(cert("c-2", state=Status.UPLOADED, not_after="2025-09-20", cn="a.example.test"),
                             now=NOW)
    with session_scope(store_url, readonly=True) as s:
        repo = Repository(s)
        rows = repo.status_rows()
        assert all(type(r) is tuple for r in rows)
        assert rows == [
            ("c-2", "a.example.test", "uploaded", "official", "single", day("2025-09-20"), None, 0, None),
            ("c-0", "www.example.test", "issued", "official", "single", day("2025-10-31"), None, 0, None),
            ("c-1", "www.example.test", "not_activated", "official", "single", None, "o-1", 2, "c-0"),
        ]
        assert [r[0] for r in repo.status_rows(states=[Status.NOT_ACTIVATED])] == ["c-1"]
        assert [r[0] for r in repo.status_rows(not_after_before=day("2025-10-01"))] == ["c-2"]
