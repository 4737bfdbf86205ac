"""The in-product message channel (DEP-3's "in-product message", NT-1, NT-2).

Every notice certpilot sends also lands in the store's inbox, whatever other channels are
configured: `certpilot inbox` lists it and the scanner publishes it as a Prefect artifact, so an
operator sees failed deployments and pending human steps in the product itself.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from certpilot.adapters.notify.base import NotificationEvent
from certpilot.store.tables_pipeline import MessageRow


@dataclass(frozen=True)
class Message:
    """One inbox message."""

    id: int
    at: datetime
    kind: str
    certificate_id: str
    common_name: str
    subject: str
    body: str
    read: bool


class InboxNotifier:
    """A Notifier that stores each event as an unread in-product message.

    Args:
        sessions: a factory of transactional sessions (e.g. `runtime.session`); the message is
            committed on its own, so it stays even if the caller's transaction rolls back.
    """

    name = "inbox"

    def __init__(self, sessions: Callable[[], AbstractContextManager[Session]]):
        self._sessions = sessions

    def send(self, event: NotificationEvent) -> None:
        """Store `event` (it carries no key material: NotificationEvent refuses that)."""
        with self._sessions() as s:
            s.add(MessageRow(at=event.occurred_at, kind=event.kind.value, certificate_id=event.certificate_id,
                             common_name=event.common_name, subject=event.subject, body=event.body, read=False))


def messages(session: Session, *, unread_only: bool = True, limit: int = 100) -> list[Message]:
    """The newest messages first (only unread ones by default)."""
    stmt = select(MessageRow).order_by(MessageRow.at.desc(), MessageRow.id.desc()).limit(limit)
    if unread_only:
        stmt = stmt.where(MessageRow.read.is_(False))
    return [Message(r.id, r.at, r.kind, r.certificate_id, r.common_name, r.subject, r.body, r.read)
            for r in session.scalars(stmt)]


def mark_read(session: Session, ids: list[int]) -> int:
    """Mark messages read; returns how many changed."""
    if not ids:
        return 0
    return session.execute(update(MessageRow).where(MessageRow.id.in_(ids), MessageRow.read.is_(False))
                           .values(read=True)).rowcount
