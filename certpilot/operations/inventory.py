"""Use cases of the inventory: list certificates, show one with its lineage and history, and
set a certificate's renewal policy.

Statuses are derived from dates at the time asked (LC-4, `core.status.derive_status`), never
read stale from the database. The Services-level doors (`list_certificates`, `show_certificate`,
`set_policy`) own their transaction; `certificate_views` and `certificate_detail` are their
session-level building blocks (the demo composes them in its own transaction).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from certpilot.core.errors import BadInputError, Reason, RefusedError
from certpilot.core.models import (
    DEFAULT_POLICY,
    Certificate,
    CertType,
    KeyAlgorithm,
    Level,
    Order,
    Origin,
    Policy,
    Status,
)
from certpilot.core.status import DATED_STATES, status_of_remaining
from certpilot.operations.common import require_aware
from certpilot.operations.coverage import coverage_end
from certpilot.store.repository import AuditRecord, Repository
from certpilot.store.tables_pipeline import RenewalPolicyRow

if TYPE_CHECKING:
    from certpilot.runtime import Services

_DAY = timedelta(days=1)

LIVE = frozenset({Status.VALID, Status.EXPIRING_SOON, Status.EXPIRED})
"""Derived statuses of a certificate that exists (issued or uploaded)."""


@dataclass(frozen=True)
class CertificateView:
    """One inventory line: the certificate's identity, its derived status and days left."""

    id: str
    common_name: str
    names: list[str]
    cert_type: CertType
    origin: Origin
    level: Level
    brand: str
    key_algorithm: KeyAlgorithm
    state: Status
    """The stored lifecycle state (LC-5)."""
    status: Status
    """The status at the time asked (LC-4): VALID/EXPIRING_SOON/EXPIRED for live certificates."""
    not_before: datetime | None
    not_after: datetime | None
    days_left: int | None
    parent_id: str | None
    order_id: str | None
    plan_index: int
    serial: str | None
    fingerprint_sha256: str | None
    owner: str | None
    renewal: str | None = None
    """Set when the certificate was renewed (LC-2): ``renewed → <next step>``, the renewal's
    certificate in flight and the command that moves it on (`renewal_marker`)."""

    @classmethod
    def of(cls, cert: Certificate, now: datetime, policy: Policy, renewal: str | None = None) -> CertificateView:
        """The view of `cert` at `now` under `policy` (with its renewal marker, if any)."""
        from certpilot.core.status import days_left, derive_status

        return cls(
            id=cert.id, common_name=cert.common_name, names=list(cert.names), cert_type=cert.cert_type,
            origin=cert.origin, level=cert.level, brand=cert.brand, key_algorithm=cert.key_algorithm,
            state=cert.state, status=derive_status(cert, now, policy),
            not_before=cert.not_before, not_after=cert.not_after,
            days_left=days_left(cert, now) if cert.not_after is not None else None,
            parent_id=cert.parent_id, order_id=cert.order_id, plan_index=cert.plan_index,
            serial=cert.serial, fingerprint_sha256=cert.fingerprint_sha256,
            owner=cert.owner.email if cert.owner else None, renewal=renewal,
        )

    @classmethod
    def of_row(cls, r, now: datetime, window: timedelta, renewal: str | None = None) -> CertificateView:
        """The view of a `store.inventory_queries.VIEW_COLUMNS` row at `now` (no model built):
        the same LC-4 rule as `of` (`core.status.status_of_remaining` on ``not_after - now``).

        Built for 100,000 rows a listing: enum members come from value tables, and the frozen
        instance's fields are set in one step (what the generated ``__init__`` sets one by one).
        """
        (id_, common_name, names, cert_type, origin, level, brand, key_algorithm, state, not_before, not_after,
         parent_id, order_id, plan_index, serial, fingerprint, owner_email) = r
        state = _STATUS[state]
        status, days = state, None
        if not_after is not None:
            left = not_after - now
            days = left // _DAY
            if state in DATED_STATES:
                status = status_of_remaining(left, window)
        view = object.__new__(cls)
        view.__dict__.update(
            id=id_, common_name=common_name, names=list(names), cert_type=_CERT_TYPE[cert_type],
            origin=_ORIGIN[origin], level=_LEVEL[level], brand=brand, key_algorithm=_KEY_ALG[key_algorithm],
            state=state, status=status, not_before=not_before, not_after=not_after, days_left=days,
            parent_id=parent_id, order_id=order_id, plan_index=plan_index, serial=serial,
            fingerprint_sha256=fingerprint, owner=owner_email or None, renewal=renewal,
        )
        return view


_STATUS = {m.value: m for m in Status}
_CERT_TYPE = {m.value: m for m in CertType}
_ORIGIN = {m.value: m for m in Origin}
_LEVEL = {m.value: m for m in Level}
_KEY_ALG = {m.value: m for m in KeyAlgorithm}


def renewal_marker(children: list[Certificate]) -> str | None:
    """``renewed → <next step>`` for a certificate whose renewal certificates are `children`
    (LC-2), or None when it has none left (none, or all cancelled).

    The next step is the renewal's first certificate still in flight, by plan index: a pending
    or rejected application to submit (`certpilot apply ID`), a review to follow, else the
    issued one; a plan whose first certificate waits its managed start says so (PL-4).
    """
    from certpilot.core.eligibility import next_step

    live = sorted((c for c in children if c.state is not Status.CANCELLED), key=lambda c: (c.plan_index, c.id))
    if not live:
        return None
    moving = (Status.PENDING_APPLICATION, Status.REJECTED, Status.UNDER_REVIEW)
    current = next((c for c in live if c.state in moving), None)
    if current is not None:
        return f"renewed → {current.id} {current.state.value}: `{next_step(current)}`"
    issued = [c for c in live if c.state is Status.ISSUED]
    if issued:
        return f"renewed → {issued[0].id} issued: `certpilot show {issued[0].id}`"
    first = live[0]
    return (f"renewed → {first.id} {first.state.value}, starts by itself at its managed start (PL-4): "
            f"`{next_step(first)}`")


@dataclass(frozen=True)
class CertificateDetail:
    """Everything `certpilot show` prints about one certificate."""

    certificate: Certificate
    view: CertificateView
    parent: CertificateView | None
    """The certificate this one renews (LC-2), if any."""
    children: list[CertificateView]
    """The certificates that renew this one (LC-2), by plan index."""
    order: Order | None
    """The order that created this certificate, if any."""
    renewal_orders: list[Order]
    """Orders placed to renew this certificate, oldest first."""
    audit: list[AuditRecord]
    """This certificate's audit trail, oldest first."""
    plan_vs_issued: object | None = None
    """`core.plans.PlanVsIssued`: the window asked of the CA against the one it signed (VA-5), once
    issued as part of a plan; None otherwise."""
    coverage_not_after: datetime | None = None
    """The end of the coverage term of its order (VA-5), when it belongs to one."""


def _filters(now: datetime, policy: Policy, status: Status | None, expiring_within_days: int | None,
             hide_expired: bool) -> list:
    """The SQL clauses of `list`'s filters (`store.inventory_queries`: LC-4 mapped to date ranges)."""
    from certpilot.store import inventory_queries as q

    clauses = []
    if status is not None:
        clauses += q.status_clauses(status, now=now, window=policy.expiry_window)
    if expiring_within_days is not None:
        # Already expired counts as expiring within any horizon: it needs the most attention.
        clauses += q.expiring_clauses(expiring_within_days, now=now, hide_expired=hide_expired)
    return clauses


def _views(session: Session, rows: list, now: datetime, policy: Policy,
           kids: dict[str, list[Certificate]] | None = None) -> list[CertificateView]:
    """The views of one batch of rows, each with its renewal marker (children loaded per batch,
    unless `kids` holds every parent's already)."""
    from certpilot.store.inventory_queries import children_of

    if kids is None:
        kids = children_of(session, (r[0] for r in rows))
    window = policy.expiry_window
    return [CertificateView.of_row(r, now, window, renewal_marker(kids[r[0]]) if r[0] in kids else None)
            for r in rows]


def certificate_views(
    session: Session,
    *,
    now: datetime,
    policy: Policy | None = None,
    status: Status | None = None,
    expiring_within_days: int | None = None,
    hide_expired: bool = False,
    offset: int = 0,
    limit: int | None = None,
) -> list[CertificateView]:
    """The inventory at `now`, soonest expiry first (undated last, then by id); a renewed
    certificate carries its marker. Filtered, sorted and paged in SQL (`store.inventory_queries`).

    Args:
        session: an open store session.
        now: the time statuses are derived at (aware UTC).
        policy: the rules' numbers (expiry window, LC-4); default `DEFAULT_POLICY`.
        status: keep only certificates whose derived status, or stored lifecycle state, is this.
        expiring_within_days: keep only live (issued or uploaded) certificates that expire
            within this many days, those already expired included (they need attention most).
        hide_expired: with `expiring_within_days`, leave the expired ones out.
        offset: skip this many certificates of the answer (paging).
        limit: at most this many certificates (None: all).

    Raises:
        BadInputError: `now` is naive.
    """
    from certpilot.store.inventory_queries import page

    now = require_aware(now)
    policy = policy or DEFAULT_POLICY
    clauses = _filters(now, policy, status, expiring_within_days, hide_expired)
    return _views(session, page(session, clauses, offset=offset, limit=limit), now, policy)


def views_of(session: Session, ids: list[str], *, now: datetime, policy: Policy | None = None
             ) -> list[CertificateView]:
    """The views of certificates `ids` and of their renewal certificates (LC-2), soonest expiry
    first: a known set read by id (the demo's inventory), whatever the inventory's size."""
    from certpilot.store.inventory_queries import rows_of

    now = require_aware(now)
    return _views(session, rows_of(session, ids), now, policy or DEFAULT_POLICY)


def certificate_detail(session: Session, cert_id: str, *, now: datetime, policy: Policy | None = None
                       ) -> CertificateDetail:
    """One certificate with its derived status, lineage (LC-2), order and audit trail.

    Args:
        session: an open store session.
        cert_id: the certificate's id.
        now: the time statuses are derived at (aware UTC).
        policy: the rules' numbers; default `DEFAULT_POLICY`.

    Raises:
        NotFoundError: no certificate has this id.
    """
    now = require_aware(now)
    policy = policy or DEFAULT_POLICY
    repo = Repository(session)
    cert = repo.certificate_model(cert_id)
    parent = repo.certificate_model(cert.parent_id) if cert.parent_id else None
    kids = repo.children(cert_id)
    order = repo.get_order(cert.order_id) if cert.order_id else None
    return CertificateDetail(
        certificate=cert,
        view=CertificateView.of(cert, now, policy, renewal_marker(kids)),
        parent=CertificateView.of(parent, now, policy) if parent else None,
        children=[CertificateView.of(c, now, policy) for c in kids],
        order=order,
        renewal_orders=repo.orders_for_certificate(cert_id),
        audit=repo.audit(cert_id),
        plan_vs_issued=_plan_vs_issued(cert),
        coverage_not_after=coverage_end(order) if order else None,
    )


def _plan_vs_issued(cert: Certificate):
    """The planned window against the issued one, when both are known (VA-5)."""
    from certpilot.core.plans import PlanVsIssued
    from certpilot.core.validity import Window

    if cert.state is not Status.ISSUED or None in (cert.planned_not_before, cert.planned_not_after,
                                                   cert.not_before, cert.not_after):
        return None
    return PlanVsIssued(Window(cert.planned_not_before, cert.planned_not_after), Window(cert.not_before, cert.not_after))


# ---------------------------------------------------------------- Services-level doors


@dataclass(frozen=True)
class Listing:
    """What `certpilot list` shows: the certificates asked for, how many the inventory holds in
    all (to tell an empty inventory from a filter that matched nothing), how many match the
    filters, the page asked for, and which database was read (its URL, password masked)."""

    certificates: tuple[CertificateView, ...]
    total: int
    database: str
    matched: int = 0
    """Certificates matching the filters (all pages)."""
    offset: int = 0
    limit: int | None = None

    @property
    def next_offset(self) -> int | None:
        """The `--offset` of the next page, or None when this page is the last."""
        end = self.offset + len(self.certificates)
        return end if self.limit is not None and end < self.matched else None


@dataclass(frozen=True)
class ListingStream:
    """`Listing` whose certificates are read as they are consumed (`list --json` of a whole
    inventory in bounded memory); valid inside `listing_stream`'s ``with`` only."""

    certificates: Iterator[CertificateView]
    total: int
    matched: int
    database: str


def _database(svc: Services) -> str:
    from sqlalchemy.engine import make_url

    from certpilot.store.db import resolve_url

    return make_url(resolve_url(svc.database_url)).render_as_string(hide_password=True)


def _check_page(offset: int, limit: int | None) -> None:
    if offset < 0 or (limit is not None and limit < 1):
        raise BadInputError(f"a page starts at offset 0 or more and holds 1 or more certificates "
                            f"(offset {offset}, limit {limit})", Reason.BAD_INPUT)


def listing(svc: Services, *, now: datetime | None = None, status: Status | None = None,
            expiring_within_days: int | None = None, hide_expired: bool = False, offset: int = 0,
            limit: int | None = None) -> Listing:
    """The inventory at `now` as `certpilot list` shows it (see `certificate_views`), one page
    of it when `limit` is given, with the inventory's size, the matches and the database read.

    Raises:
        BadInputError: `now` is naive; a negative offset or a limit below 1.
    """
    from certpilot.store import inventory_queries as q

    _check_page(offset, limit)
    now = require_aware(now or svc.now())
    with svc.session(readonly=True) as s:
        views = certificate_views(s, now=now, policy=svc.policy, status=status,
                                  expiring_within_days=expiring_within_days, hide_expired=hide_expired,
                                  offset=offset, limit=limit)
        total = q.count(s)
        clauses = _filters(now, svc.policy, status, expiring_within_days, hide_expired)
        matched = q.count(s, clauses) if clauses else total
    return Listing(certificates=tuple(views), total=total, database=_database(svc), matched=matched,
                   offset=offset, limit=limit)


@contextmanager
def listing_stream(svc: Services, *, now: datetime | None = None, status: Status | None = None,
                   expiring_within_days: int | None = None, hide_expired: bool = False,
                   chunk: int = 2000) -> Iterator[ListingStream]:
    """The whole answer of `listing` (no page), its certificates read `chunk` rows at a time in
    one read-only transaction held open for the ``with`` block.

    Raises:
        BadInputError: `now` is naive.
    """
    from certpilot.store import inventory_queries as q

    now = require_aware(now or svc.now())
    clauses = _filters(now, svc.policy, status, expiring_within_days, hide_expired)
    with svc.session(readonly=True) as s:
        total = q.count(s)
        matched = q.count(s, clauses) if clauses else total

        def views() -> Iterator[CertificateView]:
            # Most of the inventory listed: every renewal's marker in one query, not one per chunk.
            kids = q.all_children(s) if matched * 2 > total else None
            for rows in q.stream(s, clauses, chunk=chunk):
                yield from _views(s, rows, now, svc.policy, kids)

        yield ListingStream(certificates=views(), total=total, matched=matched, database=_database(svc))


def list_certificates(svc: Services, *, now: datetime | None = None, status: Status | None = None,
                      expiring_within_days: int | None = None) -> tuple[CertificateView, ...]:
    """The inventory at `now` (default the services' clock), soonest expiry first (LC-4).

    Args:
        svc: the services (their store and policy).
        now: the time statuses are derived at (aware UTC).
        status: keep only certificates whose derived status, or stored lifecycle state, is this.
        expiring_within_days: keep only live certificates that expire within this many days.

    Raises:
        BadInputError: `now` is naive.
    """
    with svc.session(readonly=True) as s:
        return tuple(certificate_views(s, now=now or svc.now(), policy=svc.policy, status=status,
                                       expiring_within_days=expiring_within_days))


def show_certificate(svc: Services, cert_id: str, *, now: datetime | None = None) -> CertificateDetail:
    """One certificate with its derived status at `now`, lineage (LC-2), order and audit trail.

    Raises:
        NotFoundError: no certificate has this id.
    """
    with svc.session(readonly=True) as s:
        return certificate_detail(s, cert_id, now=now or svc.now(), policy=svc.policy)


@dataclass(frozen=True)
class RenewalSettings:
    """A certificate's renewal policy: does the scanner renew it when due, when, and for how long."""

    certificate_id: str
    auto_renew: bool
    """The scanner hands the certificate to renewal when it is due (otherwise it only warns)."""
    years: int
    """The plan length of automatic renewals (PL-1, PL-2)."""
    default: bool
    """True when nothing was set for this certificate: these are the defaults."""
    start_days: int = 30
    """Automatic renewal starts at this many days left (PL-1/PAY-2; the default avoids the fee)."""
    start_days_set: bool = False
    """True when `start_days` is this certificate's own choice, not `Policy.auto_renew_start_days`."""
    pays_fee: bool = False
    """True when starting at `start_days` adds PAY-2's managed-service fee (more than 30 days left)."""
    validation_method: str | None = None
    """The validation method chosen for it (`certpilot policy ID --validation`), None: automatic (DV-1..DV-4)."""


DEFAULT_RENEWAL = (True, 1)
"""(auto_renew, years) of a certificate whose policy was never set."""


def set_policy(svc: Services, cert_id: str, *, auto_renew: bool | None = None, years: int | None = None,
               start_days: int | None = None, default_start: bool = False,
               validation_method: str | None = None) -> RenewalSettings:
    """Set what is given of a certificate's renewal policy and return the policy in force.

    With nothing given, nothing is written: the current policy (or the defaults, `default` True)
    is returned.

    Args:
        svc: the services (their store).
        cert_id: the certificate.
        auto_renew: renew automatically when due (the scanner), or not.
        years: plan length of automatic renewals: 1, 2 or 3.
        start_days: start automatic renewal at this many days left (PL-1/PAY-2: more than 30 pays
            the managed-service fee); within the expiry window (EL-1).
        default_start: go back to the default start (`Policy.auto_renew_start_days`).
        validation_method: the validation method its next applications use ("auto" for
            `core.validation.choose_method`); see `operations.validation.set_method`.

    Raises:
        NotFoundError: no certificate has this id.
        RefusedError: INVALID_YEARS, a start outside the expiry window, a validation method the
            certificate cannot use (DV-4); nothing written.
    """
    from certpilot.core.plans import check_start_days, check_years

    if years is not None and (refusal := check_years(years)) is not None:
        raise RefusedError(refusal)
    if start_days is not None and (refusal := check_start_days(start_days, svc.policy)) is not None:
        raise RefusedError(refusal)
    changing = any(x is not None for x in (auto_renew, years, start_days, validation_method)) or default_start
    with svc.session(readonly=not changing) as s:
        cert = Repository(s).certificate_model(cert_id)  # NotFoundError names the id
        method = None
        if validation_method is not None:
            from certpilot.operations.validation import checked_method

            method = checked_method(cert, validation_method)
        row = s.get(RenewalPolicyRow, cert_id)
        if changing:
            if row is None:
                row = RenewalPolicyRow(certificate_id=cert_id, auto_renew=DEFAULT_RENEWAL[0], years=DEFAULT_RENEWAL[1])
                s.add(row)
            if auto_renew is not None:
                row.auto_renew = auto_renew
            if years is not None:
                row.years = years
            if start_days is not None or default_start:
                row.start_days = start_days
            if validation_method is not None:
                row.validation_method = method
        return _settings(cert_id, row, svc.policy)


def _settings(cert_id: str, row: RenewalPolicyRow | None, policy: Policy) -> RenewalSettings:
    """The policy in force for `cert_id` from its row (None: every default)."""
    own = row.start_days if row is not None else None
    days = own if own is not None else policy.auto_renew_start_days
    common = {"start_days": days, "start_days_set": own is not None,
              "pays_fee": days > policy.managed_fee_threshold_days,
              "validation_method": row.validation_method if row is not None else None}
    if row is None:
        return RenewalSettings(cert_id, *DEFAULT_RENEWAL, default=True, **common)
    return RenewalSettings(cert_id, auto_renew=row.auto_renew, years=row.years, default=False, **common)
