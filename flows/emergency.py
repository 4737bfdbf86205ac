"""EM-1..EM-3: a site down with an expired certificate, restored with a temporary DV one.

The same stages as a renewal (`flows.stages`), on the temporary certificate: csr, validation
through the emergency (ACME) issuer, ca-review, deploy to every target, verify.
"""

from __future__ import annotations

from prefect import flow

from certpilot.core.models import Status
from certpilot.core.outcomes import EmergencyRun
from certpilot.core.secrets import TextParameter
from flows import stages
from tasks import pipeline as t
from tasks.runs import claim_work


@flow(name="emergency", log_prints=True)
def emergency(certificate_id: TextParameter) -> EmergencyRun:
    """Buy a DV certificate at once, validate it by DNS through the emergency issuer, and deploy
    it to every target as soon as it is issued (EM-1); the targets are looked up while issuance
    runs (EM-3); the follow-up order of the original specification is recorded (EM-2).
    Re-entrant: a rerun finds the same order and temporary certificate.

    Raises:
        PermanentError: the CA rejected it, or a deployment failed (rolled back, the owner
            told): the run ends Failed.
        RefusedError: the certificate has not expired (renew it instead).
    """
    placed = t.place_emergency(certificate_id)
    temporary = placed.temporary_certificate_id
    claim_work(temporary)  # the scanner carries it on if this run dies
    targets = t.locate_targets.submit(certificate_id)
    state = stages.issue(temporary, emergency=True)
    where = targets.result()
    print(f"old certificate deployed at: {', '.join(where) or 'no recorded target'}")
    if state is not Status.ISSUED:
        return EmergencyRun(**dict(placed), state=state, targets=where)
    deployed = stages.deploy(temporary)
    return EmergencyRun(**dict(placed), state=state, targets=where, deploy=deployed, verify=stages.verify(temporary))
