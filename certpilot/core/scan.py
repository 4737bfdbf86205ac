"""The scanner's decisions over the whole inventory, as one pure pass over named rows.

The scan reads every certificate as a `ScanRow` (a named tuple, no ORM objects) in one query and
asks `decide` what needs action now: managed starts that are due (PL-4), reviews to resume
(CA-2), renewals to open for certificates under automatic renewal, and expiry notices (NT-1).
Its cost is one pass over the rows; the work it produces grows only with what is due: a live
certificate far from every threshold is counted and skipped before any check runs.

Each remaining row goes through `ROW_CHECKS`, an ordered chain of small pure checks in the
cert-manager `policies` style (`certpilot.core.eligibility` uses the same): each check reads a
`RowView` and returns a `Verdict` (this row is its concern: the verdict says what to do, possibly
nothing) or None (not its concern: the next check decides). The first verdict wins.

A certificate is *renewed* when it has a non-cancelled successor that is a child **or the next
certificate of its own order** (so certificate 1 of a 2-year plan is not renewed again while
certificate 2 waits); expiry notices stop only once a successor is live (a pending renewal does
not stop the old certificate from expiring); a certificate whose managed start was already
recorded (PL-8) is never decided again.

After the decision, what the scanner launches is decided here too, from data the flow gathers:
unfinished work (`InFlight`: a pending application, an issued certificate not deployed) whose
claimed run is gone gets a renewal run again (`relaunch_of`, keyed after the dead run), the
automatic renewals due get theirs (`launches`: one per certificate), and a run suspended on a
CA review the CA answered is resumed (`review_resumable`).

The types the scan's tasks return and its flow branches on (`ScanPlan`, `StartOutcome` with its
`StartOutcomeKind`, `ScanSummary`) live here too, so the flow imports no use case; a review
followed is the pipeline's `certpilot.core.outcomes.ReviewOutcome` (one door for the renewal
run and the scan).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from certpilot.core.issuers import RenewalTiming, RenewalWindow, ari_due_at, renewal_due_at, window_fraction
from certpilot.core.models import OrderKind, Origin, Policy, Status, iso_z
from certpilot.core.plans import managed_start_due
from certpilot.core.runs import REVIEW_PAUSE_PREFIX, WorkClaim, relaunch_key, works_on
from certpilot.core.status import status_of_remaining

_DAY = timedelta(days=1)


class ScanRow(NamedTuple):
    """One certificate as the scanner sees it (a row of certificates LEFT JOIN orders LEFT JOIN
    renewal_policies, built by the store's scan query).

    Attributes:
        id: the certificate id.
        common_name: its common name (messages, the inventory table).
        state: its stored lifecycle state (`Status` value).
        origin: `Origin` value (uploaded certificates are replaced by hand, EL-3).
        not_after: its expiry, timezone-aware UTC; None before issuance.
        order_id: the order that produced it, if any.
        order_kind: that order's `OrderKind` value (PL-4's threshold depends on it).
        plan_index: its position in the order's plan, 0 first.
        parent_id: the certificate it renews, if any.
        managed_fee: the order carries PAY-2's managed-service fee (None without an order).
        auto_renew: the certificate is under automatic renewal (its policy, default True).
        start_days: its own automatic-renewal start (days left), or None for the configured
            `RenewalTiming.days_left` (30: PAY-2's fee avoided).
        not_before: its validity start (the lifetime rule of `core.issuers.renewal_due_at`).
        retry_at: its application waits for the CA until then (Retry-After), if it does.
        ari_start, ari_end: the renewal window its CA suggested (ARI, RFC 9773), if one is kept.
    """

    id: str
    common_name: str
    state: str
    origin: str
    not_after: datetime | None
    order_id: str | None
    order_kind: str | None
    plan_index: int
    parent_id: str | None
    managed_fee: bool | None
    auto_renew: bool
    start_days: int | None = None
    not_before: datetime | None = None
    retry_at: datetime | None = None
    ari_start: datetime | None = None
    ari_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class ManagedStart:
    """PL-4: the next certificate of a plan whose application starts now."""

    certificate_id: str
    predecessor_id: str
    order_id: str
    days_left: int
    """Remaining days of the predecessor when the start was decided."""


@dataclass(frozen=True, slots=True)
class ExpiryNotice:
    """NT-1: an owner hears of an expiring certificate once per threshold."""

    certificate_id: str
    common_name: str
    threshold_days: int
    days_left: int


@dataclass(frozen=True, slots=True)
class RenewalDue:
    """A certificate under automatic renewal that is expiring soon and has no renewal yet."""

    certificate_id: str
    common_name: str
    days_left: int
    origin: str
    not_after: datetime | None = None
    """Its expiry (part of the renew launch's idempotency key: one renewal per expiry)."""


@dataclass(frozen=True, slots=True)
class InventoryLine:
    """One line of the scan's inventory table artifact."""

    id: str
    common_name: str
    status: str
    days_left: int | None
    plan: str
    next_action: str


@dataclass
class ScanDecision:
    """Everything one scan must do, decided at `now`."""

    now: datetime
    counts: Counter = field(default_factory=Counter)
    managed_starts: list[ManagedStart] = field(default_factory=list)
    resume_reviews: list[str] = field(default_factory=list)
    resume_applications: list[str] = field(default_factory=list)
    """Pending applications (a managed start recorded, PL-8; a paid order's certificate 1; a
    purchase): the scanner relaunches the renewal run working on it when that run is gone (the
    start itself is never repeated)."""
    renewals_due: list[RenewalDue] = field(default_factory=list)
    notices: list[ExpiryNotice] = field(default_factory=list)
    lines: list[InventoryLine] = field(default_factory=list)

    @property
    def action_count(self) -> int:
        """How many actions this scan produces (what its cost should grow with)."""
        return (len(self.managed_starts) + len(self.resume_reviews) + len(self.resume_applications)
                + len(self.renewals_due) + len(self.notices))


# ------------------------------------------------------------------ what the scan's tasks return


class StartOutcomeKind(StrEnum):
    """What one managed start did (PL-4, PL-5, PL-8)."""

    STARTED = "started"
    """The application started (NOT_ACTIVATED → PENDING_APPLICATION, or PAY-2's already pending)."""
    WAITING_MANUAL = "waiting_manual"
    """PL-5 refused: the certificate waits for a manual submission; the owner was told (NT-2)."""
    ALREADY = "already"
    """Another scan recorded the start first: this call did nothing (PL-8)."""
    SKIPPED = "skipped"
    """The certificate is no longer startable (moved meanwhile): nothing recorded."""


@dataclass(frozen=True, slots=True)
class StartOutcome:
    """The result of one managed start.

    Attributes:
        certificate_id: the certificate.
        kind: what happened.
        detail: the sentence for an operator (PL-5's refusal, why it was skipped...).
        notified: channels that delivered the owner's NT-2 notice (0 when none was due).
    """

    certificate_id: str
    kind: StartOutcomeKind
    detail: str
    notified: int = 0


@dataclass(frozen=True, slots=True)
class RenewalLaunch:
    """One renewal run to launch: the certificate, its plan years, the launch's idempotency key
    and the run's name (the certificate's common name).

    The key makes a launch idempotent: a second scanner, a retry or the next scan launching the
    same key gets the same run (`renewal_key`, `work_key`; after a dead run, `relaunch_key`).
    """

    certificate_id: str
    years: int
    key: str
    name: str = ""


def renewal_key(certificate_id: str, not_after: datetime | None) -> str:
    """The key of an automatic renewal: one renewal per certificate and expiry date."""
    return f"renewal:{certificate_id}:{not_after.date().isoformat() if not_after else ''}"


def work_key(certificate_id: str, order_id: str | None) -> str:
    """The key of a renewal run working on a certificate an order produced (a managed start, a
    purchase, work a dead run left): one run per certificate and order."""
    return f"renewal:{certificate_id}:{order_id or ''}"


class WorkStage(StrEnum):
    """Where unfinished work stands (what a relaunched renewal run goes on with)."""

    APPLICATION = "application"
    """A pending application of a paid order: CSR, validation, submission next."""
    DEPLOYMENT = "deployment"
    """Issued, its deployments unfinished (none planned while the old certificate had targets,
    or some not final): deploy and verify next."""


@dataclass(frozen=True, slots=True)
class InFlight:
    """A certificate whose work is unfinished, with the run that last claimed it.

    Attributes:
        certificate_id: the certificate.
        common_name: its common name (the run's name).
        stage: where its work stands.
        key: the launch key of a run working on it (`work_key`).
        claim: the claim of the run that last worked on it (for a pending certificate never
            claimed itself: the claim on the certificate its order renews, where the renewal run
            started); None when no run ever claimed it.
    """

    certificate_id: str
    common_name: str
    stage: WorkStage
    key: str
    claim: WorkClaim | None = None


def relaunch_of(work: InFlight, claimed_state: str | None) -> RenewalLaunch | None:
    """The launch that resumes unfinished work, or None while its claimed run still works on it.

    Never claimed: a run under the work's own key. Claimed by a run that ended (failed, crashed,
    cancelled, or completed with the work unfinished) or that the API does not know: a fresh run
    keyed after the dead one (`relaunch_key`: two scanners seeing the same dead run start one).
    A run still scheduled, pending, running or suspended keeps its work.

    Args:
        work: the unfinished work and its claim.
        claimed_state: the Prefect state type of the claimed run (None: unknown to the API).
    """
    if work.claim is None:
        return RenewalLaunch(work.certificate_id, 1, work.key, work.common_name)
    if works_on(claimed_state):
        return None
    return RenewalLaunch(work.certificate_id, 1, relaunch_key(work.key, work.claim.flow_run_id), work.common_name)


def launches(due: Sequence[RenewalLaunch], work: Sequence[InFlight],
             claimed_states: Mapping[str, str | None]) -> tuple[RenewalLaunch, ...]:
    """Every renewal run one scan launches, one per certificate: unfinished work whose run is
    gone, then the automatic renewals due (a certificate with unfinished work is not renewed
    again while it is unfinished).

    Args:
        due: automatic renewals due (`ScanPlan.renewals`).
        work: unfinished work with its claims.
        claimed_states: flow run id -> Prefect state type of the claimed runs (absent: unknown).
    """
    chosen: dict[str, RenewalLaunch] = {}
    for w in work:
        launch = relaunch_of(w, claimed_states.get(w.claim.flow_run_id) if w.claim else None)
        if launch is not None and w.certificate_id not in chosen:
            chosen[w.certificate_id] = launch
    busy = {w.certificate_id for w in work}
    for d in due:
        if d.certificate_id not in busy and d.certificate_id not in chosen:
            chosen[d.certificate_id] = d
    return tuple(chosen.values())


def review_resumable(answered: bool, claimed_state: str | None, pause_key: str | None) -> bool:
    """CA-2: resume the claimed run of an application the CA answered (issued or rejected) when
    that run is suspended waiting for the review (its pause key starts with
    `REVIEW_PAUSE_PREFIX`); a run suspended for a human step (payment, manual DNS, CA contact)
    waits for its human."""
    return answered and claimed_state == "PAUSED" and (pause_key or "").startswith(REVIEW_PAUSE_PREFIX)


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """One scan's decision as its flow acts on it: plain values, nothing large, no key material.

    Attributes:
        at: the instant decided at (timezone-aware UTC).
        counts: certificates by status, sorted by status.
        managed_starts: PL-4 starts due (one task each).
        resume_reviews: ids under CA review to poll (CA-2, one task each).
        resume_applications: ids pending application: relaunched when their run is gone.
        renewals: automatic renewals to launch, with their plan years and keys.
        notices: NT-1 expiry notices to send (one task each).
        lines: the inventory table, most urgent first.
    """

    at: datetime
    counts: tuple[tuple[str, int], ...] = ()
    managed_starts: tuple[ManagedStart, ...] = ()
    resume_reviews: tuple[str, ...] = ()
    resume_applications: tuple[str, ...] = ()
    renewals: tuple[RenewalLaunch, ...] = ()
    notices: tuple[ExpiryNotice, ...] = ()
    lines: tuple[InventoryLine, ...] = ()

    @property
    def at_iso(self) -> str:
        """`at` as ISO 8601 UTC ending in ``Z`` (artifacts, the flow's summary)."""
        return iso_z(self.at)

    @property
    def certificates(self) -> int:
        """How many certificates the inventory holds."""
        return sum(n for _, n in self.counts)

    @property
    def action_count(self) -> int:
        """How many task runs and launches the plan asks for (what the scan's cost grows with)."""
        return (len(self.managed_starts) + len(self.resume_reviews) + len(self.resume_applications)
                + len(self.renewals) + len(self.notices))


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """One item of a scan that failed; the scan went on with the others.

    Attributes:
        certificate_id: the certificate concerned ("" for a step over many certificates).
        action: what failed (a managed start, a review poll, a notice, a launch...).
        error: the error's sentence (never key material: errors quote ids and names only).
    """

    certificate_id: str
    action: str
    error: str


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """What one scan did (the flow's result and the summary artifact's rows).

    Attributes:
        at: the instant decided at, ISO 8601 UTC.
        certificates: how many certificates the inventory holds.
        managed_starts: PL-4 starts decided; `started`, `waiting_manual`, `already`, `skipped`:
            how they ended (`StartOutcomeKind`).
        reviews: CA reviews polled (CA-2); `issued`: of those, issued now; `resumed`: suspended
            renewal runs resumed because the CA answered.
        renewals: automatic renewals due; `relaunched`: unfinished work whose run was gone.
        launched: renewal runs launched (both kinds); how they ended here: `completed`,
            `suspended` (waiting for a human or a review), `failed`; `elsewhere`: a live run
            already had the work, or a renewal-batch run on a worker will do it.
        notices: NT-1 expiry notices sent by this scan.
        errors: items that failed (`problems` says which and why); the rest went on.
        task_runs: task runs the scan created (what its cost grows with).
        problems: the failed items.
    """

    at: str
    certificates: int
    managed_starts: int = 0
    started: int = 0
    waiting_manual: int = 0
    already: int = 0
    skipped: int = 0
    reviews: int = 0
    issued: int = 0
    resumed: int = 0
    renewals: int = 0
    relaunched: int = 0
    launched: int = 0
    completed: int = 0
    suspended: int = 0
    failed: int = 0
    elsewhere: int = 0
    notices: int = 0
    errors: int = 0
    task_runs: int = 0
    problems: tuple[ScanProblem, ...] = ()
    probed: int = 0
    """Endpoints the fleet probe checked (every endpoint of every target)."""
    fleet_findings: int = 0
    """Of those, endpoints with a finding (drift, broken chain, expiring, unreachable)."""
    fleet_told: int = 0
    """Findings told by this scan (new ones: each is told once)."""

    def rows(self) -> tuple[tuple[str, int], ...]:
        """(action, count) for every counter, in field order (the summary artifact's table)."""
        return tuple((name, getattr(self, name)) for name in self.__slots__
                     if name not in ("at", "certificates", "problems"))


def plan_from(decision: ScanDecision, years: Mapping[str, int]) -> ScanPlan:
    """The flow's plan from a decision and the plan years chosen per renewal (default 1)."""
    return ScanPlan(
        at=decision.now,
        counts=tuple(sorted(decision.counts.items())),
        managed_starts=tuple(decision.managed_starts),
        resume_reviews=tuple(decision.resume_reviews),
        resume_applications=tuple(decision.resume_applications),
        renewals=tuple(RenewalLaunch(r.certificate_id, years.get(r.certificate_id, 1),
                                     renewal_key(r.certificate_id, r.not_after), r.common_name)
                       for r in decision.renewals_due),
        notices=tuple(decision.notices),
        lines=tuple(decision.lines),
    )


# ------------------------------------------------------------------ the decision: a chain of checks

_LIVE = frozenset({Status.ISSUED.value, Status.UPLOADED.value})
_CANCELLED = Status.CANCELLED.value
_NOT_ACTIVATED = Status.NOT_ACTIVATED.value
_PENDING = Status.PENDING_APPLICATION.value
_UNDER_REVIEW = Status.UNDER_REVIEW.value
_EXPIRED = Status.EXPIRED.value
_EXPIRING = Status.EXPIRING_SOON.value
_VALID = Status.VALID.value
_UPLOADED_ORIGIN = Origin.UPLOADED.value
_EMERGENCY = OrderKind.EMERGENCY.value
_KINDS = {k.value: k for k in OrderKind}


@dataclass(frozen=True, slots=True)
class ScanContext:
    """What every check reads besides its row: the time, the policy, and the inventory's indexes.

    Attributes:
        now: the instant decided at.
        policy: windows and thresholds (LC-4, PL-4, NT-1).
        notice_days: NT-1's thresholds, ascending.
        horizon: the largest notice threshold (days): nothing is noticed earlier.
        window: LC-4's expiry window.
        by_id: every row by certificate id.
        siblings: rows of an order by (order id, plan index).
        children: certificate id -> states of its non-cancelled children (its renewals).
        started: certificate id -> outcome of its managed start already recorded (PL-8).
        notices_sent: (certificate id, threshold) pairs already notified (NT-1).
    """

    now: datetime
    policy: Policy
    notice_days: tuple[int, ...]
    horizon: int
    window: timedelta
    by_id: Mapping[str, ScanRow]
    siblings: Mapping[tuple[str, int], ScanRow]
    children: Mapping[str, list[str]]
    started: Mapping[str, str]
    notices_sent: Collection[tuple[str, int]]
    timing: RenewalTiming = RenewalTiming()


class RowView(NamedTuple):
    """One row as the checks see it: the row, its status at `ctx.now` (LC-4) and its whole days
    left (None without an expiry or for a state that is not dated)."""

    row: ScanRow
    status: str
    days_left: int | None
    ctx: ScanContext


class Verdict(NamedTuple):
    """What one certificate needs at this scan (a named tuple: one is built per row in attention).

    Attributes:
        action: the inventory table's next action ("" when there is nothing to do).
        managed_start: PL-4's start, when due.
        resume_review: poll its CA review (CA-2).
        resume_application: a pending application: relaunch its renewal run if that is gone.
        renewal: an automatic renewal to open.
        notice: an expiry notice to send (NT-1).
    """

    action: str = ""
    managed_start: ManagedStart | None = None
    resume_review: bool = False
    resume_application: bool = False
    renewal: RenewalDue | None = None
    notice: ExpiryNotice | None = None


NOTHING = Verdict()
"""This row is the check's concern and needs nothing now (stops the chain)."""

RowCheck = Callable[[RowView], Verdict | None]


def notice_threshold(days_left: int, notice_days: tuple[int, ...]) -> int | None:
    """NT-1: the notice threshold crossed at `days_left` (the smallest configured day count
    still at or above it), or None when no threshold is crossed yet.

    A certificate first seen with 5 days left gets the 7-day notice, then the 3-day one, then
    the 1-day one: each threshold once, the ones skipped over are not sent late.
    """
    crossed = [d for d in notice_days if days_left <= d]
    return min(crossed) if crossed else None


def _managed_candidate(row: ScanRow) -> bool:
    """PL-4/PAY-2: a not-activated certificate, or certificate 1 of an order carrying the fee."""
    return row.state == _NOT_ACTIVATED or (row.state == _PENDING and row.plan_index == 0 and bool(row.managed_fee))


def _predecessor(v: RowView) -> ScanRow | None:
    """The order's previous certificate; for certificate 1, the certificate it renews."""
    r = v.row
    if r.plan_index > 0:
        return v.ctx.siblings.get((r.order_id or "", r.plan_index - 1))
    return v.ctx.by_id.get(r.parent_id or "")


def managed_start_recorded(v: RowView) -> Verdict | None:
    """PL-8/PL-5: a managed start already recorded is never decided again; one that left its
    certificate pending gets its renewal run relaunched if that run is gone."""
    if not _managed_candidate(v.row):
        return None
    outcome = v.ctx.started.get(v.row.id)
    if outcome is None:
        return None
    if outcome == StartOutcomeKind.WAITING_MANUAL:
        return Verdict("waiting for a manual submission (PL-5)")
    resume = outcome == StartOutcomeKind.STARTED and v.row.state == _PENDING
    return Verdict("managed start done (PL-8)", resume_application=resume)


def managed_start_now(v: RowView) -> Verdict | None:
    """PL-4/PAY-2: the next certificate starts when its predecessor, ISSUED or UPLOADED, has at
    most the order kind's threshold left (`plans.managed_start_due`: 30 days for renewals and
    emergencies, 15 for purchases; also once it expired). A predecessor not issued yet starts
    nothing; either way no later check applies to a candidate."""
    r = v.row
    if not _managed_candidate(r):
        return None
    pred = _predecessor(v)
    if pred is None or pred.state not in _LIVE or pred.not_after is None:
        return NOTHING
    kind = _KINDS.get(r.order_kind or "", OrderKind.RENEWAL)
    if managed_start_due(pred.not_after, kind, v.ctx.now, v.ctx.policy) is not None:
        return NOTHING
    days = (pred.not_after - v.ctx.now) // _DAY
    return Verdict("managed start due (PL-4)", managed_start=ManagedStart(r.id, pred.id, r.order_id or "", days))


def waiting_for_ca(v: RowView) -> Verdict | None:
    """The CA asked not to be asked before a time (Retry-After): its application is left alone
    until then, by the scanner too; from then on it is resumed like any pending one."""
    r = v.row
    if r.retry_at is not None and v.ctx.now < r.retry_at and r.state in (_PENDING, _UNDER_REVIEW):
        return Verdict(f"waits for the CA until {r.retry_at:%Y-%m-%d %H:%M}Z (Retry-After)")
    return None


def started_application(v: RowView) -> Verdict | None:
    """PL-8: a pending certificate a managed start moved on: its renewal run is relaunched if gone."""
    if v.row.state == _PENDING and v.ctx.started.get(v.row.id) == StartOutcomeKind.STARTED:
        return Verdict("application started by a managed start (PL-4)", resume_application=True)
    return None


def pending_application(v: RowView) -> Verdict | None:
    """A pending application a paid order left (a renewal's certificate 1, a purchase, work a
    dead run left): the scanner makes sure a renewal run works on it (a live claimed run keeps
    it). An emergency's temporary certificate is left to the emergency's own run, and one whose
    managed start could not start by itself (PL-5) to the human it waits for."""
    r = v.row
    if (r.state == _PENDING and r.order_id is not None and r.order_kind != _EMERGENCY
            and v.ctx.started.get(r.id) != StartOutcomeKind.WAITING_MANUAL):
        return Verdict("application pending (a renewal run works on it)", resume_application=True)
    return None


def under_review(v: RowView) -> Verdict | None:
    """CA-2: an application under review is polled once per scan (no worker waits on it)."""
    if v.row.state == _UNDER_REVIEW:
        return Verdict("follow CA review (CA-2)", resume_review=True)
    return None


def _successor_states(v: RowView) -> list[str]:
    """States of the certificate's non-cancelled successors: its children and the next
    certificate of its own order."""
    states = list(v.ctx.children.get(v.row.id, ()))
    if v.row.order_id is not None:
        nxt = v.ctx.siblings.get((v.row.order_id, v.row.plan_index + 1))
        if nxt is not None and nxt.state != _CANCELLED:
            states.append(nxt.state)
    return states


def renewal_start_days(row: ScanRow, policy: Policy) -> int:
    """PL-1/PAY-2: days left at which the certificate's automatic renewal starts: its own policy's,
    else the default (30, no managed-service fee)."""
    return row.start_days if row.start_days is not None else policy.auto_renew_start_days


def _renewal_due(v: RowView) -> RenewalDue | None:
    """An expiring-soon certificate under automatic renewal (not an uploaded one: EL-3 replaces
    it by hand) opens its renewal once its due point is reached (`_due_point`: 30 days left by
    default, PAY-2's fee avoided; earlier by its own policy; later for a short lifetime; inside its
    CA's ARI window); the caller has checked that it has no successor."""
    r = v.row
    if v.status != _EXPIRING or not r.auto_renew or r.origin == _UPLOADED_ORIGIN or v.days_left is None:
        return None
    if v.ctx.now < _due_point(r, v.ctx):
        return None  # a short certificate is not due from its first day; the CA's window (ARI) overrides
    return RenewalDue(r.id, r.common_name, v.days_left, r.origin, r.not_after)


def _due_point(r: ScanRow, ctx: ScanContext) -> datetime:
    """When `r` is due: inside its CA's renewal window when one is kept (ARI; a window already
    over: now), else the later of its start point and a third of its lifetime left
    (`core.issuers.renewal_due_at`). The start point is the certificate's own policy's
    (`policy --start-days`, PL-1/PAY-2) or the configured `[renewal_timing] days_left` (30, where
    PAY-2 adds no fee); without a validity start, the start point alone."""
    if r.ari_start is not None and r.ari_end is not None:
        return ari_due_at(RenewalWindow(r.ari_start, r.ari_end), ctx.now, fraction=window_fraction(r.id))
    if r.not_after is None:
        return ctx.now
    timing = ctx.timing if r.start_days is None else replace(ctx.timing, days_left=r.start_days)
    if r.not_before is not None:
        return renewal_due_at(r.not_before, r.not_after, timing)
    return r.not_after - timedelta(days=timing.days_left)


def _expiry_notice(v: RowView) -> ExpiryNotice | None:
    """NT-1: the threshold just crossed, unless expired or that threshold's notice went out."""
    if v.days_left is None or v.days_left > v.ctx.horizon or v.status == _EXPIRED:
        return None
    threshold = notice_threshold(v.days_left, v.ctx.notice_days)
    if threshold is None or (v.row.id, threshold) in v.ctx.notices_sent:
        return None
    return ExpiryNotice(v.row.id, v.row.common_name, threshold, v.days_left)


def _fallback_action(v: RowView) -> str:
    """What an operator does about an expiring or expired certificate nothing else handles."""
    if v.status == _EXPIRING:
        return "renew (certpilot renew)" if v.row.origin != _UPLOADED_ORIGIN else "replace (upload)"
    if v.status == _EXPIRED:
        return "emergency replacement (EM-1)"
    return ""


def near_expiry(v: RowView) -> Verdict | None:
    """LC-4/NT-1: a live certificate expiring soon, expired, or within the notice horizon.

    With a successor it is renewed (live successor) or being renewed; without one, under
    automatic renewal, its renewal is due. Its expiry notice goes out until a successor is live
    (a pending successor does not stop the old certificate from expiring).
    """
    if v.days_left is None or (v.status == _VALID and v.days_left > v.ctx.horizon):
        return None
    successors = _successor_states(v)
    renewed = any(s in _LIVE for s in successors)
    renewal = None if successors else _renewal_due(v)
    notice = None if renewed else _expiry_notice(v)
    if successors:
        action = "renewed (successor live)" if renewed else "renewal in progress"
    elif renewal is not None:
        action = "renew (automatic renewal)"
    elif notice is not None:
        action = f"expiry notice ({notice.threshold_days} days, NT-1)"
    elif v.status == _EXPIRING and v.row.auto_renew and v.row.origin != _UPLOADED_ORIGIN and v.row.not_after:
        days = renewal_start_days(v.row, v.ctx.policy)
        action = (f"automatic renewal starts {_due_point(v.row, v.ctx).date().isoformat()} ({days} days left"
                  + (", no managed-service fee, PAY-2)" if days <= v.ctx.policy.managed_fee_threshold_days
                     else ", with the managed-service fee, PAY-2)"))
    else:
        action = _fallback_action(v)
    return Verdict(action, renewal=renewal, notice=notice)


ROW_CHECKS: tuple[RowCheck, ...] = (managed_start_recorded, managed_start_now, waiting_for_ca, started_application,
                                    pending_application, under_review, near_expiry)
"""The scanner's chain, in order: the first check that returns a verdict decides the row."""


def first_verdict(chain: Iterable[RowCheck], v: RowView) -> Verdict:
    """Run an ordered chain of checks; the first verdict, or `NOTHING` when none applies."""
    for check in chain:
        verdict = check(v)
        if verdict is not None:
            return verdict
    return NOTHING


def scan_context(rows: Sequence[ScanRow], now: datetime, policy: Policy, *,
                 notices_sent: Collection[tuple[str, int]] = frozenset(),
                 managed_started: Mapping[str, str] | None = None,
                 timing: RenewalTiming = RenewalTiming()) -> ScanContext:
    """Index the rows once for the checks: by id, plan siblings, non-cancelled children."""
    by_id: dict[str, ScanRow] = {}
    siblings: dict[tuple[str, int], ScanRow] = {}
    children: dict[str, list[str]] = {}
    for r in rows:
        by_id[r.id] = r
        if r.order_id is not None:
            siblings[(r.order_id, r.plan_index)] = r
        if r.parent_id is not None and r.state != _CANCELLED:
            children.setdefault(r.parent_id, []).append(r.state)
    notice_days = tuple(sorted(policy.notice_days))
    return ScanContext(now=now, policy=policy, notice_days=notice_days, horizon=max(notice_days, default=0),
                       window=policy.expiry_window, by_id=by_id, siblings=siblings, children=children, started=managed_started or {},
                       notices_sent=notices_sent, timing=timing)


def row_view(row: ScanRow, ctx: ScanContext) -> RowView:
    """The row with its LC-4 status and whole days left at `ctx.now`.

    The rows are already UTC, so the remaining time is computed once and handed to LC-4's one
    rule (`status_of_remaining`), without `status_at`'s per-row conversions.
    """
    if row.state not in _LIVE or row.not_after is None:
        return RowView(row, row.state, None, ctx)
    left = row.not_after - ctx.now
    return RowView(row, status_of_remaining(left, ctx.window).value, left // _DAY, ctx)


def _record(decision: ScanDecision, v: RowView, verdict: Verdict) -> None:
    """Add one row's verdict to the decision (and its table line when it needs attention)."""
    r = v.row
    if verdict.managed_start is not None:
        decision.managed_starts.append(verdict.managed_start)
    if verdict.resume_review:
        decision.resume_reviews.append(r.id)
    if verdict.resume_application:
        decision.resume_applications.append(r.id)
    if verdict.renewal is not None:
        decision.renewals_due.append(verdict.renewal)
    if verdict.notice is not None:
        decision.notices.append(verdict.notice)
    if verdict.action or v.status in (_EXPIRING, _EXPIRED):
        plan = f"{r.order_kind} #{r.plan_index + 1}" if r.order_id else "-"
        decision.lines.append(InventoryLine(r.id, r.common_name, v.status, v.days_left, plan, verdict.action or "-"))


def _named(rows: Sequence[ScanRow] | Sequence[tuple]) -> Sequence[ScanRow]:
    """The rows as `ScanRow`s (plain tuples in field order are converted)."""
    if set(map(type, rows)) <= {ScanRow}:  # the store's rows: no copy
        return rows  # type: ignore[return-value]
    return [r if type(r) is ScanRow else ScanRow(*r) for r in rows]  # a shorter tuple takes the defaults


def decide(
    rows: Sequence[ScanRow] | Sequence[tuple],
    now: datetime,
    policy: Policy,
    *,
    notices_sent: Collection[tuple[str, int]] = frozenset(),
    table_limit: int = 500,
    managed_started: Mapping[str, str] | None = None,
    timing: RenewalTiming = RenewalTiming(),
) -> ScanDecision:
    """Decide one scan over every certificate: `ROW_CHECKS` on each row that may need action.

    A live certificate whose expiry is beyond both LC-4's window and the largest notice threshold
    is counted VALID and skipped (the bulk of a large inventory). Every other row gets its status
    (LC-4) and the chain's first verdict: a recorded managed start (PL-8), a managed start due
    (PL-4/PAY-2), a pending application to relaunch, a review to follow (CA-2), or what a
    certificate near expiry needs (renewal, NT-1 notice, the operator's next step).

    Args:
        rows: every certificate as a `ScanRow` (a plain tuple in its field order is converted).
        now: the time the scan decides at (timezone-aware UTC).
        policy: windows and thresholds (LC-4, PL-4, NT-1).
        notices_sent: (certificate id, threshold) pairs already notified (NT-1: once each).
        table_limit: at most this many lines for the inventory table, most urgent first.
        managed_started: certificate id -> outcome of its managed start already recorded
            ("started" or "waiting_manual"); those are never decided again (PL-8).
        timing: when a certificate is due (`core.issuers.renewal_due_at`; its CA's ARI window
            overrides it).

    Returns:
        The decision: counts by status, managed starts due (PL-4), reviews to resume (CA-2),
        renewals due under automatic renewal, expiry notices to send (NT-1), table lines.
    """
    rows = _named(rows)
    ctx = scan_context(rows, now, policy, notices_sent=notices_sent, managed_started=managed_started, timing=timing)
    decision = ScanDecision(now=now)
    counts = decision.counts
    # Beyond this no status changes and no notice is due: counted without a check.
    quiet_after = now + max(policy.expiry_window, timedelta(days=ctx.horizon + 1))
    for row in rows:
        not_after = row.not_after
        if not_after is not None and not_after > quiet_after and row.state in _LIVE:
            counts[_VALID] += 1
            continue
        view = row_view(row, ctx)
        counts[view.status] += 1
        _record(decision, view, first_verdict(ROW_CHECKS, view))
    decision.lines.sort(key=lambda line: (line.days_left if line.days_left is not None else 10**9,
                                          line.common_name))
    del decision.lines[table_limit:]
    return decision
