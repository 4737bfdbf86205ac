"""Use cases of the in-product inbox (DEP-3, NT-1, NT-2): read the messages, mark them read.

The CLI's `certpilot inbox` and the scanner's inbox artifact call these; each owns its
transaction. Messages are written by `Services.notify` (the inbox notifier), not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from certpilot.store import ports
from certpilot.store.ports import Message

if TYPE_CHECKING:
    from certpilot.runtime import Services

__all__ = ["Message", "mark_read", "messages"]


def messages(svc: Services, *, unread_only: bool = True, limit: int = 100) -> list[Message]:
    """The newest messages first.

    Args:
        svc: the services (their store).
        unread_only: only messages not yet marked read (the default).
        limit: at most this many.
    """
    with svc.session(readonly=True) as s:
        return ports.messages(s, unread_only=unread_only, limit=limit)


def mark_read(svc: Services, ids: list[int]) -> int:
    """Mark the messages `ids` read; returns how many changed (already read or unknown ids do not count)."""
    if not ids:
        return 0
    with svc.session() as s:
        return ports.mark_read(s, list(ids))
