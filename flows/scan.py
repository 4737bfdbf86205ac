"""The scanner (scheduled hourly): one decision over the inventory, then the work it calls for.

Each scan: decide (one query, one pure pass) → make the managed starts due (PL-4, PL-8) and poll
the CA reviews (CA-2), concurrently → find the unfinished work and whether the runs that claimed
it still live → resume the runs suspended on a review the CA answered → launch, through
`flows.launch.launch_renewals`, one renewal run per certificate: the automatic renewals due, the
applications just started or pending, and the work whose run is gone (crashed, failed,
cancelled, or ended with the work unfinished) → send the expiry notices (NT-1) → probe the
fleet (every target's endpoints: drift, broken chains, expiring served certificates, each told
once) → artifacts.

One failing item never fails the scan: it is recorded in the summary (`ScanProblem`), its owner
is told (at most once a day), and the rest go on. In-process and inline, the scan returns when
the renewals it launched have ended or suspended (a suspended run holds no thread).

Time comes from the installed services' clock and the launch mode from configuration
(`CERTPILOT_LAUNCH_MODE`): the scan has no parameters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from certpilot.core.models import Status
from certpilot.core.runs import LaunchOutcome, LaunchResult, WorkClaim
from certpilot.core.scan import (
    InFlight,
    ScanPlan,
    ScanProblem,
    ScanSummary,
    StartOutcomeKind,
    launches,
    review_resumable,
)
from flows.launch import RunView, launch_renewals, resume, run_views
from tasks import runs as tr
from tasks import scan as t

_ANSWERED = (Status.ISSUED, Status.REJECTED)
_FAILED = (LaunchOutcome.FAILED, LaunchOutcome.ERROR)


# A few workers: the due items' transactions serialise on the store anyway (SQLite: one writer),
# and hundreds of threads contending for it only add lock waits.
@flow(name="scan", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def scan() -> ScanSummary:
    """Scan the inventory once and launch the renewals it calls for (module docstring).

    Returns:
        What the scan did (`ScanSummary`): counts of what was decided, launched and how the runs
        ended, the failed items.
    """
    progress = t.Progress()
    problems: list[ScanProblem] = []
    # ARI (RFC 9773): the renewal windows whose Retry-After passed are read first, so the decision
    # schedules inside them (a window already over: renewed now).
    ari = _guarded(problems, "list the renewal windows to read", (), t.renewal_info_due)
    _settle(problems, "read its CA's renewal window", [(cid, t.refresh_renewal_info.submit(cid)) for cid in ari])
    plan = t.decide()
    progress.plan(plan.action_count)
    starts = _settle(problems, "make its managed start", [
        (m.certificate_id, t.start_managed_application.submit(m, at=plan.at)) for m in plan.managed_starts])
    reviews = _settle(problems, "poll its CA review", [
        (cid, t.follow_review.submit(cid, at=plan.at)) for cid in plan.resume_reviews])
    progress.tick(len(plan.managed_starts) + len(plan.resume_reviews))
    ended = Counter(s.kind for s in starts)
    started = [s.certificate_id for s in starts if s.kind is StartOutcomeKind.STARTED]
    answered = [r.certificate_id for r in reviews if r.state in _ANSWERED]
    issued = [r.certificate_id for r in reviews if r.state is Status.ISSUED]
    work, views, claims = _unfinished(problems, [*plan.resume_applications, *started], issued, answered)
    resumed = _resume_reviews(problems, answered, claims, views)
    todo = launches(plan.renewals, work, {run_id: v.state for run_id, v in views.items()})
    results = _launch(problems, todo)
    # The notices after the renewals: their task runs' records, written by the Prefect server
    # while the renewal runs are created, made those creations wait and retry (SQLite: one writer)
    notices = [(n.certificate_id, t.send_expiry_notice.submit(n.certificate_id, n.threshold_days, n.days_left,
                                                               at=plan.at)) for n in plan.notices]
    progress.tick(len(plan.resume_applications) + len(plan.renewals))
    sent = sum(1 for ok in _settle(problems, "send its expiry notice", notices) if ok)
    progress.tick(len(notices))
    fleet = _guarded(problems, "probe the fleet", None, lambda: t.probe_fleet(at=plan.at))
    reported = _report(problems)
    outcomes = Counter(r.outcome for r in results)
    summary = ScanSummary(
        at=plan.at_iso, certificates=plan.certificates, managed_starts=len(plan.managed_starts),
        started=ended[StartOutcomeKind.STARTED], waiting_manual=ended[StartOutcomeKind.WAITING_MANUAL],
        already=ended[StartOutcomeKind.ALREADY], skipped=ended[StartOutcomeKind.SKIPPED],
        reviews=len(plan.resume_reviews), issued=len(issued), resumed=resumed, renewals=len(plan.renewals),
        relaunched=sum(1 for x in todo if x.certificate_id in {w.certificate_id for w in work}),
        launched=len(results), completed=outcomes[LaunchOutcome.COMPLETED],
        suspended=outcomes[LaunchOutcome.SUSPENDED], failed=sum(outcomes[o] for o in _FAILED),
        elsewhere=sum(outcomes[o] for o in (LaunchOutcome.LIVE, LaunchOutcome.DONE, LaunchOutcome.HANDED_OFF)),
        notices=sent, errors=len(problems), problems=tuple(problems),
        task_runs=3 + len(ari) + bool(answered) + len(plan.managed_starts) + len(plan.resume_reviews) + len(notices)
        + reported,
        probed=fleet.probed if fleet else 0, fleet_findings=fleet.probed - fleet.counts["ok"] if fleet else 0,
        fleet_told=len(fleet.told) if fleet else 0)
    _publish(plan, summary)
    return summary


def _sentence(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _settle(problems: list[ScanProblem], action: str, futures: Sequence[tuple[str, Any]]) -> list[Any]:
    """The results of the futures that succeeded; each failure becomes a `ScanProblem`."""
    done = []
    for certificate_id, future in futures:
        try:
            done.append(future.result())
        except Exception as exc:  # noqa: BLE001 - one failing item never fails the scan
            problems.append(ScanProblem(certificate_id, action, _sentence(exc)))
    return done


def _guarded(problems: list[ScanProblem], action: str, fallback: Any, call: Callable[[], Any]) -> Any:
    """`call()`, or `fallback` when it fails (recorded as a problem over many certificates)."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the scan goes on without this step
        problems.append(ScanProblem("", action, _sentence(exc)))
        return fallback


def _unfinished(problems: list[ScanProblem], pending: list[str], issued: list[str],
                answered: list[str]) -> tuple[tuple[InFlight, ...], dict[str, RunView], dict[str, WorkClaim]]:
    """The unfinished work, the claims of the answered reviews, and the state of their runs.

    Without the runs' states nothing is relaunched (a live run would look dead): the due
    renewals still go, keyed as ever.
    """
    work = _guarded(problems, "find the unfinished work", (), lambda: t.unfinished_work(pending, issued))
    claims = _guarded(problems, "read the claims of answered reviews", {},
                      lambda: tr.read_claims(answered)) if answered else {}
    run_ids = [w.claim.flow_run_id for w in work if w.claim] + [c.flow_run_id for c in claims.values()]
    views = _guarded(problems, "read the state of the claimed runs", None, lambda: run_views(run_ids))
    if views is None:
        return (), {}, {}
    return work, views, claims


def _resume_reviews(problems: list[ScanProblem], answered: list[str], claims: dict[str, WorkClaim],
                    views: dict[str, RunView]) -> int:
    """CA-2: resume each run suspended on a review the CA answered; returns how many."""
    resumed = 0
    for cid in answered:
        claim = claims.get(cid)
        view = views.get(claim.flow_run_id) if claim else None
        if claim is None or view is None or not review_resumable(True, view.state, view.pause_key):
            continue
        try:
            resume(claim.flow_run_id)
            resumed += 1
        except Exception as exc:  # noqa: BLE001 - the next scan tries again
            problems.append(ScanProblem(cid, "resume its renewal run after the CA's answer", _sentence(exc)))
    return resumed


def _launch(problems: list[ScanProblem], todo: Sequence) -> list[LaunchResult]:
    """Launch the renewals; items that could not be launched become problems."""
    results = _guarded(problems, "launch the renewals", [], lambda: launch_renewals(todo))
    for r in results:
        if r.outcome is LaunchOutcome.ERROR:
            problems.append(ScanProblem(r.certificate_id, "launch its renewal", r.detail))
    return results


def _report(problems: list[ScanProblem]) -> int:
    """Tell each certificate's owner of its failed item (at most once a day); returns task runs made."""
    logger = get_run_logger()
    futures = []
    for p in problems:
        logger.warning("scan: could not %s for %s: %s", p.action, p.certificate_id or "the inventory", p.error)
        if p.certificate_id:
            futures.append((p, t.report_problem.submit(p.certificate_id, p.action, p.error)))
    for p, future in futures:
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - the problem stays in the summary and the log
            logger.warning("scan: could not tell the owner of %s: %s", p.certificate_id, _sentence(exc))
    return len(futures)


def _publish(plan: ScanPlan, summary: ScanSummary) -> None:
    try:
        t.publish(plan, summary)
    except Exception as exc:  # noqa: BLE001 - artifacts are a view: the scan's work is done
        get_run_logger().warning("scan: artifacts not published: %s", _sentence(exc))
