"""Stage 1 (LC-3): eligibility, order, payment from quota; a shortfall waits for the payment form."""

from __future__ import annotations

from prefect import flow
from prefect.flow_runs import pause_flow_run

from certpilot.core.models import OrderState
from certpilot.core.outcomes import RenewalStep
from certpilot.core.scan import apply_key
from flows.forms import PaymentApproval
from flows.launch import launch
from tasks import pipeline as t


@flow(name="renew", log_prints=True)
def renew(certificate_id: str, years: int = 1, csr_mode: str = "system", at: str | None = None,
          apply_now: bool = True, launch_mode: str = "auto") -> RenewalStep:
    """Renew a certificate: order and pay (PAY-1), then start its application unless a managed
    start (PAY-2) will. Re-entrant: a rerun finds the same order and never pays twice.

    Args:
        certificate_id: the certificate to renew (private-CA ones are reissued, EL-4).
        years: 1, 2 or 3 (PL-1, PL-2).
        csr_mode: system | reuse (CSR-1, CSR-3); a manual CSR goes through the CLI.
        at: ISO 8601 instant to decide at (default now).
        apply_now: start stage 2 for the first certificate when it is due now.
        launch_mode: how `apply` is started (auto, deployment, inline, none).

    Returns:
        The order's step: PAID (with the `apply` run started, if any), DECLINED, or as placed.
    """
    step = t.place_renewal(certificate_id, years, csr_mode, at)
    if step.awaiting_payment:
        t.notify_human_step(certificate_id, "payment approval", step.message)
        answer = pause_flow_run(
            wait_for_input=PaymentApproval.with_initial_data(
                description=f"**Payment needed** for order `{step.order_id}`: {step.message}", approve=False),
            timeout=7 * 24 * 3600, poll_interval=2)
        step = t.pay_order(step.order_id, answer.approve, f"ui:{answer.approver}")
        if step.state is not OrderState.PAID:
            return step
    first = step.first_to_apply  # PL-1 / PAY-2, decided in core
    if apply_now and first:
        run = launch("apply", {"certificate_id": first, "csr_mode": csr_mode}, key=apply_key(first), mode=launch_mode)
        step = step.model_copy(update={"apply_run": run})
    return step
