"""Stage 2 of a renewal (LC-3): key and CSR, submission to the CA, review wait, collection.

The building blocks of stage 2; the Services-level doors the tasks call are in
`operations.pipeline`. Two kinds:

- session-level steps (`create_key_and_csr`, `record_order`, `record_rejection`, `record_chain`,
  `status`, `resubmit`, `application_state`) work in the caller's transaction and never commit it;
- the CA-facing sequences (`submit`, `refresh`, `collect`) take a session *factory* and run each
  step in a short transaction of their own, calling the CA between two transactions, never inside
  one (SQLite writers would queue behind a transaction held across network I/O). The caller owns
  those transactions by choosing the factory (`Services.session` in the doors).

Each is re-entrant from the database: table `ca_applications` (one row per certificate) says how
far the application got. The CA order reference is committed (its own transaction) before any
challenge is answered, so a crash and a rerun resume the same CA order instead of opening a second
one.

Keys: a generated key goes straight into the vault; these functions return key ids and
fingerprints, never key material (CSR-5).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from certpilot.adapters.issuers.base import Application, IssuedChain, Issuer, OrderStatus, PollResult
from certpilot.core.errors import (
    BadInputError,
    PermanentError,
    Reason,
    Refusal,
    RefusedError,
    TransientError,
    Warning_,
)
from certpilot.core.lifecycle import may_apply
from certpilot.core.models import Certificate, Contact, CsrMode, KeyAlgorithm, Level, Status, ValidationMethod
from certpilot.core.outcomes import ApplicationState, ApplicationStatus
from certpilot.core.validation import contact_refusal
from certpilot.core.validity import Window
from certpilot.crypto.csr import build_csr, canonical_name, check_csr, csr_public_fingerprint
from certpilot.crypto.keys import generate_key, open_key, public_fingerprint, store_key
from certpilot.crypto.pem import fingerprint
from certpilot.operations import coverage
from certpilot.operations.coverage import Rules
from certpilot.store.repository import Repository
from certpilot.store.tables import CertificateRow
from certpilot.store.tables_issuance import CaApplicationRow

KEY_NOT_ROTATED = "key-not-rotated"
KEY_NOT_HELD = "key-not-held"

Sessions = Callable[[], AbstractContextManager[Session]]
"""A factory of transactions: each call opens one (commit on success, rollback on error), e.g.
`Services.session` or `store.db.session_scope` bound to a database URL."""


@dataclass(frozen=True)
class KeyAndCsr:
    """What `create_key_and_csr` made: ids and fingerprints only (CSR-5)."""

    certificate_id: str
    key_id: str | None
    public_fingerprint: str
    mode: CsrMode
    key_held: bool
    warnings: tuple[Warning_, ...] = ()


@dataclass(frozen=True)
class SubmitResult:
    """Where an application stands after `submit`: the CA order reference and its state.

    `retry_at` is set when the CA said "not before" (Retry-After longer than a worker waits):
    nothing more is asked of the CA until then; the scanner resumes the application.
    """

    certificate_id: str
    order_ref: str
    status: OrderStatus
    detail: str = ""
    resumed: bool = False
    warnings: tuple[Warning_, ...] = field(default_factory=tuple)
    retry_at: datetime | None = None


SUBMIT_MARKER_STALE = timedelta(minutes=5)
"""A "submitting" marker older than this belongs to a run that died between committing it and
recording the CA's order: the next run recovers (finds the order, or places it again with the
same idempotency token). A younger one is a live run placing the order: wait."""


@dataclass(frozen=True)
class Rejection:
    """A rejection by the CA as `record_rejection` recorded it (CA-2): what the owner hears of.

    Attributes:
        certificate_id: the certificate, now REJECTED.
        order_ref: the CA order that was rejected.
        detail: the CA's words.
        ordinal: which rejection of this certificate it is (1 for the first; an application
            resubmitted after a fix and rejected again is the next): one notice per ordinal.
        at: when it was recorded.
    """

    certificate_id: str
    order_ref: str
    detail: str
    ordinal: int
    at: datetime
    more_info: bool = False
    """The CA asked for more information rather than refusing (CA-2): told as such."""


OnRejected = Callable[[Session, Rejection], None]
"""Called in the transaction that records a rejection (to record and send the owner's notice
with it: an exception rolls the rejection back)."""


def _application_row(session: Session, certificate_id: str) -> CaApplicationRow | None:
    return session.scalars(select(CaApplicationRow).where(CaApplicationRow.certificate_id == certificate_id)).first()


def _require_application(session: Session, certificate_id: str) -> CaApplicationRow:
    row = _application_row(session, certificate_id)
    if row is None:
        raise BadInputError(f"certificate {certificate_id} has no CSR yet; create its key and CSR first "
                            "(create_key_and_csr).", Reason.NOT_FOUND)
    return row


def _original(repo: Repository, cert: CertificateRow) -> CertificateRow:
    """The certificate this one renews (its parent), else itself (a fresh purchase)."""
    return repo.get_certificate(cert.parent_id) if cert.parent_id else cert


def create_key_and_csr(session: Session, certificate_id: str, mode: CsrMode = CsrMode.SYSTEM, *,
                       vault, now: datetime, csr_pem: bytes | None = None,
                       actor: str = "system") -> KeyAndCsr:
    """Make the certificate's key (or take the supplied CSR) and its CSR, checked (CSR-1..CSR-5).

    Args:
        session: the caller's transaction.
        certificate_id: the new certificate (its parent is the original for CSR-1's algorithm).
        mode: SYSTEM (new key, same algorithm as the original: CSR-1), MANUAL (the supplied
            `csr_pem`, CSR-2), REUSE (the original's key, flagged: CSR-3).
        vault: the `KeyVault` keys are sealed into.
        now: the time recorded.
        csr_pem: the user's CSR for MANUAL.
        actor: who asks, for the audit log.

    Returns:
        `KeyAndCsr` with the key id and public fingerprint; idempotent (an existing CSR is returned).

    Raises:
        RefusedError: CSR_INVALID / CSR_NAMES / CSR_ALGORITHM for a CSR that fails its check
            (CSR-2, CSR-4); KEY_NOT_HELD for REUSE when the original's key is not held.
        BadInputError: MANUAL without a CSR.
    """
    repo = Repository(session)
    cert = repo.get_certificate(certificate_id)
    existing = _application_row(session, certificate_id)
    if existing is not None:
        return KeyAndCsr(certificate_id, cert.key_id, csr_public_fingerprint(existing.csr_pem.encode()),
                         CsrMode(existing.csr_mode), cert.key_held,
                         tuple(_warning(code) for code in existing.warnings))
    original = _original(repo, cert)
    alg = KeyAlgorithm(original.key_algorithm)
    names = list(cert.names)
    mode = CsrMode(mode)
    warnings: list[Warning_] = []
    key_id: str | None
    if mode is CsrMode.MANUAL:
        if not csr_pem and cert.order_id and cert.plan_index == 0:
            kept = repo.order_csr(cert.order_id)  # CSR-2: the CSR given when the renewal was ordered
            csr_pem = kept.encode() if kept else None
        if not csr_pem:
            raise BadInputError(f"certificate {certificate_id} is applied for with a manual CSR (CSR-2/CSR-3: its "
                                "plan's mode) and none was given; supply it: `certpilot apply "
                                f"{certificate_id} --csr manual --csr-file CSR.pem`, or let certpilot generate the "
                                f"key: `certpilot apply {certificate_id} --csr system`.", Reason.BAD_INPUT)
        csr = csr_pem
        key_id, key_held = None, False
        warnings.append(_warning(KEY_NOT_HELD))
    elif mode is CsrMode.REUSE:
        if not original.key_id:
            raise RefusedError(Refusal(Reason.KEY_NOT_HELD,
                                       f"the original certificate {original.id} has no key held by certpilot, so it "
                                       "cannot be reused; generate a new key (system mode) or supply a CSR.", "CSR-3"))
        _alg, fp = repo.key_info(original.key_id)
        key = open_key(original.key_id, fp, vault=vault, repo=repo)
        csr = build_csr(key, names)
        del key
        key_id, key_held = original.key_id, True
        warnings.append(_warning(KEY_NOT_ROTATED))
    else:
        key = generate_key(alg)
        key_id, _fp = store_key(key, vault=vault, repo=repo)
        csr = build_csr(key, names)
        del key
        key_held = True
    # CSR-4: every CSR, the system's too, is checked before anything is sent.
    refusal = check_csr(csr, names, alg)
    if refusal is not None:
        raise RefusedError(refusal)
    fp = csr_public_fingerprint(csr)
    repo.update_certificate(certificate_id, now=now, key_id=key_id, key_held=key_held, key_algorithm=alg)
    session.add(CaApplicationRow(id=str(uuid.uuid4()), certificate_id=certificate_id, issuer=None,
                                 csr_mode=mode.value, csr_pem=csr.decode(), order_url=None,
                                 state=ApplicationState.CSR_READY.value, attempts=0, last_error=None,
                                 warnings=[w.code for w in warnings], created_at=now, updated_at=now))
    repo.record_audit("certificate", certificate_id, actor=actor, now=now,
                      why=f"key and CSR created ({mode.value}; key {fp[:16]}…"
                          + (f"; {', '.join(w.code for w in warnings)}" if warnings else "") + ")")
    session.flush()
    return KeyAndCsr(certificate_id, key_id, fp, mode, key_held, tuple(warnings))


def _warning(code: str) -> Warning_:
    if code == KEY_NOT_ROTATED:
        return Warning_(KEY_NOT_ROTATED, "the original key is reused: this does not follow key-rotation "
                                         "practice and some compliance regimes forbid it (CSR-3).")
    if code == KEY_NOT_HELD:
        return Warning_(KEY_NOT_HELD, "key not held: cannot deploy to managed targets; the certificate must "
                                      "be installed by hand with your own key (CSR-2).")
    return Warning_(code, code)


def _application(cert: CertificateRow, row: CaApplicationRow, window: Window | None = None, *,
                 parent_leaf: str = "") -> Application:
    contact = None
    if cert.owner_email:
        contact = Contact(name=cert.owner_name or "", email=cert.owner_email, phone=cert.owner_phone or "")
    return Application(names=tuple(cert.names), csr_pem=row.csr_pem.encode(),
                       method=ValidationMethod(cert.validation_method), level=Level(cert.level),
                       contact=contact, certificate_id=cert.id,
                       not_before=window.not_before if window else None, not_after=window.not_after if window else None,
                       token=row.submit_token or "", replaces_pem=parent_leaf)


def _parent_leaf(session: Session, cert: CertificateRow) -> str:
    """The leaf PEM of the certificate this one replaces (ARI's `replaces`), "" when none."""
    if not cert.parent_id:
        return ""
    parent = session.get(CertificateRow, cert.parent_id)
    return (parent.leaf_pem or "") if parent is not None else ""


@dataclass(frozen=True)
class _Found:
    """What `submit` read in its first transaction: the application as sent, its order if placed,
    or the final answer when the CA already gave one."""

    application: Application
    order_ref: str | None
    warnings: tuple[Warning_, ...]
    done: SubmitResult | None = None
    retry_at: datetime | None = None
    token: str = ""
    recovering: bool = False


def _locked_application(session: Session, certificate_id: str) -> CaApplicationRow:
    """The application row, locked for this transaction on PostgreSQL (`SELECT ... FOR UPDATE`):
    two concurrent `submit`s of one certificate take turns, so only one places a CA order.
    SQLite serialises writers already (BEGIN IMMEDIATE)."""
    row = session.scalars(select(CaApplicationRow).where(CaApplicationRow.certificate_id == certificate_id)
                          .with_for_update()).first()
    if row is None:
        return _require_application(session, certificate_id)
    return row


def _find(session: Session, certificate_id: str, *, now: datetime | None = None, rules: Rules | None = None,
          publicly_trusted: bool = True) -> _Found:
    """Read the application (locked); DV-6 is checked before a first order (RefusedError:
    nothing placed). Before a first order, with `rules`, the plan's window is computed and
    recorded for it (`coverage.plan_submission`: VA-1/VA-2/VA-5 from the predecessor's real
    expiry), and the "submitting" marker is committed with this transaction (`now` given): a run
    that finds a fresh marker of another waits (TransientError), one that finds a stale marker
    recovers that attempt."""
    cert = Repository(session).get_certificate(certificate_id)
    row = _locked_application(session, certificate_id)
    window = None
    if row.order_url is None and row.state not in (ApplicationState.COLLECTED, ApplicationState.REJECTED) \
            and rules is not None and now is not None:
        window = coverage.plan_submission(session, certificate_id, now=now, rules=rules,
                                          publicly_trusted=publicly_trusted)
    app = _application(cert, row, window, parent_leaf=_parent_leaf(session, cert))
    warnings = tuple(_warning(c) for c in row.warnings)
    ref = row.order_url
    if row.state == ApplicationState.COLLECTED:
        return _Found(app, ref, warnings, SubmitResult(certificate_id, ref or "", OrderStatus.VALID, resumed=True,
                                                       warnings=warnings))
    if row.state == ApplicationState.REJECTED:
        return _Found(app, ref, warnings, SubmitResult(certificate_id, ref or "", OrderStatus.INVALID,
                                                       row.last_error or "", resumed=True, warnings=warnings))
    if row.retry_at is not None and (now is None or now < row.retry_at):
        return _Found(app, ref, warnings, retry_at=row.retry_at)  # the CA said "not before"
    if ref is None:
        refusal = contact_refusal(Level(cert.level), app.contact)
        if refusal is not None:
            raise RefusedError(refusal)
        if now is not None:
            return _mark_submitting(session, row, app, warnings, now)
    return _Found(app, ref, warnings)


def _claimant(session: Session, certificate_id: str) -> str:
    """The flow run that holds the certificate's work claim now ("" when none does)."""
    from certpilot.store.tables_runs import WorkClaimRow

    claim = session.get(WorkClaimRow, certificate_id)
    return claim.flow_run_id if claim is not None else ""


def _mark_submitting(session: Session, row: CaApplicationRow, app: Application, warnings: tuple[Warning_, ...],
                     now: datetime) -> _Found:
    """Commit the "submitting" marker (with the application's idempotency token and the run that
    holds the work claim) before the CA is asked for an order.

    A marker left by a run that no longer holds the claim (superseded: it died, and the scanner
    relaunched the work) or older than `SUBMIT_MARKER_STALE` is recovered: the same token is
    used again, so an issuer that dedupes or finds orders by it returns that order.

    Raises:
        TransientError: a fresh marker of the run that still holds the claim: it is placing the
            order now.
    """
    owner = _claimant(session, row.certificate_id)
    recovering = False
    if row.submitting_at is not None:
        superseded = (row.submit_owner or "") != owner
        if not superseded and now - row.submitting_at < SUBMIT_MARKER_STALE:
            wait = (row.submitting_at + SUBMIT_MARKER_STALE - now).total_seconds()
            raise TransientError(f"another run is placing the CA order of certificate {row.certificate_id} "
                                 f"(since {row.submitting_at:%H:%M:%S}); this one resumes it afterwards",
                                 retry_after=min(wait, 30.0))
        recovering = True  # its run died before recording an order: recover that attempt
    token = row.submit_token if recovering and row.submit_token else uuid.uuid4().hex
    row.submitting_at, row.submit_token, row.submit_owner, row.updated_at = now, token, owner, now
    return _Found(replace(app, token=token), None, warnings, token=token, recovering=recovering)


def _clear_marker(sessions: Sessions, certificate_id: str) -> None:
    """The CA placed no order (it answered with an error, or could not be reached): drop the marker."""
    with sessions() as s:
        row = _require_application(s, certificate_id)
        if row.order_url is None:
            row.submitting_at = None


def park(sessions: Sessions, certificate_id: str, at: datetime, why: str, *, now: datetime,
         actor: str = "system") -> None:
    """Record that the CA may not be asked again before `at` (its Retry-After): the scanner
    resumes the application then; no worker sleeps through it. Audited."""
    with sessions() as s:
        row = _require_application(s, certificate_id)
        row.retry_at, row.retry_reason, row.updated_at = at, why, now
        if row.order_url is None:
            row.submitting_at = None
        Repository(s).record_audit("certificate", certificate_id, actor=actor, now=now,
                                   why=f"the CA asked to wait: retry at {at:%Y-%m-%d %H:%M:%S}Z ({why})")


def unpark(session: Session, certificate_id: str) -> None:
    """Forget a "retry at" (a fallback issuer takes the application instead)."""
    row = _require_application(session, certificate_id)
    row.retry_at = row.retry_reason = None


def retry_at_of(session: Session, certificate_id: str) -> datetime | None:
    """When the CA may be asked again about this application (None: any time)."""
    row = _application_row(session, certificate_id)
    return row.retry_at if row is not None else None


def record_order(session: Session, certificate_id: str, issuer_name: str, ref: str, *, now: datetime,
                 actor: str = "system") -> tuple[str, bool]:
    """Record the CA order just placed; the certificate goes PENDING_APPLICATION → UNDER_REVIEW.

    Commit this before any challenge is answered: a rerun resumes this order (re-entrancy).

    Returns:
        (the order to follow, resumed): when a concurrent run recorded its order first, that one
        (resumed=True) and `ref` is left unused.
    """
    row = _require_application(session, certificate_id)
    if row.order_url is not None:
        return row.order_url, True
    row.order_url, row.issuer, row.state = ref, issuer_name, ApplicationState.ORDERED.value
    row.submitting_at = None
    row.attempts += 1
    row.updated_at = now
    repo = Repository(session)
    if Status(repo.get_certificate(certificate_id).state) is Status.PENDING_APPLICATION:
        repo.set_state(certificate_id, Status.UNDER_REVIEW, actor=actor, now=now,
                       why=f"submitted to {issuer_name}: order {ref}")
    session.flush()
    return ref, False


def submit(sessions: Sessions, certificate_id: str, issuer: Issuer, *, now: datetime, actor: str = "system",
           drive: bool = True, on_rejected: OnRejected | None = None, rules: Rules | None = None,
           issuer_ref: str | None = None, park_after: float | None = None) -> SubmitResult:
    """Submit the application to the CA, or resume the order already placed; drive it forward.

    Steps, each in its own short transaction from `sessions`, the CA called only between them:
    read the application (row-locked on PostgreSQL, DV-6 checked) and commit the "submitting"
    marker with its idempotency token → place the order (first time only; a stale marker left
    by a dead run is recovered: `find_order` where the issuer has it, else the order is placed
    with the same token) → record its reference (`record_order`, committed before any challenge
    is answered: a crash after it and a rerun resume the same order) → with `drive`, the
    issuer's `advance` validates and finalizes → record the answer: VALID is collected (state
    ISSUED), INVALID marks the certificate REJECTED with the CA's detail in the audit (CA-2;
    `on_rejected` is called in that transaction). A PENDING result (an OV/EV review) leaves it
    UNDER_REVIEW: the scanner calls `refresh`.

    A CA answer with a Retry-After longer than `park_after` seconds is recorded as "retry at"
    (`park`) and returned (`retry_at` set): nothing is asked of the CA before then, by this or
    any later call; the scanner resumes it.

    Args:
        sessions: opens each step's transaction.
        on_rejected: told of a rejection this call recorded (not of one recorded before).
        rules: the policy and CA/B schedule: with them, a certificate of a plan asks the CA for
            its planned window (`coverage.plan_submission`) and, once issued, the plan keeps its
            term covered (`coverage.after_issue`). Without them the CA signs its default.
        issuer_ref: the configured reference recorded with the order (default the issuer's name).
        park_after: the longest Retry-After waited in a worker (default
            `core.issuers.PARK_AFTER_SECONDS`).

    Raises:
        RefusedError: CONTACT_REQUIRED (DV-6), or the issuer's own refusals (DV-4, DV-7) —
            nothing was placed at the CA.
        TransientError: retry later; the rerun resumes the same order.
    """
    with sessions() as s:
        found = _find(s, certificate_id, now=now, rules=rules, publicly_trusted=issuer.publicly_trusted)
    if found.done is not None:
        return found.done
    if found.retry_at is not None:
        return SubmitResult(certificate_id, found.order_ref or "", OrderStatus.PENDING, "the CA asked to wait",
                            resumed=found.order_ref is not None, warnings=found.warnings, retry_at=found.retry_at)
    ref, resumed = found.order_ref, found.order_ref is not None
    try:
        if ref is None:
            placed = _place(sessions, certificate_id, issuer, found)
            with sessions() as s:
                ref, resumed = record_order(s, certificate_id, issuer_ref or issuer.name, placed, now=now, actor=actor)
        if not drive:
            return SubmitResult(certificate_id, ref, OrderStatus.PENDING, resumed=resumed, warnings=found.warnings)
        try:
            result = issuer.advance(ref, found.application)
        except PermanentError as exc:
            result = PollResult(OrderStatus.INVALID, exc.message)
    except TransientError as exc:
        parked = _park_if_long(sessions, certificate_id, exc, now=now, actor=actor, park_after=park_after)
        if parked is None:
            raise
        return SubmitResult(certificate_id, ref or "", OrderStatus.PENDING, exc.message, resumed,
                            found.warnings, retry_at=parked)
    _settle(sessions, certificate_id, issuer, result, now=now, actor=actor, on_rejected=on_rejected, rules=rules)
    return SubmitResult(certificate_id, ref, result.status, result.detail, resumed, found.warnings)


def _place(sessions: Sessions, certificate_id: str, issuer: Issuer, found: _Found) -> str:
    """Ask the CA for the order (or find the one a dead run placed); the marker is dropped when
    the CA placed nothing (it answered an error or was unreachable)."""
    finder = getattr(issuer, "find_order", None)
    if found.recovering and finder is not None:
        existing = finder(found.application)
        if existing:
            return existing
    try:
        return issuer.submit(found.application)
    except (TransientError, PermanentError, RefusedError):
        _clear_marker(sessions, certificate_id)
        raise


def _park_if_long(sessions: Sessions, certificate_id: str, exc: TransientError, *, now: datetime, actor: str,
                  park_after: float | None) -> datetime | None:
    """Park the application when the CA's Retry-After is longer than a worker waits; when parked."""
    from certpilot.core.issuers import PARK_AFTER_SECONDS, retry_decision

    decision = retry_decision(now, exc.retry_after, exc.message,
                              PARK_AFTER_SECONDS if park_after is None else park_after)
    if not decision.park:
        return None
    park(sessions, certificate_id, decision.at, decision.reason, now=now, actor=actor)
    return decision.at


def _settle(sessions: Sessions, certificate_id: str, issuer: Issuer, result: PollResult, *, now: datetime,
            actor: str, on_rejected: OnRejected | None, rules: Rules | None = None) -> None:
    """Record the CA's final answer: REJECTED (and `on_rejected`, same transaction), or VALID
    then collected. Any other status changes nothing."""
    if result.status is OrderStatus.INVALID:
        with sessions() as s:
            rejection = record_rejection(s, certificate_id, result.detail, now=now, actor=actor,
                                         more_info=result.more_info)
            if rejection is not None and on_rejected is not None:
                on_rejected(s, rejection)
    elif result.status is OrderStatus.VALID:
        with sessions() as s:
            row = _require_application(s, certificate_id)
            if row.state == ApplicationState.ORDERED:
                row.state, row.updated_at = ApplicationState.VALID.value, now
        collect(sessions, certificate_id, issuer, now=now, actor=actor, rules=rules)


def record_rejection(session: Session, certificate_id: str, detail: str, *, now: datetime,
                     actor: str = "system", more_info: bool = False) -> Rejection | None:
    """CA-2: the CA rejected the application: the certificate goes REJECTED, the CA's detail kept
    on the application and in the audit.

    Returns:
        The `Rejection` recorded, or None when the CA's answer was recorded already (a concurrent
        or earlier run): the owner was told then.
    """
    row = _require_application(session, certificate_id)
    if row.state in (ApplicationState.REJECTED, ApplicationState.COLLECTED):
        return None
    row.state, row.last_error, row.updated_at = ApplicationState.REJECTED.value, detail, now
    repo = Repository(session)
    repo.set_state(certificate_id, Status.REJECTED, actor=actor, now=now,
                   why=(f"the CA needs more information (CA-2): {detail}" if more_info
                        else f"the CA rejected the application: {detail}"))
    session.flush()
    # The audit trail is the certificate's history: its REJECTED moves count its rejections.
    ordinal = sum(1 for a in repo.audit(certificate_id)
                  if a.entity_type == "certificate" and a.to_state == Status.REJECTED.value)
    return Rejection(certificate_id, row.order_url or "", detail, ordinal, now, more_info)


def refresh(sessions: Sessions, certificate_id: str, issuer: Issuer, *, now: datetime, actor: str = "scanner",
            on_rejected: OnRejected | None = None, rules: Rules | None = None) -> SubmitResult:
    """Look at an application under review without holding a process (DV-5, CA-2).

    Polls the CA once, between two transactions from `sessions`: still pending → nothing changes;
    valid → collected (ISSUED); invalid → REJECTED with the CA's detail (`on_rejected` called in
    the transaction that records it). An answer already recorded is returned without a poll.

    Raises:
        BadInputError: the application was not submitted yet.
        TransientError: the CA could not be reached.
    """
    with sessions() as s:
        row = _require_application(s, certificate_id)
        if row.order_url is None:
            raise BadInputError(f"certificate {certificate_id} was not submitted yet; submit it first.",
                                Reason.NOT_FOUND)
        ref, state, last_error = row.order_url, row.state, row.last_error or ""
        warnings = tuple(_warning(c) for c in row.warnings)
        retry_at = row.retry_at
    if retry_at is not None and now < retry_at and state not in (ApplicationState.COLLECTED,
                                                                 ApplicationState.REJECTED):
        return SubmitResult(certificate_id, ref, OrderStatus.PENDING, "the CA asked to wait", True, warnings,
                            retry_at=retry_at)  # the CA said "not before": it is not asked
    if state in (ApplicationState.COLLECTED, ApplicationState.REJECTED):
        status = OrderStatus.VALID if state == ApplicationState.COLLECTED else OrderStatus.INVALID
        return SubmitResult(certificate_id, ref, status, last_error, True, warnings)
    result = issuer.poll(ref)
    if not result.done:
        return SubmitResult(certificate_id, ref, result.status, result.detail, True, warnings)
    _settle(sessions, certificate_id, issuer, result, now=now, actor=actor, on_rejected=on_rejected, rules=rules)
    return SubmitResult(certificate_id, ref, result.status, result.detail, True, warnings)


def collect(sessions: Sessions, certificate_id: str, issuer: Issuer, *, now: datetime,
            actor: str = "system", rules: Rules | None = None) -> Certificate:
    """Fetch the issued chain from the CA (outside any transaction) and store it (`record_chain`).

    Idempotent: a certificate already collected is returned unchanged, without asking the CA.

    Returns:
        The certificate (core model).
    Raises:
        PermanentError: the CA's certificate does not match the application (nothing stored).
    """
    with sessions() as s:
        row = _require_application(s, certificate_id)
        if row.state == ApplicationState.COLLECTED:
            return Repository(s).certificate_model(certificate_id)
        ref = row.order_url
    chain = issuer.fetch_chain(ref)
    with sessions() as s:
        return record_chain(s, certificate_id, chain, issuer_name=issuer.name,
                            publicly_trusted=issuer.publicly_trusted, now=now, actor=actor, rules=rules)


def record_chain(session: Session, certificate_id: str, chain: IssuedChain, *, issuer_name: str,
                 publicly_trusted: bool, now: datetime, actor: str = "system",
                 rules: Rules | None = None) -> Certificate:
    """Store the issued leaf and chain on the certificate and move it UNDER_REVIEW → ISSUED.

    With `rules`, the plan then keeps its coverage term (`coverage.after_issue`, VA-5: a reissue
    added when the CA signed less than the term needs; later certificates not needed cancelled),
    in the same transaction.

    Checks that the leaf carries the CSR's public key and exactly the certificate's names. A
    certificate collected meanwhile (a concurrent run) is returned unchanged.

    Returns:
        The certificate (core model).
    Raises:
        PermanentError: the CA's certificate does not match the application.
    """
    repo = Repository(session)
    row = _require_application(session, certificate_id)
    if row.state == ApplicationState.COLLECTED:
        return repo.certificate_model(certificate_id)
    cert = repo.get_certificate(certificate_id)
    leaf = x509.load_pem_x509_certificate(chain.leaf_pem.encode())
    if public_fingerprint(leaf.public_key()) != csr_public_fingerprint(row.csr_pem.encode()):
        raise PermanentError(f"the certificate {issuer_name} returned for {certificate_id} does not carry the "
                             "CSR's public key; do not deploy it, and resubmit the application.")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    got = {canonical_name(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    want = {canonical_name(n) for n in cert.names}
    if got != want:
        raise PermanentError(f"the certificate {issuer_name} returned for {certificate_id} names "
                             f"{', '.join(sorted(got))}, not {', '.join(sorted(want))}; resubmit the application.")
    repo.update_certificate(
        certificate_id, now=now, leaf_pem=chain.leaf_pem, chain_pem="".join(chain.chain_pems),
        fingerprint_sha256=fingerprint(leaf), serial=format(leaf.serial_number, "x"),
        not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
        publicly_trusted=publicly_trusted)
    model = repo.set_state(certificate_id, Status.ISSUED, actor=actor, now=now,
                           why=f"issued by {issuer_name} (serial {format(leaf.serial_number, 'x')})")
    row.state, row.updated_at = ApplicationState.COLLECTED.value, now
    session.flush()
    if rules is not None:
        done = coverage.after_issue(session, certificate_id, now=now, rules=rules, actor=actor)
        if done.comparison is not None and not done.comparison.exact:
            repo.record_audit("certificate", certificate_id, actor=actor, now=now,
                              why=f"plan vs issued: {done.comparison.describe()}")
    return model


def application_state(session: Session, certificate_id: str) -> dict | None:
    """The application's record as plain data (state, order reference, attempts, last error), or None."""
    row = _application_row(session, certificate_id)
    if row is None:
        return None
    return {"state": row.state, "order_ref": row.order_url, "issuer": row.issuer, "attempts": row.attempts,
            "last_error": row.last_error, "csr_mode": row.csr_mode, "warnings": list(row.warnings)}


def status(session: Session, certificate_id: str) -> ApplicationStatus:
    """Where a certificate stands for stage 2: its state, its application, what it still needs.

    Raises:
        NotFoundError: no such certificate.
        RefusedError: `apply` has nothing to do for it (not activated yet: PL-4; cancelled,
            revoked or uploaded: LC-5), with what to do instead.
    """
    cert = Repository(session).certificate_model(certificate_id)
    refusal = may_apply(cert.state, cert.id, cert.parent_id)
    if refusal is not None:
        raise RefusedError(refusal)
    row = _application_row(session, certificate_id)
    return ApplicationStatus(
        certificate_id=cert.id, state=cert.state,
        application=ApplicationState(row.state) if row is not None else ApplicationState.NOT_STARTED,
        needs_contact=contact_refusal(cert.level, cert.owner) is not None, key_held=cert.key_held,
        common_name=cert.common_name, level=cert.level, origin=cert.origin, temporary=cert.temporary,
        fingerprint=cert.fingerprint_sha256, last_error=row.last_error if row is not None else None)


def submit_by_hand(session: Session, certificate_id: str, *, now: datetime, actor: str = "system") -> bool:
    """PL-5: the manual submission a not-activated certificate waits for once its managed start could
    not start by itself (a manual CSR to give, DNS the system cannot write): the owner's `apply` moves
    it NOT_ACTIVATED → PENDING_APPLICATION (LC-5), audited. Any other certificate is left as it is.

    Returns:
        True when this call moved it.
    """
    from certpilot.core.scan import StartOutcomeKind
    from certpilot.store.scan_queries import managed_start_outcome

    repo = Repository(session)
    if Status(repo.get_certificate(certificate_id).state) is not Status.NOT_ACTIVATED:
        return False
    if managed_start_outcome(session, certificate_id) != StartOutcomeKind.WAITING_MANUAL.value:
        return False
    repo.set_state(certificate_id, Status.PENDING_APPLICATION, actor=actor, now=now,
                   why="submitted by hand after its managed start waited for a human (PL-5)")
    return True


def resubmit(session: Session, certificate_id: str, *, now: datetime, actor: str = "system") -> None:
    """CA-2: after a rejection, the owner fixed what the CA asked for: start the application over.

    The certificate goes back REJECTED → PENDING_APPLICATION (LC-5) and its application record
    is cleared, so the next `apply` makes a new key and CSR and places a new CA order; the old
    order and the CA's reason stay in the audit log.

    Raises:
        IllegalTransitionError: the certificate is not REJECTED.
    """
    repo = Repository(session)
    row = _application_row(session, certificate_id)
    repo.set_state(certificate_id, Status.PENDING_APPLICATION, actor=actor, now=now,
                   why="resubmitted after the CA's rejection (CA-2)"
                       + (f"; previous order {row.order_url}: {row.last_error or 'no detail'}" if row else ""))
    if row is not None:
        session.delete(row)
        session.flush()
