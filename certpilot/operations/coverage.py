"""The coverage term as the contract of a plan (VA-1, VA-2, VA-5, PL-4, PL-6), on issued certificates.

A plan's windows made at order time are expectations; what the customer bought is the coverage
term (`Order.coverage_not_after`). Two session-level steps, called by `operations.applications`
in the transactions that submit and collect an application, keep that promise whatever the CA
actually signs:

- `plan_submission`: when a certificate of a plan is first submitted, its window is computed from
  its predecessor's REAL expiry (`core.plans.successor_window`: VA-1/VA-2, the VA-5 cap at its
  issue date), recorded as its planned window (plan vs issued) and asked of the CA (the embedded
  private CA signs exactly that window). Certificate 1 of a purchase anchors the term at its own
  issue (VA-3: 12 months from its own issue date per year).
- `after_issue`: once the CA signed, when the certificate ends before the term does and the plan
  has no later certificate left, a VA-5 reissue (no quota, no credit) is added, NOT_ACTIVATED, to
  be started by the managed start (PL-4) when this one has T days left; the next certificate's
  expected window is recomputed from the real expiry. When it already covers the term, the later
  not-activated certificates are not needed: they are cancelled and what they cost comes back
  (PL-7's refund).

Both are idempotent: a rerun finds the window recorded, the reissue present, the cancellations done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from certpilot.core.models import (
    Certificate,
    LedgerEntry,
    LedgerKind,
    Order,
    OrderKind,
    PlannedCertificate,
    Policy,
    Status,
)
from certpilot.core.payment import cancel_key
from certpilot.core.plans import PlanVsIssued, cancel_refund, expected_successor, successor_window
from certpilot.core.validity import CabfSchedule, Window, cap_validity, fresh_validity
from certpilot.operations.common import new_id
from certpilot.store.repository import Repository

Rules = tuple[Policy, CabfSchedule]
"""The policy and CA/B schedule a step decides with (`Services.policy`, `Services.schedule`)."""


def coverage_end(order: Order) -> datetime | None:
    """The end of an order's coverage term (VA-5): kept on the order, else (orders placed before it
    was kept) the end of its last planned certificate."""
    if order.coverage_not_after is not None:
        return order.coverage_not_after
    return max((p.not_after for p in order.planned), default=None)


def _predecessor(repo: Repository, cert: Certificate, order: Order) -> datetime | None:
    """The expiry the certificate follows: its plan predecessor's (real once issued, else planned);
    for certificate 1 of a renewal the renewed certificate's; None for certificate 1 of a purchase."""
    if cert.plan_index > 0:
        prev = [c for c in repo.certificates_for_order(order.id) if c.plan_index < cert.plan_index
                and c.state is not Status.CANCELLED]
        return prev[-1].not_after if prev else None
    if order.kind is OrderKind.RENEWAL and cert.parent_id:
        return repo.certificate_model(cert.parent_id).not_after
    return None


def plan_submission(session: Session, certificate_id: str, *, now: datetime, rules: Rules,
                    publicly_trusted: bool) -> Window | None:
    """VA-1/VA-2/VA-5: the window to ask of the CA for a certificate about to be submitted, recorded.

    Args:
        session: the caller's transaction (not committed here).
        certificate_id: the certificate being submitted.
        now: its issue time (whole seconds are kept).
        rules: the policy and CA/B schedule.
        publicly_trusted: whether the issuer that will sign it is publicly trusted (VA-5 cap).

    Returns:
        The planned window (also stored as the certificate's planned and expected window), or None
        for a certificate outside a plan (or a plan already covered): the CA signs its default.
    """
    policy, schedule = rules
    repo = Repository(session)
    cert = repo.certificate_model(certificate_id)
    if cert.order_id is None:
        return None
    order = repo.get_order(cert.order_id)
    end = coverage_end(order)
    if end is None:
        return None
    pred = _predecessor(repo, cert, order)
    if pred is None and cert.plan_index == 0:
        # VA-3: a purchase (an emergency, an uploaded certificate's replacement) runs 12 months
        # from its own issue date per year: the term is anchored at the first issuance.
        window = fresh_validity(now.replace(microsecond=0), policy)
        year = window.not_after - window.not_before
        repo.set_order_plan(order.id, coverage_not_after=window.not_before + year * order.years, now=now)
        window = cap_validity(window, schedule, publicly_trusted)
    elif pred is None:
        return None
    else:
        window = successor_window(pred, now, coverage_end=end, years=order.years, policy=policy,
                                  schedule=schedule, publicly_trusted=publicly_trusted)
        if window is None:
            return None
    repo.update_certificate(certificate_id, now=now, planned_not_before=window.not_before,
                            planned_not_after=window.not_after, not_before=window.not_before,
                            not_after=window.not_after)
    return window


@dataclass(frozen=True)
class AfterIssue:
    """What `after_issue` did for a certificate just issued.

    Attributes:
        comparison: the planned window against the issued one (None outside a plan).
        added: the id of the VA-5 reissue added to complete the term, if any.
        not_needed: the later certificates cancelled because the term is covered (PL-7 refund).
        refunds: the ledger entries that gave back what those cost.
    """

    comparison: PlanVsIssued | None = None
    added: str | None = None
    not_needed: tuple[str, ...] = ()
    refunds: list[LedgerEntry] = field(default_factory=list)


def after_issue(session: Session, certificate_id: str, *, now: datetime, rules: Rules,
                actor: str = "system") -> AfterIssue:
    """VA-5/PL-4: keep the plan's term covered after the CA signed `certificate_id`.

    See the module docstring. Idempotent: a rerun adds no second reissue and cancels nothing twice.
    """
    policy, schedule = rules
    repo = Repository(session)
    cert = repo.certificate_model(certificate_id)
    if cert.order_id is None or cert.not_after is None:
        return AfterIssue()
    order = repo.get_order(cert.order_id)
    end = coverage_end(order)
    comparison = None
    if cert.planned_not_before is not None and cert.planned_not_after is not None and cert.not_before is not None:
        comparison = PlanVsIssued(Window(cert.planned_not_before, cert.planned_not_after),
                                  Window(cert.not_before, cert.not_after))
    if end is None:
        return AfterIssue(comparison)
    siblings = repo.certificates_for_order(order.id)
    later = [c for c in siblings if c.plan_index > cert.plan_index and c.state is not Status.CANCELLED]
    if cert.not_after >= end:
        return _covered(repo, cert, order, later, comparison, now=now, actor=actor)
    expected = expected_successor(cert.not_after, order.kind, coverage_end=end, years=order.years, policy=policy,
                                  schedule=schedule, publicly_trusted=cert.publicly_trusted)
    if expected is None:
        return AfterIssue(comparison)
    if later:
        nxt = later[0]
        if nxt.state is Status.NOT_ACTIVATED:
            repo.update_certificate(nxt.id, now=now, not_before=expected.not_before, not_after=expected.not_after)
        return AfterIssue(comparison)
    added = _add_reissue(repo, cert, order, expected, siblings, now=now, actor=actor)
    return AfterIssue(comparison, added=added)


def cancel_not_needed(session: Session, certificate_id: str, *, now: datetime, actor: str = "system") -> AfterIssue:
    """VA-5/PL-7: when the issued `certificate_id` covers its order's (possibly shortened) term, cancel
    the plan's later not-activated certificates (what they cost comes back); else nothing."""
    repo = Repository(session)
    cert = repo.certificate_model(certificate_id)
    order = repo.get_order(cert.order_id) if cert.order_id else None
    end = coverage_end(order) if order else None
    if order is None or end is None or cert.not_after is None or cert.not_after < end:
        return AfterIssue()
    later = [c for c in repo.certificates_for_order(order.id)
             if c.plan_index > cert.plan_index and c.state is not Status.CANCELLED]
    return _covered(repo, cert, order, later, None, now=now, actor=actor)


def _add_reissue(repo: Repository, cert: Certificate, order: Order, window: Window, siblings: list[Certificate],
                 *, now: datetime, actor: str) -> str:
    """A VA-5 reissue completing the term after `cert` (no quota, no credit), NOT_ACTIVATED (PL-3)."""
    index = max(c.plan_index for c in siblings) + 1
    planned = [*order.planned, PlannedCertificate(index=index, state=Status.NOT_ACTIVATED,
                                                  not_before=window.not_before, not_after=window.not_after,
                                                  reissue=True)]
    repo.set_order_plan(order.id, planned=planned, now=now)
    new = cert.model_copy(update={
        "id": new_id("crt"), "state": Status.NOT_ACTIVATED, "plan_index": index, "not_before": window.not_before,
        "not_after": window.not_after, "serial": None, "fingerprint_sha256": None, "planned_not_before": None,
        "planned_not_after": None, "key_held": cert.key_held})
    repo.add_certificate(new, actor=actor, now=now,
                         why=f"reissue {index + 1} of order {order.id}: {cert.id} was signed until "
                             f"{cert.not_after.isoformat()}, before the term's end "
                             f"{coverage_end(order).isoformat()}; this one covers the rest at no quota or "
                             "credit and starts by itself at its managed start (VA-5, PL-4)")
    return new.id


def _covered(repo: Repository, cert: Certificate, order: Order, later: list[Certificate],
             comparison: PlanVsIssued | None, *, now: datetime, actor: str) -> AfterIssue:
    """The term is covered by `cert`: its later not-activated certificates are not needed; each
    is cancelled and what it cost comes back (PL-7's refund, once by key)."""
    cancelled, entries = [], []
    reissues = {p.index for p in order.planned if p.reissue}
    for c in later:
        if c.state is not Status.NOT_ACTIVATED:
            continue
        refund = cancel_refund(c.spec, reissue=c.plan_index in reissues, origin=c.origin)
        repo.set_state(c.id, Status.CANCELLED, actor=actor, now=now,
                       why=f"not needed: {cert.id} was signed until {cert.not_after.isoformat()}, which covers "
                           f"the term (ends {coverage_end(order).isoformat()})"
                           + ("; one quota and one managed credit restored (PL-7)" if refund else ""))
        entries += repo.append_ledger([
            LedgerEntry(id=new_id("led"), kind=kind, spec_key=spec_key, delta=delta, order_id=order.id,
                        idempotency_key=cancel_key(c.id, kind), created_at=now,
                        note=f"{'quota' if kind is LedgerKind.QUOTA else 'managed-service credit'} restored: "
                             f"{c.id} not needed, the term is covered (PL-7)")
            for kind, spec_key, delta in refund])
        cancelled.append(c.id)
    return AfterIssue(comparison, not_needed=tuple(cancelled), refunds=entries)
