"""The scanner (scheduled hourly): one decision over the inventory, a task run only per due item."""

from __future__ import annotations

from collections import Counter

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from certpilot.core.models import Status
from certpilot.core.scan import ScanSummary, StartOutcomeKind, apply_key, deploy_key
from flows.launch import launch
from tasks import scan as t


# A few workers: the due items' transactions serialise on the store anyway (SQLite: one writer),
# and hundreds of threads contending for it only add lock waits.
@flow(name="scan", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def scan(at: str | None = None, launch_mode: str = "auto") -> ScanSummary:
    """Scan the inventory once: managed starts (PL-4, PL-5, PL-8), CA reviews (CA-2), automatic
    renewals, expiry notices (NT-1); inventory table, summary and progress artifacts.

    Args:
        at: ISO 8601 instant to decide at (injected time); default the runtime's clock.
        launch_mode: how apply/renew/deploy are started (auto, deployment, inline, none).

    Returns:
        What the scan did (`ScanSummary`): counts of what was decided and done, and the task
        runs created.
    """
    progress = t.Progress()
    plan = t.decide(at)
    progress.plan(plan.action_count)
    starts = [t.start_managed_application.submit(m, at=plan.at) for m in plan.managed_starts]
    reviews = [t.follow_review.submit(cid, at=plan.at) for cid in plan.resume_reviews]
    notices = [t.send_expiry_notice.submit(n.certificate_id, n.threshold_days, n.days_left, at=plan.at)
               for n in plan.notices]
    ended = Counter()
    for s in (f.result() for f in starts):
        ended[s.kind] += 1
        if s.kind is StartOutcomeKind.STARTED:
            launch("apply", {"certificate_id": s.certificate_id}, key=apply_key(s.certificate_id), mode=launch_mode)
        progress.tick()
    issued = 0
    for r in (f.result() for f in reviews):
        if r.state is Status.ISSUED:
            issued += 1
            launch("deploy", {"certificate_id": r.certificate_id}, key=deploy_key(r.certificate_id), mode=launch_mode)
        progress.tick()
    for cid in plan.resume_applications:  # started before, still pending: relaunch if its run died
        launch("apply", {"certificate_id": cid}, key=apply_key(cid), mode=launch_mode)
        progress.tick()
    for r in plan.renewals:
        launch("renew", {"certificate_id": r.certificate_id, "years": r.years}, key=r.key, mode=launch_mode)
        progress.tick()
    sent = sum(1 for f in notices if f.result())
    progress.tick(len(notices))
    summary = ScanSummary(
        at=plan.at_iso, certificates=plan.certificates, managed_starts=len(starts),
        started=ended[StartOutcomeKind.STARTED], waiting_manual=ended[StartOutcomeKind.WAITING_MANUAL],
        already=ended[StartOutcomeKind.ALREADY], skipped=ended[StartOutcomeKind.SKIPPED], reviews=len(reviews),
        issued=issued, renewals=len(plan.renewals), notices=sent,
        task_runs=1 + len(starts) + len(reviews) + len(notices))
    t.publish(plan, summary)
    return summary
