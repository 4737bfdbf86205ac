"""Stage 1 (LC-3): eligibility, order, payment from quota; a shortfall waits for the payment form."""

from __future__ import annotations

from prefect import flow
from prefect.flow_runs import pause_flow_run

from certpilot.core.models import OrderState
from flows.forms import PaymentApproval
from flows.launch import launch
from tasks import pipeline as t


@flow(name="renew", log_prints=True)
def renew(certificate_id: str, years: int = 1, csr_mode: str = "system", at: str | None = None,
          apply_now: bool = True, launch_mode: str = "auto") -> dict:
    """Renew a certificate: order and pay (PAY-1), then start its application unless a managed
    start (PAY-2) will. Re-entrant: a rerun finds the same order and never pays twice.

    Args:
        certificate_id: the certificate to renew (private-CA ones are reissued, EL-4).
        years: 1, 2 or 3 (PL-1, PL-2).
        csr_mode: system | reuse (CSR-1, CSR-3); a manual CSR goes through the CLI.
        at: ISO 8601 instant to decide at (default now).
        apply_now: start stage 2 for the first certificate when it is due now.
        launch_mode: how `apply` is started (auto, deployment, inline, none).
    """
    placed = t.place_renewal(certificate_id, years, csr_mode, at)
    if placed["state"] == OrderState.AWAITING_PAYMENT:
        t.notify_human_step(certificate_id, "payment approval", placed.get("message", ""))
        answer = pause_flow_run(
            wait_for_input=PaymentApproval.with_initial_data(
                description=f"**Payment needed** for order `{placed['order_id']}`: {placed.get('message', '')}",
                approve=False),
            timeout=7 * 24 * 3600, poll_interval=2)
        placed = t.pay_order(placed["order_id"], answer.approve, f"ui:{answer.approver}")
        if placed["state"] != OrderState.PAID:
            return placed
    first = placed["certificate_ids"][0] if placed["certificate_ids"] else None
    if apply_now and first and placed["submit_first_now"]:  # PL-1 / PAY-2, decided in core
        placed["apply"] = launch("apply", {"certificate_id": first, "csr_mode": csr_mode},
                                 key=f"apply-{first}", mode=launch_mode)
    return placed
