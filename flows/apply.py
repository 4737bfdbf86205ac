"""Stage 2 (LC-3): key and CSR, domain validation, CA submission and the review wait."""

from __future__ import annotations

import time

from prefect import flow
from prefect.flow_runs import pause_flow_run

from certpilot.core.models import Status
from certpilot.core.outcomes import ApplicationStatus, ApplyRun, SubmitKind
from certpilot.core.scan import deploy_key
from flows.forms import CaContact, ManualDnsDone
from flows.launch import launch
from tasks import pipeline as t

REVIEW_POLL_FIRST = 0.2
FORM_TIMEOUT = 7 * 24 * 3600
"""How long a form waits for its human (seconds)."""


def _ask_contact(status: ApplicationStatus) -> None:
    """DV-5/DV-6: the CA needs a contact for an OV/EV application; ask for it on a form."""
    t.notify_human_step(status.certificate_id, "CA verification contact", "The CA needs a contact (name, email, "
                        "phone) to verify this OV/EV application (DV-6): answer the form in the UI.")
    contact = pause_flow_run(wait_for_input=CaContact.with_initial_data(
        description=f"The CA will verify **{status.common_name}** ({status.level.value}, DV-5): who should it "
                    "contact?", name="", email="", phone=""), timeout=FORM_TIMEOUT, poll_interval=2)
    t.set_contact(status.certificate_id, contact.name, contact.email, contact.phone)


def _submit(certificate_id: str, emergency: bool) -> None:
    """Submit the application; while a human must add DNS records (DV-3), show them, wait for the
    form, check they are served (DV-7) and submit again."""
    sub = t.submit_application(certificate_id, emergency)
    while sub.kind is SubmitKind.MANUAL_DNS:
        t.notify_human_step(certificate_id, "manual DNS record", "\n".join(r.instruction for r in sub.records))
        pause_flow_run(wait_for_input=ManualDnsDone.with_initial_data(
            description="Add at your DNS host, then confirm (DV-3):\n\n" +
                        "\n".join(f"    {r.zone_line}" for r in sub.records), added=True),
            timeout=FORM_TIMEOUT, poll_interval=2)
        t.wait_record_visible(sub.records)
        sub = t.submit_application(certificate_id, emergency)


def _wait_review(certificate_id: str, budget: float) -> Status:
    """A review of minutes is polled here, for `budget` seconds; a longer one is the scanner's (CA-2)."""
    state = t.follow_review(certificate_id).state
    deadline, delay = time.monotonic() + budget, REVIEW_POLL_FIRST
    while state is Status.UNDER_REVIEW and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 1.5, 15.0)
        state = t.follow_review(certificate_id).state
    return state


@flow(name="apply", log_prints=True)
def apply(certificate_id: str, csr_mode: str = "system", emergency: bool = False, deploy_after: bool = True,
          poll_seconds: float | None = None, launch_mode: str = "auto") -> ApplyRun:
    """Bring a pending certificate to ISSUED and hand it to `deploy`.

    A review of minutes is polled here; a review of days (OV/EV, CA-1) ends the run with the
    certificate UNDER_REVIEW and the scanner resumes it — no worker waits for five days.
    """
    from certpilot import runtime as rt

    status = t.application_status(certificate_id)
    if status.state is Status.REJECTED:  # run again by the owner after fixing what the CA asked (CA-2)
        status = t.resubmit_application(certificate_id)
    if status.asks_contact:  # DV-5/DV-6
        _ask_contact(status)
    if status.needs_key:
        t.create_key_and_csr(certificate_id, csr_mode)
    if status.needs_submission:
        _submit(certificate_id, emergency)
    # REJECTED: the owner was told (CA-2/NT-2) where the rejection was recorded, in `submit` or in
    # `follow_review`; they fix the application and run `apply` again.
    state = _wait_review(certificate_id, rt.services().poll_seconds if poll_seconds is None else poll_seconds)
    deploy_run = None
    if state is Status.ISSUED and deploy_after:
        deploy_run = launch("deploy", {"certificate_id": certificate_id}, key=deploy_key(certificate_id),
                            mode=launch_mode)
    return ApplyRun(certificate_id=certificate_id, state=state, deploy_run=deploy_run)
