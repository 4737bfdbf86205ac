"""Use cases of stage 1 of a renewal (LC-3): preview, place, pay and cancel orders; quotas.

Two levels. The Services-level doors at the end of the module (`preview`, `renew`, `buy`,
`pay`, `cancel`, `quota`, `top_up`) are what the CLI and the tasks call: each owns its
transaction and returns a frozen result. The session-level functions they compose
(`preview_renewal`, `place_renewal`, `place_purchase`, `pay_order`, `cancel_certificate`, ...)
work inside the caller's store transaction and never commit.

Each asks `certpilot.core` to decide: eligibility (EL), the plan and its validity windows (PL,
VA), the bill (PAY). Writes go through `store.repository.Repository`, whose compare-and-set and
idempotent-ledger primitives make a retried or concurrent payment write once (PAY-4).

An order whose shortfall is not approved is a normal outcome, not an error: it is recorded
awaiting payment, nothing is debited, and the `OrderResult` carries the SHORTFALL_NOT_APPROVED
refusal saying what to approve and how (`pending`). Real refusals (EL, PL years, CSR,
ALREADY_RENEWED, UP-1) raise `RefusedError` and write nothing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from certpilot.core.errors import BadInputError, Reason, Refusal, RefusedError
from certpilot.core.models import (
    Balances,
    Certificate,
    CsrMode,
    LedgerEntry,
    LedgerKind,
    Order,
    OrderKind,
    OrderState,
    Origin,
    PaymentLine,
    Policy,
    Spec,
    Status,
)
from certpilot.core.payment import (
    cancel_key,
    ledger_key,
    needs_approval,
    price_order,
    renewal_attempt_key,
    shortfall,
    top_up_key,
)
from certpilot.operations.common import new_id, positive_count, require_aware
from certpilot.operations.inventory import CertificateView
from certpilot.store.order_queries import OrderLine
from certpilot.store.repository import Repository, order_from_row
from certpilot.store.tables import OrderRow

if TYPE_CHECKING:
    from certpilot.runtime import Services

OPEN_ORDER_STATES = frozenset({OrderState.AWAITING_PAYMENT, OrderState.PAID})
"""An order in one of these states is the certificate's renewal: a second one is refused."""


@dataclass(frozen=True)
class RenewalPreview:
    """What a renewal would do, decided without writing anything (``renew --dry-run``)."""

    certificate: Certificate
    kind: OrderKind
    years: int
    now: datetime
    csr_mode: CsrMode
    eligible: bool
    refusal: Refusal | None
    """The first rule that refused (EL-1..EL-5, PL years, CSR-2), with what to do instead."""
    plan: object | None
    """`core.plans.Plan`: the planned certificates with their windows, managed services."""
    payment: list[PaymentLine] = field(default_factory=list)
    """The bill (PAY-1): quota and credits from the balance first, then the shortfall."""
    shortfall: int = 0
    """Money to charge (units); needs approval when above zero."""
    managed_fee: bool = False
    """PAY-2: renewing with more than 30 days left adds a managed service."""
    warnings: list[str] = field(default_factory=list)
    open_order: Order | None = None
    """An order of this certificate still awaiting payment, if any."""


@dataclass(frozen=True)
class OrderResult:
    """A placed (or found again, or paid) order, its new certificates and its ledger entries.

    An order waiting for payment approval is a result too: `awaiting_payment` is True, `pending`
    says what to approve and how, nothing was debited and no certificate exists yet.
    """

    order: Order
    certificates: list[CertificateView]
    ledger: list[LedgerEntry]
    preview: RenewalPreview | None = None
    created: bool = True
    """False when an idempotency key or an open order returned an existing order."""
    pending: Refusal | None = None
    """SHORTFALL_NOT_APPROVED (PAY-1) when the order waits for its charge to be approved: the
    amount, and the commands that approve or decline it."""
    shortfall: int = 0
    """The charge (units) the order waits to have approved; 0 unless it awaits payment."""

    @property
    def awaiting_payment(self) -> bool:
        """True when the order is recorded but waits for its shortfall to be approved (PAY-1)."""
        return self.order.state is OrderState.AWAITING_PAYMENT

    @property
    def certificate_ids(self) -> tuple[str, ...]:
        """The ids of the order's certificates, by plan index (none while it awaits payment)."""
        return tuple(v.id for v in self.certificates)


@dataclass(frozen=True)
class CancelResult:
    """A cancelled certificate, the quota/credit entries that restored its payment (PL-7) and
    the balances after them (PAY-3)."""

    certificate: Certificate
    ledger: list[LedgerEntry]
    balances: Balances
    follow_ups: list[Certificate] = field(default_factory=list)
    """The later certificates of the plan cancelled with it (PL-7: a plan shortens at its end)."""
    plan_after: str = ""
    """What becomes of the plan (`core.plans.after_cancel`): which certificate it now ends with, and
    that the cancelled years' quota and credit came back instead of their certificates starting."""
    coverage_not_after: datetime | None = None
    """The order's coverage term after the cancellation (VA-5: 365 days less per year given back)."""


@dataclass(frozen=True)
class TopUpResult:
    """A quota or managed-credit purchase: its ledger entry and the balances after it (PAY-3)."""

    entry: LedgerEntry
    balances: Balances


# ---------------------------------------------------------------- helpers


def _rules(policy: Policy | None, schedule):
    """The policy and CA/B schedule to decide with (the configured ones unless given)."""
    if policy is None or schedule is None:
        from certpilot.config import load_policy, load_schedule

        policy = policy or load_policy()
        schedule = schedule or load_schedule()
    return policy, schedule


def _kind_for(cert: Certificate) -> OrderKind:
    """Official certificates are renewed; an uploaded one is replaced by a fresh purchase (VA-3)."""
    return OrderKind.RENEWAL if cert.origin is Origin.OFFICIAL else OrderKind.PURCHASE


def _billable(planned, origin: Origin | None = None, paid: bool = True) -> int:
    """Certificates that consume quota: VA-5's reissues cover the same term at no extra quota, and
    a private-CA reissue (EL-4) comes from certpilot's own CA, which sells no quota; an issuer
    that is no paid service (`paid` False: a free ACME CA) bills nothing at all."""
    if origin is Origin.PRIVATE_CA or not paid:
        return 0
    return sum(1 for p in planned if not p.reissue)


def _open_orders(repo: Repository, cert_id: str, now: datetime, policy: Policy) -> list[Order]:
    """The certificate's orders still open as of `now` (an unpaid one past its expiry is closed)."""
    from certpilot.core.payment import order_state_at

    return [o for o in repo.orders_for_certificate(cert_id)
            if order_state_at(o.state, o.created_at, now, policy) in OPEN_ORDER_STATES]


def pay_at_once(repo: Repository, order: Order, *, certificates: int, managed: int, now: datetime, policy: Policy,
                actor: str, why: str) -> list[LedgerEntry]:
    """Pay `order` now: balances first, any shortfall charged without waiting for approval
    (EM-1: the site is down). Exactly once, like every payment (PAY-4)."""
    lines = _price(repo, order.spec, certificates, managed, policy)
    return repo.pay_order_atomically(order.id, _entries(order, lines, now), actor=actor, now=now, why=why,
                                     payment=lines).entries


def order_by_key(session: Session, key: str) -> Order | None:
    """The order placed with idempotency key `key`, if any."""
    return _order_by_key(session, key)


def _order_by_key(session: Session, key: str) -> Order | None:
    row = session.scalars(select(OrderRow).where(OrderRow.idempotency_key == key)).first()
    return order_from_row(row) if row else None


def _views(repo: Repository, order_id: str, now: datetime, policy: Policy) -> list[CertificateView]:
    return [CertificateView.of(c, now, policy) for c in repo.certificates_for_order(order_id)]


def _price(repo: Repository, spec: Spec, certificates: int, managed: int, policy: Policy) -> list[PaymentLine]:
    return price_order(spec, certificates=certificates, managed=managed, balances=repo.balances(), policy=policy)


def _entries(order: Order, lines: list[PaymentLine], now: datetime) -> list[LedgerEntry]:
    """The ledger movements that pay `order` by `lines` (PAY-1, PAY-4).

    Per item: first what the balance covers is consumed; then a shortfall is bought (a CHARGE
    entry with its amount, and a purchase entry) and consumed at once, so no balance ever goes
    below zero. Keys come from the order and the line, so a retry writes nothing new.
    """
    out: list[LedgerEntry] = []

    def entry(kind: LedgerKind, index: int, delta: int, spec_key: str | None, note: str, amount: int = 0):
        out.append(LedgerEntry(id=new_id("led"), kind=kind, spec_key=spec_key, delta=delta, amount=amount,
                               order_id=order.id, idempotency_key=ledger_key(order.id, kind, index),
                               created_at=now, note=note))

    for charge_index, line in enumerate(lines):
        what = "certificate quota" if line.kind is LedgerKind.QUOTA else "managed-service credit"
        if line.from_balance:
            entry(line.kind, 0, -line.from_balance, line.spec_key, f"{what} used from the balance (PAY-1)")
        if line.shortfall:
            amount = line.shortfall * line.unit_price
            entry(LedgerKind.CHARGE, charge_index, amount, line.spec_key,
                  f"charge for {line.shortfall} {what} not covered by the balance (PAY-1)", amount)
            entry(line.kind, 1, line.shortfall, line.spec_key, f"{what} bought for the shortfall")
            entry(line.kind, 2, -line.shortfall, line.spec_key, f"{what} bought, used (PAY-1)")
    return out


def _create_certificates(repo: Repository, order: Order, original: Certificate | None, *, names: list[str],
                         common_name: str, key_algorithm, owner, now: datetime, actor: str,
                         csr_mode: CsrMode) -> None:
    """The order's new certificates with their planned windows: the first pending, the rest not
    activated (PL-3), children of the original (LC-2)."""
    from certpilot.core.models import Certificate as Cert

    for planned in order.planned:
        repo.add_certificate(
            Cert(
                id=new_id("crt"), common_name=common_name, names=list(names), cert_type=order.spec.cert_type,
                origin=Origin.PRIVATE_CA if original and original.origin is Origin.PRIVATE_CA else Origin.OFFICIAL,
                level=order.spec.level, brand=order.spec.brand,
                key_algorithm=key_algorithm, not_before=planned.not_before, not_after=planned.not_after,
                parent_id=original.id if original else None, order_id=order.id, plan_index=planned.index,
                state=planned.state,
                validation_method=original.validation_method if original else Cert.model_fields[
                    "validation_method"].default,
                owner=owner, key_held=csr_mode is not CsrMode.MANUAL,
                publicly_trusted=original.publicly_trusted if original else True,
            ),
            actor=actor, now=now,
            why=f"planned certificate {planned.index + 1} of {len(order.planned)} of order {order.id} (PL-3)",
        )


@dataclass(frozen=True)
class _Completion:
    """What `_complete` did: the order paid (with its entries), or left waiting for approval."""

    order: Order
    entries: list[LedgerEntry]
    pending: Refusal | None = None
    shortfall: int = 0


def _complete(repo: Repository, order: Order, *, now: datetime, actor: str, policy: Policy,
              approve: bool, schedule=None, paid: bool = True) -> _Completion:
    """Price at today's balances and pay `order` exactly once; create its certificates.

    A charge that is needed but not approved leaves the order as it is (awaiting payment, no
    debit) and comes back as `pending` (SHORTFALL_NOT_APPROVED). A purchase is re-planned from
    the moment it is paid (VA-3: 12 months from its own issue date, not from when it was asked).
    """
    from certpilot.core.payment import check_approve

    closed = check_approve(order, now, policy)
    if closed is not None:
        raise RefusedError(closed)
    original = repo.certificate_model(order.certificate_id) if order.certificate_id else None
    if original is None and order.kind is OrderKind.PURCHASE and not order.names:
        raise RefusedError(Refusal(
            Reason.NO_NAMES, f"order {order.id} was recorded before orders kept the names they buy, so paying it "
                             f"could create no certificate; nothing was debited. Drop it (`certpilot order cancel "
                             f"{order.id}`) and buy again with its names (`certpilot buy --name NAME`)", "PAY-1"))
    # `managed_services` already counts PAY-2's fee (core.plans).
    lines = _price(repo, order.spec, _billable(order.planned, original.origin if original else None, paid),
                   order.managed_services if paid else 0, policy)
    if needs_approval(lines) and not approve:
        charge = shortfall(lines)
        return _Completion(order, [], _shortfall_refusal(order, lines, charge, policy), charge)
    planned = None
    if original is None and order.kind is OrderKind.PURCHASE and order.state is OrderState.AWAITING_PAYMENT:
        from certpilot.core.plans import plan_order

        replanned = plan_order(OrderKind.PURCHASE, years=order.years, now=now, policy=policy,
                               schedule=_rules(policy, schedule)[1])
        planned = replanned.certificates
    outcome = repo.pay_order_atomically(order.id, _entries(order, lines, now), actor=actor, now=now,
                                        why="paid from quota and credits first, shortfall charged (PAY-1)",
                                        payment=lines, planned=planned)
    if planned is not None and outcome.paid_now:
        repo.set_order_plan(order.id, coverage_not_after=replanned.coverage.not_after, now=now)
    _ensure_certificates(repo, outcome.order, original, now=now, actor=actor)
    return _Completion(outcome.order, outcome.entries)


def _ensure_certificates(repo: Repository, paid: Order, original: Certificate | None, *, now: datetime,
                         actor: str) -> None:
    """Create a paid order's certificates unless they exist (PL-3, LC-2): from the original for a
    renewal, from the names the order keeps for a purchase. Exactly once: the store's unique
    (order, plan index) refuses a second set even from a concurrent payer (PAY-4)."""
    if paid.state is not OrderState.PAID or paid.kind is OrderKind.EMERGENCY or repo.certificates_for_order(paid.id):
        return
    if original is not None:
        _create_certificates(repo, paid, original, names=original.names, common_name=original.common_name,
                             key_algorithm=original.key_algorithm, owner=original.owner, now=now,
                             actor=actor, csr_mode=paid.csr_mode)
        repo.record_audit("certificate", original.id, actor=actor, now=now,
                          why=f"renewed by order {paid.id} ({paid.years} year(s)); this certificate "
                              "stays valid until its own expiry (LC-1)")
    elif paid.names:
        from certpilot.core.models import KeyAlgorithm

        _create_certificates(repo, paid, None, names=paid.names, common_name=paid.names[0],
                             key_algorithm=KeyAlgorithm.EC_P256, owner=paid.owner, now=now, actor=actor,
                             csr_mode=CsrMode.SYSTEM)


def _shortfall_refusal(order: Order, lines: list[PaymentLine], amount: int, policy: Policy) -> Refusal:
    """SHORTFALL_NOT_APPROVED with the real commands: approve, add the missing balance, or drop it."""
    from certpilot.core.payment import order_again_command, order_expires_at

    approve = f"`certpilot pay {order.id}`"
    if order.kind is OrderKind.PURCHASE and order.certificate_id is None and order.names:
        approve += f" (or `{order_again_command(order)} --approve-payment`, which finds this order)"
    elif order.kind is not OrderKind.EMERGENCY and order.certificate_id:
        approve += f" (or `certpilot renew {order.certificate_id} --years {order.years} --approve-payment`)"
    top_ups = []
    for line in lines:
        if line.shortfall and line.kind is LedgerKind.QUOTA:
            top_ups.append(f"`certpilot quota add --brand {shlex.quote(order.spec.brand)} --level "
                           f"{order.spec.level.value} --type {order.spec.cert_type.value} --count {line.shortfall}`")
        elif line.shortfall:
            top_ups.append(f"`certpilot quota add --managed {line.shortfall}`")
    return Refusal(
        Reason.SHORTFALL_NOT_APPROVED,
        f"order {order.id} needs a charge of {amount} for what the quota and credits do not cover; it waits, "
        f"nothing was debited: approve it with {approve}; or add the balance first ({' and '.join(top_ups)}) "
        f"and then run `certpilot pay {order.id}`; or drop it with `certpilot order cancel {order.id}`. "
        f"Unpaid, it expires on {order_expires_at(order.created_at, policy):%Y-%m-%d}",
        "PAY-1",
    )


# ---------------------------------------------------------------- renewals


def preview_renewal(
    session: Session,
    cert_id: str,
    *,
    years: int,
    now: datetime,
    policy: Policy | None = None,
    schedule=None,
    csr_mode: CsrMode = CsrMode.SYSTEM,
    csr_pem: bytes | None = None,
    paid: bool = True,
) -> RenewalPreview:
    """Decide a renewal without writing anything: eligibility, plan, bill (``renew --dry-run``).

    Args:
        session: an open store session (only read).
        cert_id: the certificate to renew.
        years: 1, 2 or 3 (PL-1, PL-2).
        now: the time of the decision (aware UTC); the first certificate is planned from it.
        policy, schedule: the rules' numbers and the CA/B schedule (VA-5); default configured.
        csr_mode: how the key and CSR will be made (CSR-1..CSR-3).
        csr_pem: the CSR for `CsrMode.MANUAL`; checked against the names and key algorithm (CSR-2).
        paid: the certificate's issuer is a paid service (quota, managed credits, payment form);
            False for a free CA (nothing billed).

    Returns:
        A `RenewalPreview`; `eligible` is False with `refusal` set when a rule refuses.

    Raises:
        NotFoundError: no such certificate.
    """
    from certpilot.core.eligibility import RenewalInput, check_renewal
    from certpilot.core.plans import check_years, plan_order

    now = require_aware(now)
    policy, schedule = _rules(policy, schedule)
    repo = Repository(session)
    cert = repo.certificate_model(cert_id)
    kind = _kind_for(cert)
    warnings: list[str] = []
    open_orders = _open_orders(repo, cert_id, now, policy)
    awaiting = next((o for o in open_orders if o.state is OrderState.AWAITING_PAYMENT), None)

    def refused(refusal: Refusal) -> RenewalPreview:
        return RenewalPreview(certificate=cert, kind=kind, years=years, now=now, csr_mode=csr_mode, eligible=False,
                              refusal=refusal, plan=None, warnings=warnings, open_order=awaiting)

    refusal = check_years(years) or check_renewal(RenewalInput(certificate=cert, now=now, policy=policy))
    if refusal is None:
        paid_order = next((o for o in open_orders if o.state is OrderState.PAID), None)
        if paid_order is not None:
            refusal = Refusal(Reason.ALREADY_RENEWED,
                              f"{cert.common_name} already has renewal order {paid_order.id} ({paid_order.years} "
                              "year(s)); "
                              f"see its new certificates with `certpilot show {cert.id}`", "LC-2")
    if refusal is None:
        refusal = _check_csr(repo, cert, csr_mode, csr_pem, warnings)
    if refusal is not None:
        return refused(refusal)
    if awaiting is not None:
        warnings.append(f"order {awaiting.id} ({awaiting.years} year(s)) already awaits payment approval; "
                        "renewing again completes that order")
    plan = plan_order(kind, years=years, now=now, policy=policy, schedule=schedule,
                      old_not_after=cert.not_after if kind is OrderKind.RENEWAL else None,
                      publicly_trusted=cert.publicly_trusted)
    lines = _price(repo, cert.spec, _billable(plan.certificates, cert.origin, paid),
                   plan.managed_services if paid else 0, policy)
    return RenewalPreview(certificate=cert, kind=kind, years=years, now=now, csr_mode=csr_mode, eligible=True,
                          refusal=None, plan=plan, payment=lines, shortfall=shortfall(lines),
                          managed_fee=plan.managed_fee, warnings=warnings, open_order=awaiting)


def _check_csr(repo: Repository, cert: Certificate, mode: CsrMode, csr_pem: bytes | None,
               warnings: list[str]) -> Refusal | None:
    """CSR-1..CSR-3 at order time: a manual CSR must match; reuse needs the original key held."""
    if mode is CsrMode.MANUAL:
        if not csr_pem:
            return Refusal(Reason.CSR_INVALID, "a manual CSR renewal needs the CSR; pass --csr-file F", "CSR-2")
        from certpilot.crypto.csr import check_csr

        refusal = check_csr(csr_pem, cert.names, cert.key_algorithm)
        if refusal is not None:
            return refusal
        warnings.append("the system does not hold the key of a manual CSR: it cannot deploy this certificate "
                        "to managed targets (CSR-2)")
    elif mode is CsrMode.REUSE:
        if not cert.key_held or repo.get_certificate(cert.id).key_id is None:
            return Refusal(Reason.KEY_NOT_HELD,
                           f"the original key of {cert.common_name} is not held by certpilot, so it cannot be "
                           "reused; renew with --csr system (a new key, recommended) or --csr manual", "CSR-3")
        warnings.append("reusing the original key does not rotate it; some compliance regimes forbid this (CSR-3)")
    return None


def place_renewal(
    session: Session,
    cert_id: str,
    *,
    years: int,
    now: datetime,
    policy: Policy | None = None,
    schedule=None,
    csr_mode: CsrMode = CsrMode.SYSTEM,
    csr_pem: bytes | None = None,
    approve_payment: bool = False,
    idempotency_key: str | None = None,
    actor: str = "cli",
    paid: bool = True,
) -> OrderResult:
    """Order a renewal: record the order, pay it (PAY-1) and create its certificates (PL-3, LC-2).

    Args:
        session: an open store session (never committed here).
        cert_id: the certificate to renew.
        years: 1, 2 or 3.
        now: the time of the order (aware UTC).
        policy, schedule: default the configured ones.
        csr_mode, csr_pem: CSR-1..CSR-3 (see `preview_renewal`).
        approve_payment: approve charging a shortfall; without it such an order waits unpaid.
        idempotency_key: a retried call with the same key returns the same order.
        actor: who is acting, for the audit trail.
        paid: the certificate's issuer bills (False: a free CA; no quota, credits or form).

    Returns:
        The `OrderResult`; an unapproved shortfall is recorded awaiting payment, nothing
        debited, with `pending` saying what to approve (SHORTFALL_NOT_APPROVED).

    Raises:
        RefusedError: a rule refused (EL, PL years, CSR, ALREADY_RENEWED) — nothing written.
        NotFoundError: no such certificate.
    """
    now = require_aware(now)
    policy, schedule = _rules(policy, schedule)
    repo = Repository(session)
    # Serialise balance readers: two orders cannot both spend the last quota (PAY-4).
    repo.lock_ledger()
    if idempotency_key is not None:
        existing = _order_by_key(session, idempotency_key)
        if existing is not None:
            return _resume(repo, existing, now=now, policy=policy, actor=actor, approve=approve_payment, paid=paid)
    preview = preview_renewal(session, cert_id, years=years, now=now, policy=policy, schedule=schedule,
                              csr_mode=csr_mode, csr_pem=csr_pem, paid=paid)
    if not preview.eligible:
        raise RefusedError(preview.refusal)
    if preview.open_order is not None:
        # The same renewal asked again (e.g. now with --approve-payment): complete the waiting order.
        if preview.open_order.years != years:
            raise RefusedError(Refusal(
                Reason.ALREADY_RENEWED,
                f"order {preview.open_order.id} for {preview.open_order.years} year(s) already awaits payment; "
                f"approve it (`certpilot pay {preview.open_order.id}`) or decline it "
                f"(`certpilot pay {preview.open_order.id} --decline`) before ordering {years} year(s)", "PAY-1"))
        return _resume(repo, preview.open_order, now=now, policy=policy, actor=actor,
                       approve=approve_payment, preview=preview, paid=paid)
    cert = preview.certificate
    plan = preview.plan
    order = repo.add_order(
        Order(id=new_id("ord"), kind=preview.kind, certificate_id=cert.id, spec=cert.spec, years=years,
              csr_mode=csr_mode, managed_services=plan.managed_services if paid else 0,
              managed_fee=plan.managed_fee and paid,
              planned=list(plan.certificates), payment=preview.payment, state=OrderState.AWAITING_PAYMENT,
              created_at=now, coverage_not_after=plan.coverage.not_after),
        idempotency_key=idempotency_key, actor=actor, now=now,
        why=f"{preview.kind.value} of {cert.id} for {years} year(s)",
    )
    repo.record_audit("certificate", cert.id, actor=actor, now=now, why=f"renewal order {order.id} placed")
    if csr_mode is CsrMode.MANUAL and csr_pem:
        # CSR-2: the checked CSR is kept with the order, so its first certificate's application (a
        # flow run, whenever it runs) submits exactly it; a CSR holds no secret.
        repo.set_order_csr(order.id, csr_pem.decode() if isinstance(csr_pem, bytes) else csr_pem)
    return _resume(repo, order, now=now, policy=policy, actor=actor, approve=approve_payment,
                   preview=preview, created=True, paid=paid)


def _awaiting_purchase(session: Session, spec: Spec, years: int, names: list[str], now: datetime,
                       policy: Policy) -> Order | None:
    """An unexpired purchase of the same names, specification and years still awaiting payment."""
    from certpilot.core.payment import unpaid_expired_before
    from certpilot.store.order_queries import awaiting_purchases

    return next((o for o in awaiting_purchases(session, spec_key=spec.key, years=years,
                                               placed_after=unpaid_expired_before(now, policy))
                 if o.names == names), None)


def _resume(repo: Repository, order: Order, *, now: datetime, policy: Policy, actor: str,
            approve: bool, preview: RenewalPreview | None = None, created: bool = False,
            schedule=None, paid: bool = True) -> OrderResult:
    """Bring an order as far as it can go: pay it if it waits (or leave it waiting for approval),
    report it as it is otherwise (a paid order whose certificates are missing gets them now).

    Raises:
        RefusedError: ORDER_CLOSED: the order found again expired, was declined or cancelled.
    """
    done = _Completion(order, repo.ledger_for_order(order.id))
    if order.state is OrderState.AWAITING_PAYMENT:
        done = _complete(repo, order, now=now, actor=actor, policy=policy, approve=approve, schedule=schedule,
                         paid=paid)
    elif order.state is OrderState.PAID:
        original = repo.certificate_model(order.certificate_id) if order.certificate_id else None
        _ensure_certificates(repo, order, original, now=now, actor=actor)
    return OrderResult(order=done.order, certificates=_views(repo, order.id, now, policy), ledger=done.entries,
                       preview=preview, created=created, pending=done.pending, shortfall=done.shortfall)


def settle(repo: Repository, order: Order, *, now: datetime, policy: Policy, actor: str,
           approve: bool = False) -> OrderResult:
    """Pay an order just recorded from the balances and create its certificates, or leave it awaiting
    payment (`OrderResult.pending` says what to approve); for orders other use cases compose (EM-2)."""
    return _resume(repo, order, now=now, policy=policy, actor=actor, approve=approve, created=True)


def pay_order(session: Session, order_id: str, *, approve: bool, now: datetime, actor: str = "cli",
              policy: Policy | None = None) -> Order:
    """Approve or decline the payment of an order awaiting payment (PAY-1, PAY-4).

    Approving prices the order at today's balances (quota and credits first), writes its ledger
    entries exactly once and creates its certificates (a renewal's from the original, a purchase's
    from the names it keeps); declining marks it DECLINED, no debit. Approving an order already
    paid changes nothing but creates its certificates if they are missing, so a second `pay`
    after a crash completes the first; declining a declined order changes nothing.

    Raises:
        NotFoundError: no such order.
        RefusedError: ORDER_CLOSED (approving an expired, declined or cancelled order; declining a
            cancelled or expired one), ORDER_PAID (declining a paid order): nothing changed.
    """
    from certpilot.core.payment import check_approve, check_decline

    now = require_aware(now)
    policy = policy or _rules(None, None)[0]
    repo = Repository(session)
    repo.lock_ledger()
    order = repo.get_order(order_id)
    if not approve:
        refusal = check_decline(order, now, policy, _cancellable(repo, order))
        if refusal is not None:
            raise RefusedError(refusal)
        if order.state is OrderState.DECLINED:
            return order
        return repo.set_order_state(order_id, OrderState.DECLINED, expected=OrderState.AWAITING_PAYMENT,
                                    actor=actor, now=now, why="payment of the shortfall declined; nothing debited")
    refusal = check_approve(order, now, policy)
    if refusal is not None:
        raise RefusedError(refusal)
    return _resume(repo, order, now=now, policy=policy, actor=actor, approve=True).order


def _cancellable(repo: Repository, order: Order) -> list[str]:
    """The order's certificates PL-7 lets its owner cancel: the not-activated yearly ones."""
    reissues = {p.index for p in order.planned if p.reissue}
    return [c.id for c in repo.certificates_for_order(order.id)
            if c.state is Status.NOT_ACTIVATED and c.plan_index not in reissues]


def cancel_certificate(session: Session, cert_id: str, *, now: datetime, actor: str = "cli",
                       policy: Policy | None = None) -> CancelResult:
    """Cancel a not-activated certificate and its follow-ups (PL-7; `core.plans.cancel_scope`).

    A plan is shortened at its end, never holed: the certificate goes with every later
    certificate of its order (its VA-5 reissues, the later years), each yearly one restoring one
    quota of its spec and one managed credit. A VA-5 reissue alone is refused (it restores nothing
    and would leave the rest of its year uncovered), and so is a private-CA reissue's refund: its
    own CA sells no quota. Idempotent by key: the restoring entries are keyed by the certificate,
    so they are written once; a second cancel is refused (no longer not-activated). The result
    carries the balances after the cancellation (PAY-3).

    Raises:
        RefusedError: NOT_CANCELLABLE (not in NOT_ACTIVATED, PL-7; a reissue alone, VA-5);
            nothing written.
        NotFoundError: no such certificate.
    """
    from certpilot.core.plans import PlanMember, cancel_refund, cancel_scope

    now = require_aware(now)
    repo = Repository(session)
    cert = repo.certificate_model(cert_id)
    order = repo.get_order(cert.order_id) if cert.order_id else None
    reissues = {p.index for p in order.planned if p.reissue} if order else set()
    siblings = repo.certificates_for_order(order.id) if order else [cert]
    scope = cancel_scope(cert_id, [PlanMember(c.plan_index, c.id, c.state, c.plan_index in reissues and order is not None)
                                   for c in siblings])
    if isinstance(scope, Refusal):
        raise RefusedError(scope)
    by_id = {c.id: c for c in siblings}
    cancelled: list[Certificate] = []
    entries: list[LedgerEntry] = []
    for cid in scope:
        c = by_id[cid]
        refund = cancel_refund(c.spec, reissue=c.plan_index in reissues, origin=c.origin)
        why = ("cancelled by its owner" if cid == cert_id else f"cancelled with {cert_id}, which it follows") + "; " + (
            "one quota and one managed credit restored (PL-7)" if refund
            else "it cost no quota or credit (a VA-5 reissue, or from the private CA): nothing to restore")
        cancelled.append(repo.set_state(cid, Status.CANCELLED, actor=actor, now=now, why=why))
        entries += repo.append_ledger([
            LedgerEntry(id=new_id("led"), kind=kind, spec_key=spec_key, delta=delta, order_id=c.order_id,
                        idempotency_key=cancel_key(cid, kind), created_at=now,
                        note=f"{_WHAT[kind]} restored by cancelling {cid} (PL-7)")
            for kind, spec_key, delta in refund
        ])
    coverage, plan_after = _shorten_plan(repo, order, cancelled, reissues, now=now,
                                         policy=policy or _rules(None, None)[0])
    return CancelResult(certificate=cancelled[0], ledger=entries, balances=repo.balances(),
                        follow_ups=cancelled[1:], plan_after=plan_after, coverage_not_after=coverage)


def _shorten_plan(repo: Repository, order: Order | None, cancelled: list[Certificate], reissues: set[int], *,
                  now: datetime, policy: Policy) -> tuple[datetime | None, str]:
    """PL-7/VA-5: the order's coverage term loses the cancelled years (no reissue will cover them),
    and the sentence saying what the plan now is (`core.plans.after_cancel`)."""
    from certpilot.core.plans import after_cancel, shortened_coverage
    from certpilot.operations.coverage import coverage_end
    from certpilot.store.tables_pipeline import RenewalPolicyRow

    if order is None:
        return None, after_cancel(None, None, False)
    end = coverage_end(order)
    yearly = sum(1 for c in cancelled if c.plan_index not in reissues)
    if end is not None and yearly:
        end = shortened_coverage(end, yearly, policy)
        repo.set_order_plan(order.id, coverage_not_after=end, now=now)
    issued = [c for c in repo.certificates_for_order(order.id) if c.state is Status.ISSUED and c.not_after]
    if end is not None and issued and issued[-1].not_after >= end:
        # The shortened term is already covered: the plan's remaining not-activated certificates (a
        # VA-5 reissue that would have led into a cancelled year) are not needed either.
        from certpilot.operations.coverage import cancel_not_needed

        cancel_not_needed(repo.session, issued[-1].id, now=now, actor="cancel")
    gone = {c.id for c in cancelled}
    kept = [c for c in repo.certificates_for_order(order.id) if c.id not in gone and c.state is not Status.CANCELLED]
    last = kept[-1] if kept else None
    policy_row = repo.session.get(RenewalPolicyRow, last.id) if last else None
    return end, after_cancel(last.id if last else None, last.not_after if last else None,
                             policy_row.auto_renew if policy_row is not None else True)


_WHAT = {LedgerKind.QUOTA: "quota", LedgerKind.MANAGED: "managed-service credit"}
"""How the ledger notes name what a movement restores."""


# ---------------------------------------------------------------- balances


def balances(session: Session):
    """PAY-3: remaining quota per specification and managed-service credits."""
    return Repository(session).balances()


def add_quota(session: Session, spec: Spec, count: int, *, now: datetime, idempotency_key: str | None = None,
              note: str = "") -> LedgerEntry:
    """Add `count` certificate quota of `spec` (a ledger entry; a repeated key adds nothing).

    Raises:
        BadInputError: `count` is not a positive whole number.
    """
    positive_count(count, "the quota count")
    now = require_aware(now)
    (entry,) = Repository(session).append_ledger([
        LedgerEntry(id=new_id("led"), kind=LedgerKind.QUOTA, spec_key=spec.key, delta=count, order_id=None,
                    idempotency_key=idempotency_key or top_up_key(LedgerKind.QUOTA, new_id("add")), created_at=now,
                    note=note or f"{count} quota of {spec.key} added"),
    ])
    return entry


def add_managed(session: Session, count: int, *, now: datetime, idempotency_key: str | None = None,
                note: str = "") -> LedgerEntry:
    """Add `count` managed-service credits (a ledger entry; a repeated key adds nothing).

    Raises:
        BadInputError: `count` is not a positive whole number.
    """
    positive_count(count, "the managed-service count")
    now = require_aware(now)
    (entry,) = Repository(session).append_ledger([
        LedgerEntry(id=new_id("led"), kind=LedgerKind.MANAGED, spec_key=None, delta=count, order_id=None,
                    idempotency_key=idempotency_key or top_up_key(LedgerKind.MANAGED, new_id("add")), created_at=now,
                    note=note or f"{count} managed-service credit(s) added"),
    ])
    return entry


# ---------------------------------------------------------------- purchases


def place_purchase(
    session: Session,
    *,
    names: list[str],
    brand: str,
    level,
    years: int,
    now: datetime,
    owner=None,
    policy: Policy | None = None,
    schedule=None,
    approve_payment: bool = False,
    idempotency_key: str | None = None,
    actor: str = "cli",
) -> OrderResult:
    """Order a new certificate (no renewal): 12 months from its own issue date per year (VA-3).

    Args:
        names: the certificate's names; the type is inferred and checked (UP-1).
        brand, level: the specification to buy.
        years: 1, 2 or 3 (PL-1, PL-2).
        owner: a `Contact` (or None).
        Others as in `place_renewal`.

    Returns:
        The `OrderResult`; an unapproved shortfall is recorded awaiting payment, nothing
        debited, with `pending` saying what to approve (SHORTFALL_NOT_APPROVED).

    Raises:
        BadInputError: a malformed name.
        RefusedError: names that do not fit a type (UP-1) or bad years — nothing written.
    """
    from certpilot.core.names import check_names, infer_type, normalize_name
    from certpilot.core.plans import check_years, plan_order

    now = require_aware(now)
    policy, schedule = _rules(policy, schedule)
    if not names:
        raise BadInputError("a purchase needs at least one name; pass --name", Reason.NO_NAMES)
    repo = Repository(session)
    repo.lock_ledger()
    if idempotency_key is not None:
        existing = _order_by_key(session, idempotency_key)
        if existing is not None:
            return _resume(repo, existing, now=now, policy=policy, actor=actor, approve=approve_payment,
                           schedule=schedule)
    clean = list(dict.fromkeys(normalize_name(n) for n in names))
    cert_type = infer_type(clean)
    refusal = check_years(years) or check_names(clean, cert_type, policy)
    if refusal is not None:
        raise RefusedError(refusal)
    spec = Spec(brand=brand, level=level, cert_type=cert_type)
    if idempotency_key is None:
        # The same purchase asked again while it waits (e.g. now with --approve-payment): complete
        # that order rather than leave another one awaiting payment behind.
        same = _awaiting_purchase(session, spec, years, clean, now, policy)
        if same is not None:
            return _resume(repo, same, now=now, policy=policy, actor=actor, approve=approve_payment,
                           schedule=schedule)
    plan = plan_order(OrderKind.PURCHASE, years=years, now=now, policy=policy, schedule=schedule)
    order = repo.add_order(
        Order(id=new_id("ord"), kind=OrderKind.PURCHASE, certificate_id=None, spec=spec, years=years,
              managed_services=plan.managed_services, managed_fee=plan.managed_fee,
              planned=list(plan.certificates), payment=[], state=OrderState.AWAITING_PAYMENT, created_at=now,
              names=clean, owner=owner, coverage_not_after=plan.coverage.not_after),
        idempotency_key=idempotency_key, actor=actor, now=now, why=f"purchase of {', '.join(clean)}",
    )
    return _resume(repo, order, now=now, policy=policy, actor=actor, approve=approve_payment, schedule=schedule,
                   created=True)



# ---------------------------------------------------------------- Services-level doors
# What the CLI and the tasks call: each owns its transaction, takes the rules from the services
# and returns a frozen result. `now=None` means the services' clock.


def preview(svc: Services, certificate_id: str, *, years: int, now: datetime | None = None,
            csr_mode: CsrMode = CsrMode.SYSTEM, csr_pem: bytes | None = None) -> RenewalPreview:
    """Decide a renewal without writing anything (``renew --dry-run``); see `preview_renewal`.

    Raises:
        NotFoundError: no such certificate.
    """
    paid = _paid(svc, certificate_id)
    with svc.session(readonly=True) as s:
        return preview_renewal(s, certificate_id, years=years, now=now or svc.now(), policy=svc.policy,
                               schedule=svc.schedule, csr_mode=csr_mode, csr_pem=csr_pem, paid=paid)


def renew(svc: Services, certificate_id: str, *, years: int, now: datetime | None = None,
          csr_mode: CsrMode = CsrMode.SYSTEM, csr_pem: bytes | None = None, approve_payment: bool = False,
          idempotency_key: str | None = None, actor: str = "cli", rerun_safe: bool = False) -> OrderResult:
    """Order the renewal of a certificate, in one transaction; see `place_renewal`.

    Args:
        certificate_id: the certificate to renew (a private-CA one is reissued at no quota, EL-4).
        years: 1, 2 or 3 (PL-1, PL-2).
        now: the time of the order (default the services' clock).
        csr_mode, csr_pem: CSR-1..CSR-3.
        approve_payment: approve charging a shortfall; without it such an order waits unpaid.
        idempotency_key: a retried call with the same key returns the same order.
        actor: who is acting, for the audit trail.
        rerun_safe: derive the idempotency key from the certificate and its closed orders
            (`core.payment.renewal_attempt_key`) when none is given: a rerun of a flow finds the
            same order, and an attempt after a declined or cancelled order places a new one.

    Returns:
        The `OrderResult`: paid with its new certificates, or `awaiting_payment` with `pending`
        saying what to approve (nothing debited; the order is recorded).

    Raises:
        RefusedError: a rule refused (EL, PL years, CSR, ALREADY_RENEWED); nothing written.
        NotFoundError: no such certificate.
    """
    paid = _paid(svc, certificate_id)
    remote = _service_quota(svc, certificate_id) if paid else None
    with svc.session() as s:
        if remote is not None:  # the CA service keeps the quota: its count, not a local one (PAY-1)
            from certpilot.operations.quota import reconcile_session

            reconcile_session(s, remote[1], source=remote[0], now=now or svc.now())
        if idempotency_key is None and rerun_safe:
            idempotency_key = _attempt_key(Repository(s), certificate_id, now or svc.now(), svc.policy)
        return place_renewal(s, certificate_id, years=years, now=now or svc.now(), policy=svc.policy,
                             schedule=svc.schedule, csr_mode=csr_mode, csr_pem=csr_pem,
                             approve_payment=approve_payment, idempotency_key=idempotency_key, actor=actor,
                             paid=paid)


def _paid(svc: Services, certificate_id: str) -> bool:
    """Whether the certificate's issuer bills its renewals (`Services.paid`); an issuer choice
    that cannot be resolved yet counts as paid (the seed's model) and is refused at submission.

    Raises:
        NotFoundError: no such certificate.
    """
    with svc.session(readonly=True) as s:
        cert = Repository(s).certificate_model(certificate_id)
    try:
        return svc.paid(cert)
    except RefusedError:
        return True


def _service_quota(svc: Services, certificate_id: str) -> tuple[str, dict[str, int]] | None:
    """(the service, remaining quota per specification) when the certificate's issuer keeps the
    quota itself (`service_quota`: Alibaba Cloud CAS's packages), else None (the local ledger).

    Raises:
        TransientError / PermanentError: the service could not be asked (the stage retries).
    """
    with svc.session(readonly=True) as s:
        cert = Repository(s).certificate_model(certificate_id)
    try:
        issuer = svc.issuers.get(svc.issuer_choice(cert).name)
    except RefusedError:
        return None
    from certpilot.adapters.issuers.base import CountsQuota

    if not isinstance(issuer, CountsQuota):
        return None
    return f"{svc.issuer_ref(issuer)} ({issuer.name})", issuer.service_quota()


def _attempt_key(repo: Repository, certificate_id: str, now: datetime, policy: Policy) -> str:
    """The renewal order key of the certificate's current attempt (see `renew`'s `rerun_safe`):
    declined, cancelled and expired orders are closed attempts."""
    from certpilot.core.payment import order_state_at

    closed = sum(1 for o in repo.orders_for_certificate(certificate_id)
                 if order_state_at(o.state, o.created_at, now, policy)
                 in (OrderState.DECLINED, OrderState.CANCELLED, OrderState.EXPIRED))
    return renewal_attempt_key(certificate_id, closed)


def buy(svc: Services, *, names: list[str], brand: str, level, years: int, owner=None,
        now: datetime | None = None, approve_payment: bool = False, idempotency_key: str | None = None,
        actor: str = "cli") -> OrderResult:
    """Order a new certificate (VA-3), in one transaction; see `place_purchase`.

    Returns:
        The `OrderResult`: paid with its certificate(s), or `awaiting_payment` with `pending`.

    Raises:
        BadInputError: no or a malformed name.
        RefusedError: names that do not fit a type (UP-1) or bad years; nothing written.
    """
    with svc.session() as s:
        return place_purchase(s, names=list(names), brand=brand, level=level, years=years, now=now or svc.now(),
                              owner=owner, policy=svc.policy, schedule=svc.schedule,
                              approve_payment=approve_payment, idempotency_key=idempotency_key, actor=actor)


def pay(svc: Services, order_id: str, *, approve: bool, now: datetime | None = None,
        actor: str = "cli") -> OrderResult:
    """Approve or decline the shortfall of an order awaiting payment (PAY-1), exactly once (PAY-4).

    Returns:
        The order after the answer, its certificates (created when approved) and its ledger
        entries; `created` is False (the order existed).

    Raises:
        NotFoundError: no such order.
        RefusedError: ORDER_CLOSED (approving an expired, declined or cancelled order; declining a
            cancelled or expired one), ORDER_PAID (declining a paid order): nothing changed.
    """
    now = now or svc.now()
    with svc.session() as s:
        order = pay_order(s, order_id, approve=approve, now=now, actor=actor, policy=svc.policy)
        repo = Repository(s)
        return OrderResult(order=order, certificates=_views(repo, order.id, now, svc.policy),
                           ledger=repo.ledger_for_order(order.id), created=False)


def cancel(svc: Services, certificate_id: str, *, now: datetime | None = None, actor: str = "cli") -> CancelResult:
    """Cancel a not-activated certificate (PL-7), in one transaction; see `cancel_certificate`.

    Raises:
        RefusedError: NOT_CANCELLABLE; nothing written.
        NotFoundError: no such certificate.
    """
    with svc.session() as s:
        return cancel_certificate(s, certificate_id, now=now or svc.now(), actor=actor, policy=svc.policy)


def quota(svc: Services) -> Balances:
    """PAY-3: remaining quota per specification and managed-service credits, listable at any time.

    A specification a CA service counts itself (an issuer with `service_quota`: Alibaba Cloud
    CAS's package) is first brought to the service's count (one appended ledger entry when it
    differs, PAY-4); a service that cannot be read leaves the last count, with a warning logged.
    """
    from certpilot.operations.quota import refresh_from_services

    refresh_from_services(svc, tolerate=True)
    with svc.session(readonly=True) as s:
        return balances(s)


def top_up(svc: Services, *, count: int, spec: Spec | None = None, now: datetime | None = None,
           idempotency_key: str | None = None) -> TopUpResult:
    """Add `count` certificate quota of `spec`, or (`spec` None) managed-service credits.

    A repeated idempotency key adds nothing and returns the entry written the first time.

    Raises:
        BadInputError: `count` is not a positive whole number.
    """
    now = now or svc.now()
    with svc.session() as s:
        if spec is None:
            entry = add_managed(s, count, now=now, idempotency_key=idempotency_key)
        else:
            entry = add_quota(s, spec, count, now=now, idempotency_key=idempotency_key)
        return TopUpResult(entry=entry, balances=balances(s))


# ---------------------------------------------------------------- the order book (`certpilot orders`)


@dataclass(frozen=True)
class OrderList:
    """One page of the order book, newest first, with the count per state (as of `at`)."""

    at: datetime
    orders: tuple[OrderLine, ...]
    counts: dict[OrderState, int]
    """Orders per state as of `at` (an unpaid order past its expiry counts as expired)."""
    state: OrderState | None
    """The state listed, or None for every order."""
    expiry_days: int
    """How long an unpaid order waits before it expires (`Policy.order_expiry_days`)."""

    @property
    def total(self) -> int:
        """How many orders match the filter (the page may show fewer)."""
        return self.counts.get(self.state, 0) if self.state else sum(self.counts.values())


@dataclass(frozen=True)
class OrderDetail:
    """One order as `certpilot order show` tells it: its state as of `at`, certificates, ledger
    entries and the next step with real ids."""

    order: Order
    """The order, its `state` as of `at` (an unpaid order past its expiry is EXPIRED)."""
    at: datetime
    expires_at: datetime | None
    """When it expires unpaid (None once paid, declined or cancelled)."""
    certificates: list[CertificateView]
    ledger: list[LedgerEntry]
    charged: int
    """Money charged for it (the sum of its CHARGE entries)."""
    next_step: str
    changed: bool = False
    """For `cancel_order`: True when this call cancelled it."""


def _next_step(order: Order, certificates: list[CertificateView]) -> str:
    """What the operator does next with `order`, as commands with its real ids."""
    from certpilot.core.payment import order_again_command

    if order.state is OrderState.AWAITING_PAYMENT:
        return (f"approve its charge: `certpilot pay {order.id}`; or decline it: `certpilot pay {order.id} "
                f"--decline`; or drop it: `certpilot order cancel {order.id}`")
    if order.state is OrderState.PAID:
        pending = [c.id for c in certificates if c.status is Status.PENDING_APPLICATION]
        if pending:
            return (f"{pending[0]} waits for its application: the scanner applies it (`certpilot scan`, or "
                    f"`certpilot apply {pending[0]}` now); see it with `certpilot show {pending[0]}`")
        if certificates:
            return f"its certificates are under way; see them with `certpilot show {certificates[0].id}`"
        return "nothing to do"
    return f"nothing: it is {order.state.value}; to order again: `{order_again_command(order)}`"


def _detail(repo: Repository, order: Order, now: datetime, policy: Policy, *, changed: bool = False) -> OrderDetail:
    from certpilot.core.payment import order_expires_at, order_state_at

    state = order_state_at(order.state, order.created_at, now, policy)
    shown = order.model_copy(update={"state": state})
    views = _views(repo, order.id, now, policy)
    ledger = repo.ledger_for_order(order.id)
    return OrderDetail(order=shown, at=now,
                       expires_at=order_expires_at(order.created_at, policy)
                       if state is OrderState.AWAITING_PAYMENT else None,
                       certificates=views, ledger=ledger,
                       charged=sum(e.amount for e in ledger if e.kind is LedgerKind.CHARGE),
                       next_step=_next_step(shown, views), changed=changed)


def list_orders(svc: Services, *, state: OrderState | str | None = None, now: datetime | None = None,
                limit: int | None = 50) -> OrderList:
    """The order book (`certpilot orders`): newest first, optionally one state, at most `limit`.

    Unpaid orders older than `Policy.order_expiry_days` are listed (and counted) as expired, so
    abandoned orders never pile up as "awaiting payment" (`core.payment.order_state_at`).

    Args:
        state: only orders in this state as of `now`.
        now: the listing's time (default the services' clock).
        limit: at most this many orders (None or 0: all).

    Raises:
        BadInputError: an unknown state, or a negative limit.
    """
    from certpilot.core.payment import unpaid_expired_before
    from certpilot.store import order_queries

    if isinstance(state, str) and not isinstance(state, OrderState):
        try:
            state = OrderState(state)
        except ValueError:
            raise BadInputError(f"unknown order state {state!r}; choose one of "
                                f"{', '.join(s.value for s in OrderState)}") from None
    if limit is not None and limit < 0:
        raise BadInputError(f"the limit must be 0 (all) or more, not {limit}")
    now = require_aware(now or svc.now())
    cutoff = unpaid_expired_before(now, svc.policy)
    with svc.session(readonly=True) as s:
        lines = order_queries.list_orders(s, expired_before=cutoff, state=state, limit=limit or None)
        counts = order_queries.count_by_state(s, cutoff)
    return OrderList(at=now, orders=tuple(lines), counts=counts, state=state, expiry_days=svc.policy.order_expiry_days)


def show_order(svc: Services, order_id: str, *, now: datetime | None = None) -> OrderDetail:
    """One order (`certpilot order show`): its state as of `now`, certificates, ledger, next step.

    Raises:
        NotFoundError: no such order (the message names `certpilot orders`).
    """
    now = require_aware(now or svc.now())
    with svc.session(readonly=True) as s:
        repo = Repository(s)
        return _detail(repo, repo.get_order(order_id), now, svc.policy)


def cancel_order(svc: Services, order_id: str, *, now: datetime | None = None, actor: str = "cli") -> OrderDetail:
    """Cancel an unpaid order (`certpilot order cancel`): awaiting payment or expired; nothing was
    debited, so nothing is restored. Cancelling a cancelled order changes nothing (`changed` False).

    Raises:
        NotFoundError: no such order.
        RefusedError: ORDER_PAID (its certificates exist: cancel the not-activated ones instead,
            PL-7, named with their ids) or ORDER_CLOSED (declined); nothing changed.
    """
    from certpilot.core.payment import check_order_cancel

    now = require_aware(now or svc.now())
    with svc.session() as s:
        repo = Repository(s)
        repo.lock_ledger()  # a concurrent `pay` of the same order waits, then finds it cancelled
        order = repo.get_order(order_id)
        refusal = check_order_cancel(order, now, svc.policy, _cancellable(repo, order))
        if refusal is not None:
            raise RefusedError(refusal)
        if order.state is OrderState.CANCELLED:
            return _detail(repo, order, now, svc.policy)
        order = repo.set_order_state(order_id, OrderState.CANCELLED, expected=order.state, actor=actor, now=now,
                                     why="unpaid order cancelled by its owner; nothing was debited")
        return _detail(repo, order, now, svc.policy, changed=True)
