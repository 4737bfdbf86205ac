"""Tasks of the renewal pipeline (LC-3): order and payment, key and CSR, CA submission and
review, deployment and verification, emergency. Each is one operation in one transaction of
the store, through the process's `Services`; each takes and returns IDs and small summaries.
"""

from __future__ import annotations

from datetime import datetime

from prefect.concurrency.sync import concurrency

from certpilot import runtime as rt
from certpilot.core.errors import Reason, RefusedError
from certpilot.core.models import CsrMode, OrderState, Status
from certpilot.operations.common import parse_instant
from tasks.common import certpilot_task

CA_LIMIT = "certpilot-ca-api"
"""Prefect global concurrency limit on calls to the CAs (ACME rate limits are per account)."""
DNS_LIMIT = "certpilot-dns-api"
"""Prefect global concurrency limit on DNS API writes (Route 53 throttles at 5 requests/s)."""
API_LIMITS = {CA_LIMIT: 4, DNS_LIMIT: 4}
"""Default slots, created by `certpilot up` (`prefect gcl create NAME --limit N` elsewhere);
a limit that does not exist does not block (strict=False)."""


def _run_key(what: str) -> str | None:
    """An idempotency key for this flow run: a retry of the run (same id) finds what it made."""
    from prefect.runtime import flow_run

    return f"{what}:{flow_run.id}" if flow_run.id else None


def _now(at: str | None) -> datetime:
    return parse_instant(at) if at else rt.services().clock()


# ---------------------------------------------------------------- stage 1: order and payment


@certpilot_task
def place_renewal(certificate_id: str, years: int, csr_mode: str = "system", at: str | None = None) -> dict:
    """Place (or find again) the renewal order of a certificate; pay it from quota (PAY-1).

    A private-CA certificate's order is its reissue from the private CA, at no quota (EL-4).
    Returns the order id, its state, the new certificate ids and the shortfall. A rerun finds
    the same order (idempotency key).
    """
    from certpilot.core.payment import shortfall
    from certpilot.core.plans import submits_first_now
    from certpilot.operations import orders
    from certpilot.store.repository import Repository

    run = rt.services()
    now = _now(at)
    with run.session() as s:
        # A rerun finds the same order; after a declined or cancelled one, the next attempt is new.
        closed = sum(1 for o in Repository(s).orders_for_certificate(certificate_id)
                     if o.state in (OrderState.DECLINED, OrderState.CANCELLED))
        key = f"renew:{certificate_id}" + (f"#{closed}" if closed else "")
        try:
            result = orders.place_renewal(s, certificate_id, years=years, now=now, policy=run.policy,
                                          schedule=run.schedule, csr_mode=CsrMode(csr_mode),
                                          idempotency_key=key, actor="flow:renew")
        except RefusedError as exc:
            if exc.refusal.reason is not Reason.SHORTFALL_NOT_APPROVED:
                raise
            order = orders.order_by_key(s, key)
            return {"order_id": order.id, "state": order.state.value, "certificate_ids": [],
                    "shortfall": shortfall(order.payment),
                    "message": exc.refusal.message, "managed_fee": order.managed_fee,
                    "submit_first_now": submits_first_now(order.managed_fee)}
        return {"order_id": result.order.id, "state": result.order.state.value,
                "certificate_ids": [v.id for v in result.certificates], "shortfall": 0,
                "managed_fee": result.order.managed_fee,
                "submit_first_now": submits_first_now(result.order.managed_fee)}


@certpilot_task
def pay_order(order_id: str, approve: bool, actor: str) -> dict:
    """Approve or decline an order's shortfall (the payment form's answer); exactly once (PAY-4)."""
    from certpilot.operations import orders
    from certpilot.store.repository import Repository

    run = rt.services()
    with run.session() as s:
        order = orders.pay_order(s, order_id, approve=approve, now=run.clock(), actor=actor, policy=run.policy)
        ids = [c.id for c in Repository(s).certificates_for_order(order_id)]
    from certpilot.core.plans import submits_first_now

    return {"order_id": order.id, "state": order.state.value, "certificate_ids": ids,
            "submit_first_now": submits_first_now(order.managed_fee)}


# ---------------------------------------------------------------- stage 2: key, CSR, CA


@certpilot_task
def application_status(certificate_id: str) -> dict:
    """Where a certificate stands: lifecycle state, application state, order, key held."""
    from certpilot.core.lifecycle import may_apply
    from certpilot.operations import applications
    from certpilot.store.repository import Repository

    with rt.services().session() as s:
        cert = Repository(s).certificate_model(certificate_id)
        if (refusal := may_apply(cert.state)) is not None:
            raise RefusedError(refusal)
        app = applications.application_state(s, certificate_id) or {}
    return {"state": cert.state.value, "application": app.get("state"), "last_error": app.get("last_error"),
            "origin": cert.origin.value,
            "level": cert.level.value, "key_held": cert.key_held, "common_name": cert.common_name,
            "fingerprint": cert.fingerprint_sha256, "temporary": cert.temporary,
            "needs_contact": applications.contact_refusal(cert.level, cert.owner) is not None}


@certpilot_task
def resubmit_application(certificate_id: str) -> str:
    """CA-2: start a rejected application over (new key, CSR and CA order); returns the state."""
    from certpilot.operations import applications

    run = rt.services()
    with run.session() as s:
        applications.resubmit(s, certificate_id, now=run.clock(), actor="flow:apply")
    return Status.PENDING_APPLICATION.value


@certpilot_task
def create_key_and_csr(certificate_id: str, csr_mode: str = "system") -> dict:
    """CSR-1..CSR-5: the key goes straight into the vault; only its id and fingerprint come back."""
    from certpilot.operations import applications

    run = rt.services()
    with run.session() as s:
        made = applications.create_key_and_csr(s, certificate_id, CsrMode(csr_mode), vault=run.vault,
                                               now=run.clock(), actor="flow:apply")
    return {"key_id": made.key_id, "public_fingerprint": made.public_fingerprint, "key_held": made.key_held,
            "warnings": [w.message for w in made.warnings]}


@certpilot_task(retries=6)
def submit_application(certificate_id: str, emergency: bool = False) -> dict:
    """Submit (or resume) the CA application and drive validation; the order reference is
    recorded before any challenge is answered, so a rerun resumes the same CA order.

    Returns status "manual" with the exact records when a human must add a DNS record (DV-3).
    """
    from certpilot.adapters.dns.manual import ManualActionRequired
    from certpilot.operations import applications
    from certpilot.store.repository import Repository

    run = rt.services()
    with run.session() as s:
        cert = Repository(s).certificate_model(certificate_id)
        issuer = run.issuer_for(cert, emergency=emergency)
        try:
            with concurrency(list(API_LIMITS), occupy=1, strict=False):
                res = applications.submit(s, certificate_id, issuer, now=run.clock(), actor="flow:apply")
        except ManualActionRequired as exc:
            return {"status": "manual", "records": [r.zone_line for r in exc.records],
                    "instructions": [r.instruction for r in exc.records]}
    return {"status": res.status.value, "order_ref": res.order_ref, "detail": res.detail, "resumed": res.resumed}


@certpilot_task
def follow_review(certificate_id: str) -> dict:
    """Poll the CA once for an application under review (CA-2); no process is held."""
    from certpilot.operations import applications
    from certpilot.store.repository import Repository

    run = rt.services()
    with run.session() as s:
        cert = Repository(s).certificate_model(certificate_id)
        if cert.state is not Status.UNDER_REVIEW:
            return {"status": cert.state.value, "detail": ""}
        with concurrency(CA_LIMIT, occupy=1, strict=False):
            res = applications.refresh(s, certificate_id, run.issuer_for(cert, emergency=cert.temporary),
                                       now=run.clock(), actor="flow:apply")
        state = Repository(s).certificate_model(certificate_id).state.value
    return {"status": state, "detail": res.detail}


@certpilot_task
def wait_record_visible(records: list[str], timeout: float = 30.0) -> bool:
    """DV-3/DV-7: after the manual-DNS form, check each record at the authoritative servers."""
    from certpilot.adapters.dns.checks import wait_until_visible

    run = rt.services()
    for line in records:
        fqdn, _ttl, _in, _type, value = line.split(" ", 4)
        fqdn = fqdn.rstrip(".")
        wait_until_visible(fqdn, value.strip('"'), run.authoritative_for(fqdn), timeout)
    return True


# ---------------------------------------------------------------- stage 3: deploy and verify


@certpilot_task
def plan_deployments(certificate_id: str) -> list[str]:
    """DEP-1/DEP-2: one managed deployment task per target the old certificate had."""
    from certpilot.operations import deployments

    with rt.services().session() as s:
        return [t.id for t in deployments.plan_deployments(s, certificate_id)]


@certpilot_task(retries=2)
def run_deployment_task(task_id: str) -> dict:
    """Stage → check → swap → reload → verify → finalize, or roll back (DEP-5..DEP-7, VER-1)."""
    from certpilot.operations import deployments

    run = rt.services()
    with run.session() as s:
        rec = deployments.deploy(s, task_id, run.target_factory, run.key_opener(s), run.verifier,
                                 notifiers=run.all_notifiers, now=run.clock(), clock=run.clock)
    return {"task_id": rec.id, "state": rec.state.value, "details": rec.details, "target_id": rec.target_id}


@certpilot_task
def locate_targets(certificate_id: str) -> list[str]:
    """EM-3: where the old certificate is deployed (looked up while issuance runs)."""
    from certpilot.operations import deployments

    with rt.services().session() as s:
        return [f"{t.kind.value}:{t.name or t.id}" for t in deployments.targets_of(s, certificate_id)]


# ---------------------------------------------------------------- emergency, notices


@certpilot_task
def place_emergency(certificate_id: str) -> dict:
    """EM-1/EM-2: a temporary DV certificate for an expired one, and the follow-up order."""
    from certpilot.operations import emergency

    run = rt.services()
    with run.session() as s:
        out = emergency.place_emergency(s, certificate_id, now=run.clock(), policy=run.policy,
                                        schedule=run.schedule, actor="flow:emergency")
    return out


@certpilot_task(retries=2)
def notify_human_step(certificate_id: str, step: str, detail: str) -> int:
    """NT-2: tell the owner a step needs a human (payment, manual DNS, OV/EV contact)."""
    from certpilot.adapters.notify.base import EventKind, NotificationEvent
    from certpilot.store.repository import Repository

    run = rt.services()
    with run.session() as s:
        cert = Repository(s).certificate_model(certificate_id)
    event = NotificationEvent(kind=EventKind.ACTION_NEEDED, certificate_id=cert.id, common_name=cert.common_name,
                              subject=f"certpilot: {step} needed for {cert.common_name}", body=detail)
    failures = run.notify(event)
    return len(run.notifiers) - len(failures)


@certpilot_task
def set_contact(certificate_id: str, name: str, email: str, phone: str) -> str:
    """DV-6: record the contact the CA verifies an OV/EV application with (from the form)."""
    from certpilot.core.models import Contact
    from certpilot.store.repository import Repository

    run = rt.services()
    with run.session() as s:
        repo = Repository(s)
        repo.update_certificate(certificate_id, now=run.clock(), owner=Contact(name=name, email=email, phone=phone))
        repo.record_audit("certificate", certificate_id, actor="ui", now=run.clock(),
                          why="CA verification contact set (DV-6)")
    return email


@certpilot_task
def cancel_certificate(certificate_id: str) -> dict:
    """PL-7: cancel a not-activated certificate; one quota and one credit come back."""
    from certpilot.operations import orders

    run = rt.services()
    with run.session() as s:
        res = orders.cancel_certificate(s, certificate_id, now=run.clock(), actor="flow:cancel")
    return {"certificate_id": res.certificate.id, "state": res.certificate.state.value,
            "ledger": [e.idempotency_key for e in res.ledger]}


@certpilot_task
def import_pem(cert_pem: str, chain_pem: str | None, key_block: str | None, origin: str, level: str,
               brand: str, owner: str | None) -> dict:
    """UP-3: import a certificate (and chain); its key comes from a Prefect Secret block named by
    `key_block` — never from a flow parameter, which Prefect stores in plain text (CSR-5)."""
    from certpilot.core.models import Level, Origin
    from certpilot.operations.importing import import_certificate

    key_pem = None
    if key_block:
        from prefect.blocks.system import Secret

        key_pem = Secret.load(key_block).get().encode()
    run = rt.services()
    with run.session() as s:
        res = import_certificate(s, cert_pem=cert_pem.encode(), key_pem=key_pem,
                                 chain_pem=chain_pem.encode() if chain_pem else None, origin=Origin(origin),
                                 level=Level(level), brand=brand, owner=owner, now=run.clock(),
                                 actor="flow:import", vault=run.vault)
    return {"certificate_id": res.certificate.id, "common_name": res.certificate.common_name,
            "warnings": [w.message for w in res.warnings]}


@certpilot_task
def place_purchase(names: list[str], brand: str, level: str, years: int, owner: str | None,
                   approve_payment: bool) -> dict:
    """A new certificate order (VA-3 validity, PAY-1 payment)."""
    from certpilot.core.models import Level
    from certpilot.operations import orders
    from certpilot.operations.importing import parse_owner

    run = rt.services()
    with run.session() as s:
        res = orders.place_purchase(s, names=names, brand=brand, level=Level(level), years=years,
                                    now=run.clock(), owner=parse_owner(owner),
                                    policy=run.policy, schedule=run.schedule, approve_payment=approve_payment,
                                    idempotency_key=_run_key("purchase"), actor="flow:purchase")
    return {"order_id": res.order.id, "state": res.order.state.value,
            "certificate_ids": [v.id for v in res.certificates]}
