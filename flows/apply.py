"""Stage 2 (LC-3): key and CSR, domain validation, CA submission and the review wait."""

from __future__ import annotations

import time

from prefect import flow
from prefect.flow_runs import pause_flow_run

from certpilot.core.models import Status
from flows.forms import CaContact, ManualDnsDone
from flows.launch import launch
from tasks import pipeline as t

REVIEW_POLL_FIRST = 0.2


@flow(name="apply", log_prints=True)
def apply(certificate_id: str, csr_mode: str = "system", emergency: bool = False, deploy_after: bool = True,
          poll_seconds: float | None = None, launch_mode: str = "auto") -> dict:
    """Bring a pending certificate to ISSUED and hand it to `deploy`.

    A review of minutes is polled here; a review of days (OV/EV, CA-1) ends the run with the
    certificate UNDER_REVIEW and the scanner resumes it — no worker waits for five days.
    """
    from certpilot import runtime as rt

    status = t.application_status(certificate_id)
    if status["state"] == Status.REJECTED:  # run again by the owner after fixing what the CA asked (CA-2)
        t.resubmit_application(certificate_id)
        status = t.application_status(certificate_id)
    if status["state"] == Status.PENDING_APPLICATION and status["needs_contact"]:  # DV-5/DV-6
        t.notify_human_step(certificate_id, "CA verification contact", "The CA needs a contact (name, email, "
                            "phone) to verify this OV/EV application (DV-6): answer the form in the UI.")
        contact = pause_flow_run(wait_for_input=CaContact.with_initial_data(
            description=f"The CA will verify **{status['common_name']}** ({status['level']}, DV-5): who should it "
                        "contact?", name="", email="", phone=""), timeout=7 * 24 * 3600, poll_interval=2)
        t.set_contact(certificate_id, contact.name, contact.email, contact.phone)
    if status["state"] == Status.PENDING_APPLICATION and status["application"] is None:
        t.create_key_and_csr(certificate_id, csr_mode)
    if status["state"] in (Status.PENDING_APPLICATION, Status.UNDER_REVIEW) and status["application"] != "collected":
        sub = t.submit_application(certificate_id, emergency)
        while sub["status"] == "manual":
            t.notify_human_step(certificate_id, "manual DNS record", "\n".join(sub["instructions"]))
            pause_flow_run(wait_for_input=ManualDnsDone.with_initial_data(
                description="Add at your DNS host, then confirm (DV-3):\n\n" +
                            "\n".join(f"    {r}" for r in sub["records"]), added=True),
                timeout=7 * 24 * 3600, poll_interval=2)
            t.wait_record_visible(sub["records"])
            sub = t.submit_application(certificate_id, emergency)
    state = t.follow_review(certificate_id)["status"]
    budget = rt.services().poll_seconds if poll_seconds is None else poll_seconds
    deadline, delay = time.monotonic() + budget, REVIEW_POLL_FIRST
    while state == Status.UNDER_REVIEW and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 1.5, 15.0)
        state = t.follow_review(certificate_id)["status"]
    if state == Status.REJECTED:  # CA-2/NT-2: the owner fixes the application and runs `apply` again
        why = t.application_status(certificate_id)["last_error"] or "no detail given"
        t.notify_human_step(certificate_id, "a fix after the CA's rejection",
                            f"The CA rejected certificate {certificate_id}: {why}. "
                            "Fix what it asks for, then run the `apply` deployment (certpilot apply ID) again.")
    result = {"certificate_id": certificate_id, "state": state}
    if state == Status.ISSUED and deploy_after:
        result["deploy"] = launch("deploy", {"certificate_id": certificate_id}, key=f"deploy-{certificate_id}",
                                  mode=launch_mode)
    return result
