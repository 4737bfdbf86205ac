"""The in-product inbox (DEP-3, NT-2): every notice is kept as a message, read and marked read
through `certpilot.operations.inbox`; a notice sent inside a caller's transaction lives or dies
with it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from certpilot import runtime as rt
from certpilot.adapters.notify.base import EventKind, NotificationEvent
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import inbox
from certpilot.store.db import ensure_schema, reset_engines

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Boom(Exception):
    """The caller's work failing after it sent its notice."""


@pytest.fixture
def svc(tmp_path):
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    ensure_schema(url)
    yield rt.local_services(database_url=url, vault=KeyVault(LocalMasterKey(os.urandom(32))), clock=lambda: AT)
    reset_engines()


def event(cert_id: str, minutes: int = 0) -> NotificationEvent:
    return NotificationEvent(kind=EventKind.ACTION_NEEDED, certificate_id=cert_id, common_name=f"{cert_id}.example.test",
                             subject=f"certpilot: {cert_id} needs you", body=f"answer the step of {cert_id}",
                             occurred_at=AT + timedelta(minutes=minutes))


def test_dep3_every_notice_lands_in_the_inbox_and_is_marked_read(svc):
    """DEP-3: a notice is kept as an unread message (newest first); marking it read takes it off
    the unread list, once."""
    assert svc.notify(event("c1")) == {}
    svc.notify(event("c2", minutes=5))
    unread = inbox.messages(svc)
    assert [m.certificate_id for m in unread] == ["c2", "c1"]
    first = unread[1]
    assert (first.kind, first.common_name, first.subject, first.body, first.at, first.read) == (
        "action_needed", "c1.example.test", "certpilot: c1 needs you", "answer the step of c1", AT, False)
    assert inbox.messages(svc, limit=1) == unread[:1]
    assert inbox.mark_read(svc, [first.id]) == 1
    assert inbox.mark_read(svc, [first.id]) == 0  # already read
    assert inbox.mark_read(svc, []) == 0
    assert [m.certificate_id for m in inbox.messages(svc)] == ["c2"]
    everything = inbox.messages(svc, unread_only=False)
    assert [(m.certificate_id, m.read) for m in everything] == [("c2", False), ("c1", True)]


def test_nt2_a_notice_sent_in_the_callers_transaction_goes_with_it(svc):
    """NT-2: a notice written in the caller's transaction is committed with the caller's record
    of it, and rolled back with it (no message for a notice that was never recorded)."""
    with pytest.raises(Boom), svc.session() as s:
        svc.notify(event("lost"), session=s)
        raise Boom
    assert inbox.messages(svc) == []
    with svc.session() as s:
        svc.notify(event("kept"), session=s)
    assert [m.certificate_id for m in inbox.messages(svc)] == ["kept"]
