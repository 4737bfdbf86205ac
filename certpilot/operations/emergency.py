"""EM-1..EM-3: an expired certificate and a site that is down.

`place` (the Services-level door over `place_emergency`, which works in the caller's transaction)
buys a DV certificate at once (an EMERGENCY order, paid from quota or charged without waiting for
a form: the site is down), creates it as a *temporary* child of the expired certificate, and
records the follow-up purchase of the original specification that will replace it (EM-2).
Idempotent: a rerun finds the same order, certificate and follow-up.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

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
from certpilot.core.outcomes import EmergencyPlaced, FollowUp
from certpilot.core.status import derive_status
from certpilot.operations import notices, orders
from certpilot.operations.common import new_id, require_aware
from certpilot.store.repository import Repository
from certpilot.store.tables_pipeline import RenewalPolicyRow

if TYPE_CHECKING:
    from certpilot.runtime import Services


def place_emergency(session: Session, cert_id: str, *, now: datetime, policy: Policy, schedule=None,
                    actor: str = "cli") -> EmergencyPlaced:
    """Order the temporary DV replacement of an expired certificate and its follow-up (EM-1, EM-2).

    Works in the caller's transaction (never commits).

    Returns:
        The emergency order id, the temporary certificate id, the follow-up order (awaiting
        payment with the sentence saying what to approve, when its shortfall is not approved),
        and whether this call created them.

    Raises:
        RefusedError: the certificate has not expired (use `renew`), or it is not DNS-validatable.
    """
    now = require_aware(now)
    repo = Repository(session)
    cert = repo.certificate_model(cert_id)
    for child in repo.children(cert_id):
        if child.temporary and child.state not in (Status.CANCELLED, Status.REJECTED):
            return _summary(cert, child, created=False)
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
    # EM-2: the temporary certificate is never renewed by itself; its follow-up replaces it.
    session.add(RenewalPolicyRow(certificate_id=temp.id, auto_renew=False, years=1))
    return _summary(cert, repo.certificate_model(temp.id), created=True,
                    follow_up=_follow_up(session, cert, temp.id, now=now, policy=policy, schedule=schedule,
                                         actor=actor))


def _follow_up(session: Session, cert: Certificate, temporary_id: str, *, now, policy, schedule,
               actor) -> FollowUp:
    """EM-2: the purchase of the original specification that replaces the temporary DV certificate.

    It is placed as the temporary certificate's successor (its certificates are the temporary's
    children, LC-2): once paid, its certificate is a pending application the scanner hands to a
    renewal run, which applies for it, deploys it to the targets the temporary certificate serves
    (DEP-1: the parent's) and verifies it. An unapproved shortfall leaves it awaiting payment, said
    in the owner's notice (`place`).
    """
    from certpilot.core.plans import plan_order

    repo = Repository(session)
    plan = plan_order(OrderKind.PURCHASE, years=1, now=now, policy=policy, schedule=schedule or orders._rules(policy, None)[1],
                      publicly_trusted=cert.publicly_trusted)
    order = repo.add_order(
        Order(id=new_id("ord"), kind=OrderKind.PURCHASE, certificate_id=temporary_id,
              spec=Spec(brand=cert.brand, level=cert.level, cert_type=cert.cert_type), years=1,
              managed_services=plan.managed_services, planned=list(plan.certificates), payment=[],
              state=OrderState.AWAITING_PAYMENT, created_at=now, names=list(cert.names), owner=cert.owner,
              coverage_not_after=plan.coverage.not_after),
        idempotency_key=f"emergency-followup:{cert.id}", actor=actor, now=now,
        why=f"EM-2: the {cert.level.value} certificate of the original specification replacing the temporary "
            f"DV certificate {temporary_id}")
    res = orders.settle(repo, order, now=now, policy=policy, actor=actor)
    return FollowUp(order_id=res.order.id, state=res.order.state,
                    message=res.pending.message if res.pending is not None else "")


def _summary(cert: Certificate, temp: Certificate, *, created: bool,
             follow_up: FollowUp | None = None) -> EmergencyPlaced:
    return EmergencyPlaced(certificate_id=cert.id, temporary_certificate_id=temp.id, order_id=temp.order_id,
                           created=created, follow_up=follow_up)


def place(svc: Services, certificate_id: str, *, actor: str = "flow:emergency") -> EmergencyPlaced:
    """EM-1/EM-2: order the temporary DV replacement of an expired certificate, in one transaction.

    Idempotent: a rerun finds the same order, temporary certificate and follow-up.

    Raises:
        RefusedError: the certificate has not expired (renew it instead); nothing written.
        NotFoundError: no such certificate.
    """
    with svc.session() as s:
        placed = place_emergency(s, certificate_id, now=svc.now(), policy=svc.policy, schedule=svc.schedule,
                                 actor=actor)
        if placed.created and placed.follow_up is not None:
            notices.send(svc, _follow_up_notice(s, placed), session=s)
        return placed


def _follow_up_notice(session: Session, placed: EmergencyPlaced):
    """EM-2/NT-2: the owner hears that the temporary certificate will be replaced, by which order, and
    what (if anything) the order waits for."""
    f = placed.follow_up
    waits = (f" It waits for its payment: {f.message}" if f.message else
             " It is paid; its certificate is applied for and deployed in place of the temporary one by the "
             "next scan's renewal run.")
    return notices.human_step(session, placed.temporary_certificate_id,
                              "replacement of the temporary DV certificate (EM-2)",
                              f"The temporary DV certificate {placed.temporary_certificate_id} restores the site of "
                              f"{placed.certificate_id} (EM-1). Order {f.order_id} buys the certificate of the original "
                              f"specification that replaces it (EM-2); the temporary one is not renewed by itself."
                              + waits)
