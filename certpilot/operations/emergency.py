"""EM-1..EM-3: an expired certificate and a site that is down.

`place_emergency` buys a DV certificate at once (an EMERGENCY order, paid from quota or charged
without waiting for a form: the site is down), creates it as a *temporary* child of the expired
certificate, and records the follow-up purchase of the original specification that will replace
it (EM-2). Idempotent: a rerun finds the same order, certificate and follow-up.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from certpilot.core.errors import Reason, Refusal, RefusedError
from certpilot.core.models import (
    Certificate,
    Level,
    Order,
    OrderKind,
    OrderState,
    Policy,
    Spec,
    Status,
    ValidationMethod,
)
from certpilot.core.status import derive_status
from certpilot.operations import orders
from certpilot.operations.common import new_id, require_aware
from certpilot.store.repository import Repository


def place_emergency(session: Session, cert_id: str, *, now: datetime, policy: Policy, schedule=None,
                    actor: str = "cli") -> dict:
    """Order the temporary DV replacement of an expired certificate and its follow-up (EM-1, EM-2).

    Returns:
        Plain data: the emergency order id, the temporary certificate id, the follow-up order id
        (or the sentence saying why it waits), and whether this call created them.

    Raises:
        RefusedError: the certificate has not expired (use `renew`), or it is not DNS-validatable.
    """
    now = require_aware(now)
    repo = Repository(session)
    cert = repo.certificate_model(cert_id)
    for child in repo.children(cert_id):
        if child.temporary and child.state not in (Status.CANCELLED, Status.REJECTED):
            return _summary(repo, cert, child, created=False)
    if derive_status(cert, now, policy) is not Status.EXPIRED:
        raise RefusedError(Refusal(
            Reason.NOT_RENEWABLE_STATE,
            f"{cert.common_name} (id {cert.id}) has not expired (valid until {cert.not_after:%Y-%m-%d}); the "
            "emergency procedure is for a site down with an expired certificate — renew it instead "
            f"(`certpilot renew {cert.id}`)", "EM-1"))
    spec = Spec(brand=cert.brand, level=Level.DV, cert_type=cert.cert_type)
    order = repo.add_order(
        Order(id=new_id("ord"), kind=OrderKind.EMERGENCY, certificate_id=cert.id, spec=spec, years=1,
              planned=[], payment=[], state=OrderState.AWAITING_PAYMENT, created_at=now),
        idempotency_key=f"emergency:{cert.id}", actor=actor, now=now,
        why=f"emergency DV replacement of expired {cert.id} (EM-1)")
    orders.pay_at_once(repo, order, certificates=1, managed=0, now=now, policy=policy, actor=actor,
                       why="emergency: paid from quota, any shortfall charged at once (EM-1)")
    temp = Certificate(
        id=new_id("crt"), common_name=cert.common_name, names=list(cert.names), cert_type=cert.cert_type,
        origin=cert.origin, level=Level.DV, brand=cert.brand, key_algorithm=cert.key_algorithm,
        parent_id=cert.id, order_id=order.id, plan_index=0, state=Status.PENDING_APPLICATION,
        validation_method=ValidationMethod.DNS_AUTO, owner=cert.owner, temporary=True,
        publicly_trusted=cert.publicly_trusted)
    repo.add_certificate(temp, actor=actor, now=now,
                         why=f"temporary DV certificate replacing expired {cert.id} (EM-1, EM-2)")
    return _summary(repo, cert, repo.certificate_model(temp.id), created=True,
                    follow_up=_follow_up(session, cert, now=now, policy=policy, schedule=schedule, actor=actor))


def _follow_up(session: Session, cert: Certificate, *, now, policy, schedule, actor) -> dict:
    """EM-2: the purchase of the original specification that will replace the temporary DV."""
    try:
        res = orders.place_purchase(session, names=list(cert.names), brand=cert.brand, level=cert.level, years=1,
                                    now=now, owner=cert.owner, policy=policy, schedule=schedule,
                                    idempotency_key=f"emergency-followup:{cert.id}", actor=actor)
        return {"order_id": res.order.id, "state": res.order.state.value, "message": ""}
    except RefusedError as exc:
        if exc.refusal.reason is not Reason.SHORTFALL_NOT_APPROVED:
            raise
        order = orders.order_by_key(session, f"emergency-followup:{cert.id}")
        return {"order_id": order.id if order else None, "state": "awaiting_payment", "message": exc.refusal.message}


def _summary(repo: Repository, cert: Certificate, temp: Certificate, *, created: bool,
             follow_up: dict | None = None) -> dict:
    return {"certificate_id": cert.id, "temporary_certificate_id": temp.id, "order_id": temp.order_id,
            "created": created, "follow_up": follow_up or {}}
