"""The renewal run's claim on its certificate's work (the scanner tells live runs from dead ones)."""

from __future__ import annotations

from certpilot import runtime as rt
from certpilot.core.runs import WorkClaim
from certpilot.operations import runs as ops
from tasks.common import certpilot_task


@certpilot_task(name="claim-work")
def claim_work(certificate_id: str) -> None:
    """Record that the current flow run works on `certificate_id` (the latest claim wins; a
    retry or a second call by the same run only moves the claim's time).

    Args:
        certificate_id: the certificate this run now works on.

    Raises:
        BadInputError: called outside a flow run (no flow run id to record).
    """
    from prefect.runtime import flow_run

    ops.claim(rt.services(), certificate_id, str(flow_run.id or ""))


@certpilot_task(name="read-claims")
def read_claims(certificate_ids: list[str]) -> dict[str, WorkClaim]:
    """The claims of these certificates, by certificate id (never-claimed ones are absent)."""
    return ops.claims(rt.services(), certificate_ids)
