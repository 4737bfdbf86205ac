"""The stages of a renewal (LC-3), shared by the `renewal` and `emergency` flows.

Plain functions called inside a flow run; each drives the stage's task(s) of `tasks.pipeline`
and asks a human when the stage needs one. Every stage is re-entrant over the database: a run
executed again from the top (a rerun after a crash, a suspended run resumed) skips what is done.

Waits hold no worker. A human step (payment, manual DNS, the CA's contact) tells the owner once
(NT-2, keyed by the step) and suspends the run on its typed form (`suspend_flow_run`): the
process or thread returns, and answering the form in the UI or API schedules the run again, its
runner or worker executes it from the top, and the same step then returns the answer. A long CA
review suspends the run too, until the scanner resumes it once the CA answered. Only a run of a
deployment that is not a subflow may suspend (Prefect's rule); anywhere else (an inline subflow,
a script) a form pauses the run in place (`pause_flow_run`, blocking) and a long review ends the
run with the certificate UNDER_REVIEW for the scanner.
"""

from __future__ import annotations

import hashlib
import re
from typing import TypeVar

from prefect.context import FlowRunContext
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.futures import wait
from prefect.input import RunInput

from certpilot.core.errors import PermanentError
from certpilot.core.models import Status
from certpilot.core.outcomes import (
    DeployRun,
    DnsRecord,
    RenewalStep,
    SubmitKind,
    SubmitOutcome,
    VerifyOutcome,
)
from certpilot.core.runs import REVIEW_PAUSE_PREFIX
from flows.forms import CaContact, ManualDnsDone, ManualFilePlaced, PaymentApproval
from tasks import pipeline as t
from tasks import targets

FORM_TIMEOUT = 7 * 24 * 3600
"""How long a form waits for its human (seconds); then the run fails, and the renewal the next
scan launches asks again (the owner is not told twice: the step's key is the same)."""
REVIEW_TIMEOUT = 30 * 24 * 3600
"""How long a run suspended on a CA review waits for the scanner to resume it (seconds)."""

F = TypeVar("F", bound=RunInput)


def step_key(*parts: object) -> str:
    """A human step's stable key, e.g. ``payment-<order id>``: the notice's key and the run's
    pause key, from which Prefect names the form's stored input (lowercase letters, digits and
    dashes only)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(str(p) for p in parts).lower())


def may_suspend() -> bool:
    """True when the current flow run may suspend: it runs from a deployment (something will
    execute it again once resumed) and is no subflow (Prefect refuses to suspend those)."""
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    return bool(run is not None and run.deployment_id is not None and run.parent_task_run_id is None)


def ask(form: type[F], *, certificate_id: str, step: str, detail: str, key: str, **shown) -> F:
    """A human step: tell the owner once (NT-2), then wait for the form's answer.

    Args:
        form: the typed form (`flows.forms`).
        certificate_id: the certificate the notice names.
        step: what is needed, for the notice's subject ("payment approval").
        detail: what exactly to do, for the notice's body.
        key: the step's stable key: the notice is told once per key, and the run's pause key,
            so the run executed again after the answer gets the answer instead of a new form.
        shown: the form's initial data (its `description` and field defaults).

    Returns:
        The validated answer.
    """
    t.notify_human_step(certificate_id, step, detail, key)
    with_data = form.with_initial_data(**shown)
    if may_suspend():
        return suspend_flow_run(wait_for_input=with_data, key=key, timeout=FORM_TIMEOUT)
    return pause_flow_run(wait_for_input=with_data, key=key, timeout=FORM_TIMEOUT, poll_interval=2)


def pay(certificate_id: str, years: int, csr_mode: str, approve_payment: bool = False,
        csr_pem: str | None = None) -> RenewalStep:
    """The payment stage: the renewal order placed or found again and paid from quota (PAY-1);
    a shortfall waits for the payment form, approved or declined exactly once (PAY-4), unless
    `approve_payment` approved it up front (the operator said so when starting the run).

    Returns:
        The order's step: PAID (its certificates created) or DECLINED (nothing debited).
    """
    step = t.payment(certificate_id, years, csr_mode, csr_pem)
    if step.awaiting_payment and approve_payment:
        return t.payment_answer(step.order_id, True, "run-parameter:approve_payment")
    if step.awaiting_payment:
        answer = ask(PaymentApproval, certificate_id=certificate_id, step="payment approval", detail=step.message,
                     key=step_key("payment", step.order_id), approve=False,
                     description=f"**Payment needed** for order `{step.order_id}`: {step.message}")
        step = t.payment_answer(step.order_id, answer.approve, f"ui:{answer.approver}")
    return step


def issue(certificate_id: str, csr_mode: str = "system", emergency: bool = False,
          csr_pem: str | None = None) -> Status:
    """The csr, validation and ca-review stages: from wherever the application stands to the
    CA's answer.

    Args:
        csr_mode: system | reuse | manual, or "plan": the mode of the certificate's order (CSR-1..CSR-3).
        emergency: submit through the emergency issuer (EM-1).
        csr_pem: the CSR of a manual application (CSR-2); a plan's first certificate uses the one
            kept with its order.

    Returns:
        ISSUED, or UNDER_REVIEW when the review goes on and the run may not suspend (the
        scanner follows it; CA-1: no process waits for days), or the certificate's state when
        the CA asked to wait (Retry-After: the scanner resumes it at its "retry at").

    Raises:
        PermanentError: the CA rejected the application (the owner was told, CA-2): fix it
            and run the renewal again, which resubmits it.
    """
    status = t.csr(certificate_id, csr_mode, csr_pem)
    if status.asks_contact:  # DV-5/DV-6
        contact = ask(CaContact, certificate_id=certificate_id, step="CA verification contact",
                      detail="The CA needs a contact (name, email, phone) to verify this OV/EV application "
                             "(DV-6): answer the form in the UI.",
                      key=step_key("contact", certificate_id, status.attempt), name="", email="", phone="",
                      description=f"The CA will verify **{status.common_name}** ({status.level.value}, DV-5): "
                                  "who should it contact?")
        t.set_contact(certificate_id, contact.name, contact.email, contact.phone)
        status = t.csr(certificate_id, csr_mode, csr_pem)
    if status.needs_submission and validate(certificate_id, emergency).kind is SubmitKind.RETRY_LATER:
        return status.state  # the CA said "not before": the scanner resumes it then, no worker waits
    state = review(certificate_id)
    if state is Status.REJECTED:
        raise PermanentError(f"the CA rejected the application of {status.common_name} ({certificate_id}); the "
                             "owner was told why (CA-2). Fix what the CA asked for and run the renewal of "
                             f"{certificate_id} again: it resubmits the application.")
    return state


def _records_key(certificate_id: str, records: tuple[DnsRecord, ...]) -> str:
    """The manual-DNS step's key: the same records (the same CA order) are asked for once."""
    digest = hashlib.sha256("\n".join(sorted(f"{r.fqdn} {r.value}" for r in records)).encode()).hexdigest()
    return step_key("dns", certificate_id, digest[:16])


def _files_key(certificate_id: str, files) -> str:
    """The file-placement step's key: the same files (the same CA order) are asked for once."""
    digest = hashlib.sha256("\n".join(sorted(f"{f.url} {f.content}" for f in files)).encode()).hexdigest()
    return step_key("file", certificate_id, digest[:16])


def validate(certificate_id: str, emergency: bool = False) -> SubmitOutcome:
    """The validation stage: submit (or resume) the CA application; while a human must add DNS
    records (DV-3), show them on the form, check they are served (DV-7) and submit again."""
    sub = t.validation(certificate_id, emergency)
    if sub.kind is SubmitKind.MANUAL_FILE:  # DV-3 by a person: the file, shown exactly; checked before the CA
        ask(ManualFilePlaced, certificate_id=certificate_id, step="validation file placement",
            detail="\n".join(f.instruction for f in sub.files), key=_files_key(certificate_id, sub.files),
            placed=True, description="Place on your web server, then confirm (DV-3):\n\n"
                                     + "\n".join(f"    {f.url}\n    content: {f.content}" for f in sub.files))
        t.file_served(certificate_id)
        sub = t.validation(certificate_id, emergency)
    while sub.kind is SubmitKind.MANUAL_DNS:
        ask(ManualDnsDone, certificate_id=certificate_id, step="manual DNS record",
            detail="\n".join(r.instruction for r in sub.records), key=_records_key(certificate_id, sub.records),
            added=True, description="Add at your DNS host, then confirm (DV-3):\n\n"
                                    + "\n".join(f"    {r.zone_line}" for r in sub.records))
        t.dns_visible(sub.records)
        sub = t.validation(certificate_id, emergency)
    return sub


def review(certificate_id: str) -> Status:
    """The ca-review stage: a review of minutes is polled (the services' poll budget); a longer
    one suspends the run, keyed by the application's attempt, until the scanner resumes it once
    the CA answered (CA-2). A run that may not suspend, or that was resumed while the CA still
    reviews, ends here with the certificate UNDER_REVIEW: the scanner follows it.

    Returns:
        The certificate's state after the CA's answer (or UNDER_REVIEW, see above).
    """
    out = t.ca_review(certificate_id)
    if out.state is Status.UNDER_REVIEW and may_suspend():
        # Raises Pause (the run is Suspended, this process returns) unless this key fired before.
        # The key's prefix is how the scanner tells a review's suspension from a form's.
        suspend_flow_run(key=REVIEW_PAUSE_PREFIX + step_key(certificate_id, out.attempt), timeout=REVIEW_TIMEOUT)
    return out.state


def deploy(certificate_id: str) -> DeployRun:
    """The deploy stage: one deployment task run per target the old certificate had (DEP-1,
    DEP-2), concurrently; each verifies its target, rolls back on failure (DEP-7) and tells the
    owner (DEP-3). A target on another host is deployed by a `deploy-target` run on that host's
    work queue. Re-entrant: a succeeded deployment is not run again.

    Raises:
        PermanentError: a deployment did not end serving the new certificate (rolled back and
            told), or could not run; the other targets were still deployed.
    """
    # A target that names its host is deployed by a worker of that host's queue (issue 11).
    futures = [t.deploy.submit(task_id) if host is None else targets.deploy_on_host.submit(task_id, host)
               for task_id, host in targets.deploy_routes(certificate_id)]
    wait(futures)
    errors = [str(f.state.message or f.state.name) for f in futures if not f.state.is_completed()]
    run = DeployRun(certificate_id=certificate_id,
                    results=tuple(f.result() for f in futures if f.state.is_completed()))
    failed = [f"{r.target_id}: {r.state.value} ({_why(r.details)})" for r in run.failed] + errors
    if failed:
        raise PermanentError(f"{len(failed)} of {len(futures)} deployment(s) of {certificate_id} failed; the "
                             f"previous certificate stays where it was (DEP-7): {'; '.join(failed)}")
    return run


def _why(details: str) -> str:
    """What a failed deployment's progress lines say happened: its last two lines before the
    final state (the error, then the rollback), without their timestamps."""
    lines = [line.split(" ", 1)[-1] for line in details.strip().splitlines()]
    return "; ".join(lines[-3:-1]) or "no details recorded"


def verify(certificate_id: str) -> VerifyOutcome:
    """The verify stage: every endpoint the certificate is now deployed to serves it (VER-1).

    Raises:
        PermanentError: an endpoint serves something else.
    """
    out = t.verify(certificate_id)
    if not out.ok:
        raise PermanentError(f"{certificate_id} is deployed but not served everywhere: {'; '.join(out.failures)}")
    return out
