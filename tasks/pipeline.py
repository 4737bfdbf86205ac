"""Tasks of the renewal pipeline (LC-3), one per stage of the design card: payment, csr,
validation, ca-review, deploy (one task run per target), verify; and the steps around them
(where a run starts, the answers of the human steps, the emergency order, the admin doors).

Each is one call into a use case of `certpilot.operations` through the process's `Services`;
each takes IDs and plain values and returns the use case's typed outcome
(`certpilot.core.outcomes`), never key material. The stage tasks name their task runs after the
stage, so the operator reads a renewal run as its stages.
"""

from __future__ import annotations

from prefect.concurrency.sync import concurrency

from certpilot import runtime as rt
from certpilot.core.deployment import DeploymentOutcome
from certpilot.core.errors import CertpilotError
from certpilot.core.models import Contact, Level
from certpilot.core.outcomes import (
    ApplicationStatus,
    DnsRecord,
    EmergencyPlaced,
    RenewalEntry,
    RenewalStep,
    ReviewOutcome,
    SubmitOutcome,
    VerifyOutcome,
)
from certpilot.operations import deployments, emergency, importing, inventory, orders, pipeline
from tasks.common import certpilot_task, retrying

CA_LIMIT = pipeline.CA_LIMIT
"""Prefect global concurrency limit on calls to a remote CA (ACME rate limits are per account)."""
DNS_LIMIT = pipeline.DNS_LIMIT
"""Prefect global concurrency limit on DNS API writes (Route 53 throttles at 5 requests/s)."""
API_LIMITS = pipeline.API_LIMITS
"""Default slots, created by `certpilot setup`/`certpilot up` (`prefect gcl create NAME --limit N`
elsewhere); a limit that does not exist does not block (strict=False)."""


def api_slots(names: tuple[str, ...]):
    """Prefect's global concurrency around a call to a remote API: one slot of each limit named
    (`operations.pipeline.api_limits` decides which, none for the embedded private CA)."""
    return concurrency(list(names), occupy=1, strict=False)


def _run_key(what: str) -> str | None:
    """An idempotency key for this flow run: a retry of the run (same id) finds what it made."""
    from prefect.runtime import flow_run

    return f"{what}:{flow_run.id}" if flow_run.id else None


def run_name(certificate_id: str) -> str:
    """The name of a renewal run: the certificate's common name (one short read; not a task, it
    is asked by the engine before the run starts).

    Returns:
        The common name, or the certificate id when certpilot refuses to read it (no such
        certificate, no config block): the name is for the operator's eye only, and the run's
        first task fails saying what is wrong.
    """
    try:
        return pipeline.common_name(rt.services(), certificate_id)
    except CertpilotError:
        return certificate_id


# ---------------------------------------------------------------- where a run starts
# Plain calls, not tasks: each is one short transaction whose task run (its states and events
# on the orchestration server) would cost more than the step itself; the operator reads the run
# as its six stages.


def _this_run() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or "")


def start(certificate_id: str) -> RenewalEntry:
    """Where a renewal run starts for this certificate (payment, application or deployment),
    the run's claim on it recorded (the scanner tells a live run from a dead one).

    Raises:
        NotFoundError: no such certificate.
        BadInputError: called outside a flow run (no run to record).
    """
    return retrying(lambda: pipeline.start(rt.services(), certificate_id, _this_run()))


def claim(certificate_id: str) -> None:
    """Record that this flow run now works on `certificate_id` (the order's new certificate)."""
    retrying(lambda: pipeline.claim(rt.services(), certificate_id, _this_run()))


def deploy_plan(certificate_id: str) -> tuple[str, ...]:
    """DEP-1/DEP-2: the managed deployment tasks, one per target the old certificate had."""
    return retrying(lambda: deployments.plan(rt.services(), certificate_id))


# ---------------------------------------------------------------- payment


@certpilot_task(name="payment", run_name="payment")
def payment(certificate_id: str, years: int, csr_mode: str = "system", csr_pem: str | None = None) -> RenewalStep:
    """Place (or find again) the renewal order of a certificate; pay it from quota (PAY-1, PAY-4);
    a manual CSR (CSR-2) is checked and kept with the order."""
    return pipeline.renew(rt.services(), certificate_id, years=years, csr_mode=csr_mode, csr_pem=csr_pem)


@certpilot_task(name="payment-answer", run_name="payment-answer")
def payment_answer(order_id: str, approve: bool, actor: str) -> RenewalStep:
    """Approve or decline an order's shortfall (the payment form's answer); exactly once (PAY-4)."""
    return pipeline.pay(rt.services(), order_id, approve=approve, actor=actor)


# ---------------------------------------------------------------- csr, validation, ca-review


@certpilot_task(name="csr", run_name="csr")
def csr(certificate_id: str, csr_mode: str = "system", csr_pem: str | None = None) -> ApplicationStatus:
    """CSR-1..CSR-5 (and CA-2's resubmission): the key goes straight into the vault, or the given CSR
    is checked (CSR-2); only where the application stands comes back."""
    return pipeline.prepare(rt.services(), certificate_id, csr_mode, csr_pem=csr_pem)


@certpilot_task(name="contact", run_name="contact")
def set_contact(certificate_id: str, name: str, email: str, phone: str) -> Contact:
    """DV-6: record (and audit) the contact the CA verifies an OV/EV application with (the form)."""
    return pipeline.set_contact(rt.services(), certificate_id, name=name, email=email, phone=phone)


@certpilot_task(name="validation", run_name="validation", retries=6)
def validation(certificate_id: str, emergency: bool = False) -> SubmitOutcome:
    """Submit (or resume) the CA application and drive validation; MANUAL_DNS with the exact
    records when a human must add them (DV-3). The remote APIs' slots are taken once around the
    calls to a remote CA and DNS provider, never for the embedded private CA."""
    return pipeline.submit(rt.services(), certificate_id, emergency=emergency, gate=api_slots)


@certpilot_task(name="file-served", run_name="file-served")
def file_served(certificate_id: str) -> int:
    """DV-3: after the file-placement form, the files are served over HTTP (checked as the CA will)
    and the CA is told; a refusal names the URLs still missing."""
    return pipeline.wait_files_served(rt.services(), certificate_id)


@certpilot_task(name="dns-visible", run_name="dns-visible")
def dns_visible(records: tuple[DnsRecord, ...]) -> float:
    """DV-3/DV-7: after the manual-DNS form, wait for each record at the authoritative servers."""
    return pipeline.wait_records_visible(rt.services(), records)


@certpilot_task(name="ca-review", run_name="ca-review")
def ca_review(certificate_id: str) -> ReviewOutcome:
    """CA-2: follow the CA's review for the services' poll budget; a remote CA's API slot is taken
    once per burst of polls and never held across a long wait (none for the embedded private CA)."""
    return pipeline.wait_review(rt.services(), certificate_id, gate=api_slots)


# ---------------------------------------------------------------- deploy and verify


@certpilot_task(name="deploy", run_name="deploy", retries=2)
def deploy(task_id: str) -> DeploymentOutcome:
    """Stage → check → swap → reload → verify → finalize, or roll back and tell the owner
    (DEP-3, DEP-5..DEP-7, VER-1)."""
    return deployments.run_deployment(rt.services(), task_id)


@certpilot_task(name="verify", run_name="verify")
def verify(certificate_id: str) -> VerifyOutcome:
    """VER-1: the final proof that every endpoint the certificate is deployed to serves it."""
    return pipeline.verify(rt.services(), certificate_id)


@certpilot_task
def locate_targets(certificate_id: str) -> tuple[str, ...]:
    """EM-3: where the old certificate is deployed (looked up while issuance runs)."""
    return deployments.locate_targets(rt.services(), certificate_id)


# ---------------------------------------------------------------- emergency, notices, admin


@certpilot_task(name="emergency-order")
def place_emergency(certificate_id: str) -> EmergencyPlaced:
    """EM-1/EM-2: a temporary DV certificate for an expired one, and the follow-up order."""
    return emergency.place(rt.services(), certificate_id)


@certpilot_task(retries=2)
def notify_human_step(certificate_id: str, step: str, detail: str, key: str) -> bool:
    """NT-2: tell the owner a step needs a human (payment, manual DNS, OV/EV contact), once per
    step `key` (True when told now)."""
    return pipeline.notify_human_step(rt.services(), certificate_id, step, detail, key=key)


@certpilot_task
def cancel_certificate(certificate_id: str) -> orders.CancelResult:
    """PL-7: cancel a not-activated certificate; one quota and one credit come back."""
    return orders.cancel(rt.services(), certificate_id, actor="flow:cancel")


@certpilot_task
def renewal_policy(certificate_id: str, auto_renew: bool | None, years: int | None, start_days: int | None,
                   default_start: bool, validation: str | None) -> inventory.RenewalSettings:
    """PL-1/PAY-2/DV-1..DV-4: show or set a certificate's renewal policy (`inventory.set_policy`)."""
    return inventory.set_policy(rt.services(), certificate_id, auto_renew=auto_renew, years=years,
                                start_days=start_days, default_start=default_start, validation_method=validation)


@certpilot_task
def import_pem(cert_pem: str, chain_pem: str | None, key_block: str | None, origin: str, level: str,
               brand: str, owner: str | None) -> importing.ImportResult:
    """UP-3: import a certificate (and chain); its key comes from a Prefect Secret block named by
    `key_block` — never from a flow parameter, which Prefect stores in plain text (CSR-5). Once
    the key is sealed in the vault the Secret block is deleted: the key lives in one place only."""
    from prefect.blocks.system import Secret

    key_pem = Secret.load(key_block).get().encode() if key_block else None
    result = importing.import_bundle(rt.services(), cert_pem=cert_pem, key_pem=key_pem, chain_pem=chain_pem,
                                     origin=origin, level=level, brand=brand, owner=owner, actor="flow:import")
    if key_block:
        Secret.delete(key_block)
    return result


@certpilot_task
def place_purchase(names: list[str], brand: str, level: str, years: int, owner: str | None,
                   approve_payment: bool) -> orders.OrderResult:
    """A new certificate order (VA-3 validity, PAY-1 payment), keyed by this flow run."""
    return orders.buy(rt.services(), names=names, brand=brand, level=Level(level), years=years,
                      owner=importing.parse_owner(owner), approve_payment=approve_payment,
                      idempotency_key=_run_key("purchase"), actor="flow:purchase")
