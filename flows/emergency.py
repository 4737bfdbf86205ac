"""EM-1..EM-3: a site down with an expired certificate, restored with a temporary DV one."""

from __future__ import annotations

from prefect import flow

from certpilot.core.models import Status
from certpilot.core.outcomes import EmergencyRun
from flows.apply import apply
from flows.deploy import deploy
from tasks import pipeline as t


@flow(name="emergency", log_prints=True)
def emergency(certificate_id: str) -> EmergencyRun:
    """Buy a DV certificate at once, validate by DNS through the emergency (ACME) issuer, and
    deploy it to every target as soon as it is issued (EM-1); the targets are looked up while
    issuance runs (EM-3); the follow-up order of the original specification is recorded (EM-2)."""
    placed = t.place_emergency(certificate_id)
    targets = t.locate_targets.submit(certificate_id)
    issued = apply(placed.temporary_certificate_id, emergency=True, deploy_after=False)
    where = targets.result()
    print(f"old certificate deployed at: {', '.join(where) or 'no recorded target'}")
    deployed = deploy(placed.temporary_certificate_id) if issued.state is Status.ISSUED else None
    return EmergencyRun(**dict(placed), state=issued.state, targets=where, deploy=deployed)
