"""Prefect events: what happened to a certificate, for automations to react to.

Event names are `certpilot.certificate.<what>` (issued, renewed, expiring, deploy-failed,
rolled-back, drift, endpoint-problem, human-step), the resource is the certificate
(`certpilot.certificate.<id>`, its common name as `prefect.resource.name`) and the payload holds
plain facts (ids, names, fingerprints, days, the diagnosis sentence) — never key material (the
notification events they are made from refuse it already).

`PrefectEvents.emit` calls `prefect.events.emit_event`, which sends nothing when no Prefect API is
configured (a CLI without a server) and never raises for a server that does not answer: an event
is a view of what the store already recorded, not the record.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

PREFIX = "certpilot.certificate."

# NotificationEvent kinds (adapters.notify.base.EventKind values) -> event suffix.
KIND_EVENTS = {
    "deployment_failed": "deploy-failed",
    "verification_failed": "rolled-back",
    "expiring": "expiring",
    "action_needed": "human-step",
    "drift": "drift",
    "endpoint_problem": "endpoint-problem",
}


@runtime_checkable
class EventSink(Protocol):
    """Where certificate events go (Prefect's event stream; a list in unit tests)."""

    def emit(self, what: str, *, certificate_id: str, common_name: str, payload: dict[str, Any]) -> None:
        """Emit `certpilot.certificate.<what>` about one certificate; never raises."""
        ...


def resource(certificate_id: str, common_name: str) -> dict[str, str]:
    """The Prefect resource of a certificate."""
    return {"prefect.resource.id": f"certpilot.certificate.{certificate_id}",
            "prefect.resource.name": common_name, "certpilot.common-name": common_name}


class PrefectEvents:
    """Emits certificate events to the Prefect API the process is configured for."""

    def emit(self, what: str, *, certificate_id: str, common_name: str, payload: dict[str, Any]) -> None:
        """See `EventSink.emit`."""
        try:
            from prefect.events import emit_event

            emit_event(event=PREFIX + what, resource=resource(certificate_id, common_name),
                       payload={k: v for k, v in payload.items() if v is not None})
        except Exception as exc:  # noqa: BLE001 - an event is a view, never the record
            log.warning("event %s%s for %s not emitted: %s", PREFIX, what, certificate_id, exc)


def emit_notification(sink: EventSink | None, event: Any) -> None:
    """The event of a notification (`NotificationEvent`): its kind named as in `KIND_EVENTS`."""
    if sink is None:
        return
    what = KIND_EVENTS.get(getattr(event.kind, "value", str(event.kind)), str(event.kind))
    sink.emit(what, certificate_id=event.certificate_id, common_name=event.common_name,
              payload={"subject": event.subject, "target": event.target, "diagnosis": event.diagnosis,
                       "fingerprint": event.fingerprint, "occurred_at": event.occurred_at.isoformat()})
