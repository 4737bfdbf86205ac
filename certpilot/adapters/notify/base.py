"""Notifications: one event type, one small Protocol, and delivery to every channel.

An event names a certificate by ID, common name and fingerprint, and a target by what an
operator calls it — never key material (CSR-5): building an event that holds a PEM private key
fails, so a careless caller cannot mail one out. Events are built in one place,
`certpilot.operations.notices` (one subject style, the owner's address included).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger(__name__)

_KEY_MARKERS = ("PRIVATE KEY-----", "BEGIN OPENSSH PRIVATE", "BEGIN ENCRYPTED PRIVATE")


class EventKind(StrEnum):
    """What a notification is about."""

    DEPLOYMENT_FAILED = "deployment_failed"
    """A deployment or its verification failed (DEP-3)."""
    VERIFICATION_FAILED = "verification_failed"
    """The new certificate is deployed but not served (VER-1/VER-2)."""
    EXPIRING = "expiring"
    """A certificate is about to expire (NT-1)."""
    ACTION_NEEDED = "action_needed"
    """A step waits for a human (NT-2)."""
    DRIFT = "drift"
    """An endpoint serves another certificate than the inventory's (fleet probe)."""
    ENDPOINT_PROBLEM = "endpoint_problem"
    """An endpoint serves a chain that does not verify, or a certificate about to expire (fleet probe)."""
    ISSUER_FALLBACK = "issuer_fallback"
    """A certificate's issuer could not take its order; a fallback issuer did (issue 13)."""
    REVOKED = "revoked"
    """A certificate was revoked at its CA (`certpilot revoke`)."""


class NotificationEvent(BaseModel):
    """One notification, ready to send by any channel. Holds no key material."""

    model_config = ConfigDict(frozen=True)

    kind: EventKind
    certificate_id: str
    common_name: str
    target: str | None = None
    diagnosis: str | None = None
    """The diagnosis code and sentence (e.g. "[not_reloaded] nginx at … run `nginx -s reload`")."""
    subject: str
    body: str
    fingerprint: str | None = None
    owner_email: str | None = None
    """The certificate owner's address: email channels add it to their recipients (NT-1, DEP-3)."""
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _no_key_material(self) -> NotificationEvent:
        for name in ("common_name", "target", "diagnosis", "subject", "body"):
            value = getattr(self, name) or ""
            if any(marker in value for marker in _KEY_MARKERS):
                # Say which field, never echo the value.
                raise ValueError(f"notification field {name!r} holds private key material; refused (CSR-5)")
        return self


@runtime_checkable
class Notifier(Protocol):
    """A channel that delivers events (email, webhook, …).

    `send` raises `TransientError` when a retry may succeed (server down, timeout) and
    `PermanentError` when it will not (bad credentials, recipient refused).
    """

    name: str

    def send(self, event: NotificationEvent) -> None:
        """Deliver `event`."""
        ...


def notify_all(notifiers: Iterable[Notifier], event: NotificationEvent) -> dict[str, Exception]:
    """Send `event` through every notifier; one channel failing does not stop the others.

    Returns:
        the failures by notifier name (empty when every channel delivered).
    """
    failures: dict[str, Exception] = {}
    for notifier in notifiers:
        try:
            notifier.send(event)
        except Exception as exc:  # noqa: BLE001 - reported to the caller per channel
            log.warning("notification %s via %s failed: %s", event.kind.value, notifier.name, exc)
            failures[notifier.name] = exc
    return failures
