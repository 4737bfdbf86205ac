"""Plans and managed services (PL-1..PL-7, PAY-2, with VA-1..VA-5 for the expected windows). Pure.

A plan is what an order will produce: one one-year certificate per year (never one long
certificate, VA-4), the managed services that start the later ones by themselves, and the
expected validity window of each.

How `plan_order` lays the certificates out (threshold T = `Policy.managed_start_days[kind]`,
30 for renewals and emergencies, 15 for purchases):

1. Certificate 1 (PENDING_APPLICATION, PL-3).
   - Purchase / emergency: issued now, ``now .. now + 365 d`` (VA-3).
   - Renewal of an official certificate expiring at A: if more than
     `Policy.managed_fee_threshold_days` (30) are left, PAY-2 applies: the order carries a
     managed-service fee (``managed_fee=True``) and certificate 1's request starts by itself once
     T days remain, so it is expected at ``A - T`` and ends ``A + 365 d`` (VA-2). Within the last
     30 days there is no fee: certificate 1 is issued now and ends ``A + 365 d`` (VA-1/VA-2; after
     A, ``now + 365 d``).
2. Certificate k+1 (NOT_ACTIVATED, PL-3) is started by a managed service when certificate k has
   T days left (PL-4) and, as a renewal of certificate k, carries those days over (PL-6,
   VA-1/VA-2): for T <= 30 it ends exactly 365 days after certificate k.
3. VA-5: each certificate is cut to the CA/B maximum in force on its own expected issue date
   (publicly trusted only). When a cut leaves part of its year uncovered, reissue certificates
   (``reissue=True``, NOT_ACTIVATED) follow, each started by the same managed-start mechanism
   when its predecessor has T days left and cut again, until the year's end is reached. Reissues
   cost no quota and no managed-service credit.

Managed services (`Plan.managed_services`): ``years - 1`` for PL-2 (1 → 0, 2 → 1, 3 → 2),
**plus one** when ``managed_fee`` is True (PAY-2: the service that starts certificate 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from certpilot.core.errors import BadInputError, Reason, Refusal, RefusedError
from certpilot.core.models import (
    Contact,
    LedgerKind,
    Level,
    OrderKind,
    Origin,
    PlannedCertificate,
    Policy,
    Spec,
    Status,
    utc,
)
from certpilot.core.validation import missing_contact
from certpilot.core.validity import (
    CabfSchedule,
    Window,
    cap_validity,
    coverage_term,
    fresh_validity,
    renewed_validity,
)

YEARS = (1, 2, 3)
"""PL-1/PL-2: the plan lengths offered."""


@dataclass(frozen=True)
class Plan:
    """What an order produces (see the module docstring for how it is laid out).

    Attributes:
        certificates: the planned certificates in issue order, index 0 first.
        managed_services: managed-service credits the order needs (PL-2 plus PAY-2's fee).
        managed_fee: True when PAY-2's managed-service fee applies (renewing with > 30 days left).
        coverage: the coverage term (VA-5) the certificates cover together.
        reissues: how many of `certificates` are VA-5 reissues (no quota, no credit).
    """

    certificates: list[PlannedCertificate] = field(default_factory=list)
    managed_services: int = 0
    managed_fee: bool = False
    coverage: Window | None = None
    reissues: int = 0

    @property
    def yearly(self) -> int:
        """Certificates that consume a quota (all but the reissues)."""
        return len(self.certificates) - self.reissues


def check_years(years: int) -> Refusal | None:
    """PL-1/PL-2: plans are 1, 2 or 3 years; refusal INVALID_YEARS otherwise."""
    if years in YEARS:
        return None
    return Refusal(Reason.INVALID_YEARS, f"a plan of {years} year(s) is not offered; choose 1, 2 or 3 years "
                                         "(longer coverage is several one-year certificates, VA-4)", "PL-2")


def start_threshold(kind: OrderKind, policy: Policy) -> timedelta:
    """PL-4: remaining validity at which the next certificate of an order of `kind` starts."""
    return timedelta(days=policy.managed_start_days.get(kind, 30))


def plan_order(kind: OrderKind, *, years: int, now: datetime, policy: Policy, schedule: CabfSchedule,
               old_not_after: datetime | None = None, publicly_trusted: bool = True) -> Plan:
    """PL-1..PL-3, PL-6, VA-1..VA-5, PAY-2: the certificates an order will produce and when.

    Args:
        kind: renewal (carry-over from `old_not_after`), purchase or emergency (VA-3). An uploaded
            certificate's replacement is planned as a purchase (VA-3: no carry-over).
        years: 1, 2 or 3.
        now: when the order is placed.
        policy: validity, carry-over, thresholds, fee threshold.
        schedule: the CA/B maximum validity by issue date (VA-5).
        old_not_after: the renewed certificate's expiry (renewals only).
        publicly_trusted: False for private-CA certificates (no VA-5 cap, no reissues).

    Returns:
        A `Plan`; see the module docstring for the exact layout.

    Raises:
        RefusedError: `years` is not 1, 2 or 3 (INVALID_YEARS).
        BadInputError: a renewal without `old_not_after`.
        ValueError: the schedule allows no more days than the managed-start threshold (reissues
            would never advance).
    """
    refusal = check_years(years)
    if refusal is not None:
        raise RefusedError(refusal)
    now = utc(now)
    threshold = start_threshold(kind, policy)
    fee = False
    if kind is OrderKind.RENEWAL:
        if old_not_after is None:
            raise BadInputError("a renewal plan needs the renewed certificate's expiry date", Reason.BAD_INPUT)
        a = utc(old_not_after)
        fee = a - now > timedelta(days=policy.managed_fee_threshold_days)
        first = renewed_validity(a, a - threshold if fee else now, policy)
    else:
        a = None
        first = fresh_validity(now, policy)

    # The uncapped yearly certificates: k+1 starts T before k ends and carries over (PL-4, PL-6).
    yearly = [first]
    for _ in range(1, years):
        prev = yearly[-1].not_after
        yearly.append(renewed_validity(prev, prev - threshold, policy))

    certs: list[PlannedCertificate] = []
    for year in yearly:
        window = cap_validity(year, schedule, publicly_trusted)
        certs.append(_planned(len(certs), window, reissue=False))
        while window.not_after < year.not_after:  # VA-5 cut it short: reissue until the year is covered
            start = window.not_after - threshold
            if timedelta(days=schedule.max_days(start)) <= threshold:
                raise ValueError(f"the CA/B maximum of {schedule.max_days(start)} days on {start.date()} does "
                                 f"not exceed the managed-start threshold of {threshold.days} days")
            window = cap_validity(Window(start, year.not_after), schedule, publicly_trusted)
            certs.append(_planned(len(certs), window, reissue=True))

    return Plan(
        certificates=certs,
        managed_services=(years - 1) + (1 if fee else 0),
        managed_fee=fee,
        coverage=coverage_term(kind, first.not_before, a, years, policy),
        reissues=sum(1 for c in certs if c.reissue),
    )


def _planned(index: int, window: Window, *, reissue: bool) -> PlannedCertificate:
    # PL-3: the first is pending application, every later one waits its turn.
    state = Status.PENDING_APPLICATION if index == 0 else Status.NOT_ACTIVATED
    return PlannedCertificate(index=index, state=state, not_before=window.not_before,
                              not_after=window.not_after, reissue=reissue)


def managed_start_due(current_not_after: datetime, kind: OrderKind, now: datetime, policy: Policy) -> Refusal | None:
    """PL-4: is the managed start of the next certificate due?

    Due when the current certificate's remaining validity is at most the threshold of the order's
    kind (``current_not_after - now <= T``; also when it has already expired).

    Returns:
        None when due, else a `Refusal` (MANAGED_NOT_DUE, rule "PL-4") saying when it will be due.
    """
    t = start_threshold(kind, policy)
    due_at = utc(current_not_after) - t
    if utc(now) >= due_at:
        return None
    return Refusal(Reason.MANAGED_NOT_DUE,
                   f"the next certificate starts by itself on {due_at.isoformat()}, when the current one (expiring "
                   f"{utc(current_not_after).isoformat()}) has {t.days} days left; nothing to do until then",
                   "PL-4")


def auto_renew_due(not_after: datetime, now: datetime, *, start_days: int) -> bool:
    """PL-1/PAY-2: is the automatic renewal of a certificate expiring at `not_after` due at `now`?

    Due once at most `start_days` days are left (``now >= not_after - start_days``). The default
    point, `Policy.auto_renew_start_days` (30), is the one where PAY-2 adds no managed-service fee;
    a certificate's own policy may start earlier (and pay it). Kept a small pure predicate so that
    other due rules (e.g. a fraction of a short lifetime) combine with it by ``or``/``min``.
    """
    return utc(now) >= utc(not_after) - timedelta(days=start_days)


def check_start_days(start_days: int, policy: Policy) -> Refusal | None:
    """PL-1/PAY-2/EL-1: a certificate's automatic-renewal start must lie within the expiry window
    (only an expiring-soon certificate can be renewed, EL-1a); refusal BAD_INPUT otherwise."""
    if 1 <= start_days <= policy.expiry_window_days:
        return None
    return Refusal(Reason.BAD_INPUT,
                   f"automatic renewal can start 1 to {policy.expiry_window_days} days before expiry (a certificate "
                   f"is renewable once expiring soon, EL-1), not {start_days}; the default, "
                   f"{policy.auto_renew_start_days}, avoids the managed-service fee (PAY-2)", "PL-1")


def check_managed_credit(credits_left: int) -> Refusal | None:
    """PL-4: a managed start consumes one managed-service credit of the order; refuse when none is left."""
    if credits_left > 0:
        return None
    return Refusal(Reason.NO_MANAGED_CREDIT, "the order has no managed-service credit left for this certificate; "
                                             "submit its application manually or add a managed service", "PL-4")


@dataclass(frozen=True)
class AutoStartInput:
    """What PL-5 needs to decide whether a managed start can go ahead without a human.

    Attributes:
        level: validation level of the certificate.
        names: its names (for the messages).
        dns_writable: a configured DNS provider holds the zone of every name (DV-2).
        delegated: a validation-free authorization (delegation) exists for every name.
        application_valid: the application data passed its checks.
        problems: what is wrong with the application data when it did not.
        contact: the contact the CA verifies with (OV/EV need one, DV-6).
    """

    level: Level
    names: list[str]
    dns_writable: bool
    delegated: bool
    application_valid: bool
    problems: list[str] = field(default_factory=list)
    contact: Contact | None = None


def may_start_itself(i: AutoStartInput) -> Refusal | None:
    """PL-5: can this certificate's application start automatically?

    Checks, in order: domain validation needs no human (the DNS is writable by the system or a
    delegation exists; every level validates the domain, OV/EV included); the application data is
    valid; OV and EV have a contact with name, email and phone (DV-6).

    Returns:
        None when it can; else a `Refusal` (DNS_NOT_WRITABLE, APPLICATION_INVALID or
        CONTACT_REQUIRED, rule "PL-5") saying what to do; the certificate waits for a manual
        submission.
    """
    names = ", ".join(i.names) or "(no names)"
    if not (i.dns_writable or i.delegated):
        return Refusal(Reason.DNS_NOT_WRITABLE,
                       f"the application for {names} cannot start by itself: no configured DNS provider holds the "
                       "zone and no delegation exists; configure a DNS provider for the zone or a delegation of "
                       "_acme-challenge, or submit the application manually", "PL-5")
    if not i.application_valid:
        listed = "; ".join(i.problems) or "the application data did not pass its checks"
        return Refusal(Reason.APPLICATION_INVALID,
                       f"the application for {names} cannot start by itself: {listed}; fix the application "
                       "data or submit it manually", "PL-5")
    missing = missing_contact(i.level, i.contact)  # DV-6: the one contact rule (core.validation)
    if missing:
        return Refusal(Reason.CONTACT_REQUIRED,
                       f"the {i.level.value} application for {names} cannot start by itself: the contact has no "
                       f"{', '.join(missing)}; the CA calls or mails the contact to verify (DV-6), so add them",
                       "PL-5")
    return None


_NOT_CANCELLABLE_NEXT = {
    Status.PENDING_APPLICATION: ("submit its application instead", "certpilot apply {id}"),
    Status.REJECTED: ("fix what the CA asked and submit it again", "certpilot apply {id}"),
}
"""What to do with a certificate that cannot be cancelled, by state (default: look at it)."""


def check_cancel(state: Status, certificate_id: str | None = None) -> Refusal | None:
    """PL-7: only a not-activated certificate can be cancelled; refusal NOT_CANCELLABLE otherwise,
    naming the command to run instead when the certificate's id is given (EL-5)."""
    if state is Status.NOT_ACTIVATED:
        return None
    instead = ""
    if certificate_id is not None:
        what, command = _NOT_CANCELLABLE_NEXT.get(state, ("see where it stands", "certpilot show {id}"))
        instead = f"; {what}: `{command.format(id=certificate_id)}`"
    return Refusal(Reason.NOT_CANCELLABLE,
                   f"a certificate in state {state.value} cannot be cancelled; only not-activated certificates "
                   "(later certificates of a multi-year plan) can, which restores their quota and managed "
                   f"service{instead}", "PL-7")


def cancel_refund(spec: Spec, *, reissue: bool = False,
                  origin: Origin = Origin.OFFICIAL) -> list[tuple[LedgerKind, str | None, int]]:
    """PL-7: the ledger movements a cancellation makes: one quota of `spec` and one managed credit back.

    Only what was paid comes back: a VA-5 reissue consumed neither (nothing); a private-CA
    certificate (EL-4) comes from certpilot's own CA, which sells no quota, but its plan paid the
    managed service that would have started it (PL-2: ``years - 1``), so that credit comes back.

    Returns:
        ``[(QUOTA, spec.key, +1), (MANAGED, None, +1)]``; ``[(MANAGED, None, +1)]`` for a private-CA
        certificate; ``[]`` for a reissue.
    """
    if reissue:
        return []
    if origin is Origin.PRIVATE_CA:
        return [(LedgerKind.MANAGED, None, 1)]
    return [(LedgerKind.QUOTA, spec.key, 1), (LedgerKind.MANAGED, None, 1)]


def shortened_coverage(coverage_end: datetime, yearly_cancelled: int, policy: Policy) -> datetime:
    """PL-7/VA-5: the coverage term after cancelling `yearly_cancelled` paid years at the plan's end:
    365 days less per year given back, so no reissue is ever started for a year that was refunded."""
    return utc(coverage_end) - timedelta(days=policy.standard_validity_days) * yearly_cancelled


def after_cancel(kept: str | None, kept_not_after: datetime | None, auto_renew: bool) -> str:
    """PL-7: what happens to a plan after a cancellation, in one sentence for the operator.

    The plan is shortened at its end (`cancel_scope`): the earlier certificates keep working, and
    the quota and credit of the cancelled years come back (the next certificate does not start).
    When the plan's last remaining certificate nears its end, automatic renewal (when on) places a
    new order, paid from the restored quota first (PAY-1).
    """
    if kept is None:
        return "the plan has no certificate left"
    until = f" (valid until {utc(kept_not_after).isoformat()})" if kept_not_after else ""
    then = ("automatic renewal places a new order when it nears its end, paid from the restored quota first (PAY-1)"
            if auto_renew else f"renew it when it nears its end (`certpilot renew {kept}`)")
    return (f"the plan now ends with {kept}{until}; the cancelled years' quota and managed credit came back "
            f"instead of their certificates starting (PL-7); {then}")


def submits_first_now(managed_fee: bool) -> bool:
    """PL-1/PAY-2: whether the renewal that just ordered should submit its first certificate now.

    Ordered with more than 30 days left, the order carries PAY-2's managed service: the first
    request starts by itself once 30 days remain (PL-4), so not now. Otherwise the renewal the
    operator asked for *is* PL-1's hand submission, and stage 2 follows at once.
    """
    return not managed_fee


@dataclass(frozen=True)
class PlanMember:
    """One certificate of an order's plan, as `cancel_scope` needs it."""

    index: int
    certificate_id: str
    state: Status
    reissue: bool


def cancel_scope(target: str, members: list[PlanMember]) -> list[str] | Refusal:
    """PL-7 with VA-5 and PL-4: which certificates cancelling `target` cancels, or why it may not.

    The certificates of a plan follow one another (each started when its predecessor has T days
    left, PL-4), so a plan can only be shortened at its end, never holed in the middle:

    - A yearly certificate (not activated) is cancelled together with every later certificate of
      the plan — its own VA-5 reissues and the later years, which would otherwise start after a
      gap. Each yearly one restores its quota and credit (`cancel_refund`), reissues nothing.
    - A VA-5 reissue alone is refused (NOT_CANCELLABLE, VA-5): it completes a year already paid,
      restores nothing, and cancelling it would leave the rest of that year uncovered before the
      next certificate starts. The refusal names the next yearly certificate, which can be
      cancelled (with its follow-ups) instead.

    Args:
        target: the certificate to cancel.
        members: every certificate of its order.

    Returns:
        The ids to cancel, `target` first, then by plan index; or a `Refusal`.
    """
    ordered = sorted(members, key=lambda m: m.index)
    me = next(m for m in ordered if m.certificate_id == target)
    refusal = check_cancel(me.state, me.certificate_id)
    if refusal is not None:
        return refusal
    later = [m for m in ordered if m.index > me.index]
    if me.reissue:
        following = next((m for m in later if not m.reissue and m.state is Status.NOT_ACTIVATED), None)
        instead = (f"to shorten the plan, cancel the next year's certificate instead: `certpilot cancel "
                   f"{following.certificate_id}` (its follow-ups are cancelled with it)" if following
                   else "it is the plan's last certificate: keep it, it covers days already paid for")
        return Refusal(Reason.NOT_CANCELLABLE,
                       f"{target} is a reissue that completes a year already paid for (VA-5): it cost no quota or "
                       f"credit, so cancelling it restores nothing and would leave the rest of that year uncovered; "
                       f"{instead}", "VA-5")
    blocking = [m for m in later if m.state not in (Status.NOT_ACTIVATED, Status.CANCELLED)]
    if blocking:
        return Refusal(Reason.NOT_CANCELLABLE,
                       f"{target} cannot be cancelled: {blocking[0].certificate_id}, later in the same plan, is already "
                       f"{blocking[0].state.value}, and cancelling {target} would leave a gap before it", "PL-7")
    return [target] + [m.certificate_id for m in later if m.state is Status.NOT_ACTIVATED]


# ------------------------------------------------------------------ the coverage term as the contract


def year_ends(coverage_end: datetime, years: int, policy: Policy) -> list[datetime]:
    """VA-5/PL-2: the end of each paid year of a plan whose coverage term ends at `coverage_end`:
    ``coverage_end - 365 d × (years - k)`` for k = 1..years (the last is `coverage_end`)."""
    year = timedelta(days=policy.standard_validity_days)
    end = utc(coverage_end)
    return [end - year * (years - k) for k in range(1, years + 1)]


def successor_window(pred_not_after: datetime, issued_at: datetime, *, coverage_end: datetime, years: int,
                     policy: Policy, schedule: CabfSchedule, publicly_trusted: bool = True) -> Window | None:
    """VA-1/VA-2/VA-5: the window of the next certificate of a plan, computed from its predecessor's
    REAL expiry (what the CA signed), not from the plan made at order time.

    The plan's year ends (`year_ends`) are the contract. The next certificate ends at the first
    year end after both its predecessor's real expiry and its own issue time: the end of the year
    its predecessor fell short of (a VA-5 reissue: the CA or the CA/B cap signed less), or, when the
    predecessor reached its year's end A, the next year's end, ``A + 365 d`` (VA-2's fixed expiry;
    inside the last 30 days the carry-over is exactly ``A - t``). It starts at its issue time and is
    cut to the CA/B maximum in force on that date (VA-5, publicly trusted only). Times are whole
    seconds (what an X.509 certificate holds), so a CA that signs the window signs it exactly.

    Args:
        pred_not_after: the predecessor's real expiry (for certificate 1 of a renewal: the renewed
            certificate's).
        issued_at: when the next certificate is issued (its submission).
        coverage_end: the end of the plan's coverage term (VA-5).
        years: the plan's years (PL-2).
        policy, schedule: the year length; the CA/B maximum by date.
        publicly_trusted: False for a private CA (no VA-5 cap).

    Returns:
        The window, or None when the predecessor already covers the term (nothing more to issue).
    """
    pred, t = utc(pred_not_after), utc(issued_at).replace(microsecond=0)
    end = utc(coverage_end)
    if pred >= end or t >= end:
        return None
    floor = max(pred, t)
    target = next(e for e in year_ends(end, years, policy) if e > floor)
    return cap_validity(Window(t, target.replace(microsecond=0)), schedule, publicly_trusted)


def expected_successor(pred_not_after: datetime, kind: OrderKind, *, coverage_end: datetime, years: int,
                       policy: Policy, schedule: CabfSchedule, publicly_trusted: bool = True) -> Window | None:
    """PL-4 with `successor_window`: the window the next certificate is expected to get, started by
    its managed start when the predecessor has T days left (``pred_not_after - T``); None when the
    predecessor already covers the term."""
    start = utc(pred_not_after) - start_threshold(kind, policy)
    return successor_window(pred_not_after, start, coverage_end=coverage_end, years=years, policy=policy,
                            schedule=schedule, publicly_trusted=publicly_trusted)


@dataclass(frozen=True)
class PlanVsIssued:
    """What the CA signed against what the plan asked for one certificate (shown by `certpilot show`).

    Attributes:
        planned: the window asked of the CA at submission.
        issued: the window the CA signed.
        short_seconds: how much earlier than planned the issued certificate ends (0 when it ends on
            time or later); the plan's successors cover the difference (VA-5).
    """

    planned: Window
    issued: Window

    @property
    def short_seconds(self) -> int:
        """Seconds the issued certificate ends before the planned end (never negative)."""
        return max(0, int((self.planned.not_after - self.issued.not_after).total_seconds()))

    @property
    def exact(self) -> bool:
        """True when the CA signed exactly the planned window (to the second)."""
        return self.planned == self.issued

    def describe(self) -> str:
        """One line for an operator: exact, or how many days short and what covers them."""
        if self.exact:
            return "issued exactly as planned"
        if self.short_seconds:
            days = self.short_seconds / 86400
            return (f"the CA signed {days:.1f} days less than planned (ends {self.issued.not_after.isoformat()} "
                    f"instead of {self.planned.not_after.isoformat()}); the plan's next certificate covers "
                    "the rest of the term (VA-5)")
        return (f"the CA signed {self.issued} instead of {self.planned}; the term is covered")
