"""One renewal, one flow run (LC-3): payment → csr → validation → ca-review → deploy → verify.

The run is named after the certificate's common name and records itself on the work it does
(its claim: on the certificate it was started for, and again on the order's new certificate),
so the scanner tells a live run from a dead one. It starts from whatever the database says
(`tasks.pipeline.start`): an active certificate is renewed from its order
and payment; a pending, under-review or rejected one goes straight to its application; an
issued one not yet deployed goes to deployment. Every stage is re-entrant, so a rerun after a
crash, or a suspended run executed again after its form was answered, orders, debits and
deploys exactly once.
"""

from __future__ import annotations

from prefect import flow

from certpilot.core.models import OrderState, Status
from certpilot.core.outcomes import EntryStage, RenewalRun
from certpilot.core.secrets import PemParameter, TextParameter
from flows import stages
from tasks import pipeline as t


def _run_name() -> str:
    """The run's name: the common name of the certificate it renews (the engine asks once the
    run starts; a lookup in one short read)."""
    from prefect.runtime import flow_run

    return t.run_name(str(flow_run.parameters.get("certificate_id", "")))


@flow(name="renewal", log_prints=True, flow_run_name=_run_name)
def renewal(certificate_id: TextParameter, years: int = 1, csr_mode: TextParameter = "plan",
            approve_payment: bool = False, csr_pem: PemParameter | None = None) -> RenewalRun:
    """Renew a certificate end to end, or carry its renewal on from where it stands.

    Args:
        certificate_id: the certificate to renew, or a certificate of a renewal or purchase in
            flight (pending, under review, rejected, issued not yet deployed).
        years: 1, 2 or 3 (PL-1, PL-2), for a renewal order placed by this run.
        csr_mode: plan (default: the mode the certificate's plan was ordered with, CSR-3; system for
            a new order) | system | reuse | manual (CSR-1..CSR-3).
        csr_pem: the CSR (PEM text, public) of a manual application (CSR-2): checked against the
            names and the original's key algorithm, kept with the order, submitted to the CA. The
            system holds no key for it, so it deploys to no managed target.
        approve_payment: the shortfall of the order this run places is approved up front
            (`certpilot renew ID --prefect --approve-payment`): no payment form is asked.

    Returns:
        How the run ended (`RenewalRun`): deployed and verified; a declined payment; the first
        certificate left to its managed start (PAY-2, PL-4); or UNDER_REVIEW, left to the
        scanner (a run that may not suspend).

    Raises:
        PermanentError: the CA rejected the application (CA-2, the owner told), or a deployment
            failed (rolled back, the owner told, DEP-3/DEP-7), or an endpoint does not serve it:
            the run ends Failed.
        RefusedError: a rule refused the renewal (EL, PL, CSR), saying what to do instead.
    """
    entry = t.start(certificate_id)  # plain calls (here and the claim below): the run's task runs are its stages
    order, work = None, certificate_id
    if entry.stage is EntryStage.PAYMENT:
        order = stages.pay(certificate_id, years, csr_mode, approve_payment, csr_pem)
        if order.state is not OrderState.PAID:
            return RenewalRun(certificate_id=certificate_id, order=order,
                              message=f"order {order.order_id} {order.state.value}: nothing was debited (PAY-4)")
        if order.first_to_apply is None:
            return RenewalRun(certificate_id=certificate_id, order=order,
                              message=f"order {order.order_id} paid; its first certificate starts at its managed "
                                      "start (PAY-2, PL-4)")
        work = order.first_to_apply
        t.claim(work)
    state = entry.state if entry.stage is EntryStage.DEPLOYMENT else stages.issue(work, csr_mode, csr_pem=csr_pem)
    if state is not Status.ISSUED:
        return RenewalRun(certificate_id=certificate_id, order=order, worked_on=work, state=state,
                          message=f"{work} is {state.value}: the scanner follows the CA's review (CA-2)")
    deployed = stages.deploy(work)
    verified = stages.verify(work)
    return RenewalRun(certificate_id=certificate_id, order=order, worked_on=work, state=state, deploy=deployed,
                      verify=verified, message=f"{work} issued, deployed to {len(deployed.results)} target(s) and "
                                           f"served at {len(verified.served)} endpoint(s)")
