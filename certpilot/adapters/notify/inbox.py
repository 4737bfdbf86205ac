"""The in-product message channel (DEP-3's "in-product message", NT-1, NT-2).

Every notice certpilot sends also lands in the inbox, whatever other channels are configured:
`certpilot inbox` lists it (through `certpilot.operations.inbox`) and the scanner publishes it as
a Prefect artifact, so an operator sees failed deployments and pending human steps in the
product itself. The messages are kept through an `InboxStore` port (the store's `messages`
table: `certpilot.store.ports.SqlInboxStore`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from certpilot.adapters.notify.base import NotificationEvent


class InboxStore(Protocol):
    """Where inbox messages are kept."""

    def add(self, *, at: datetime, kind: str, certificate_id: str, common_name: str, subject: str,
            body: str) -> None:
        """Keep one unread message."""
        ...


class InboxNotifier:
    """A Notifier that stores each event as an unread in-product message.

    Args:
        store: where the message is kept; its transaction decides whether the message stays
            when the caller's work rolls back (its own transaction: it stays; the caller's
            transaction: it goes with it).
    """

    name = "inbox"

    def __init__(self, store: InboxStore):
        self._store = store

    def send(self, event: NotificationEvent) -> None:
        """Store `event` (it carries no key material: NotificationEvent refuses that)."""
        self._store.add(at=event.occurred_at, kind=event.kind.value, certificate_id=event.certificate_id,
                        common_name=event.common_name, subject=event.subject, body=event.body)
