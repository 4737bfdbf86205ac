"""The scanner (scheduled hourly): one decision over the inventory, a task run only per due item."""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from certpilot.core.models import Status
from flows.launch import launch
from tasks import scan as t


# A few workers: the due items' transactions serialise on the store anyway (SQLite: one writer),
# and hundreds of threads contending for it only add lock waits.
@flow(name="scan", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def scan(at: str | None = None, launch_mode: str = "auto") -> dict:
    """Scan the inventory once: managed starts (PL-4, PL-5, PL-8), CA reviews (CA-2), automatic
    renewals, expiry notices (NT-1); inventory table, summary and progress artifacts.

    Args:
        at: ISO 8601 instant to decide at (injected time); default the runtime's clock.
        launch_mode: how apply/renew/deploy are started (auto, deployment, inline, none).

    Returns:
        Counts of what was decided and done, and the task runs created.
    """
    progress = t.Progress()
    d = t.decide(at)
    at = d["at"]
    progress.plan(t.action_count(d))
    starts = [t.start_managed_application.submit(**m, at=at) for m in d["managed_starts"]]
    reviews = [t.follow_review.submit(cid, at=at) for cid in d["resume_reviews"]]
    notices = [t.send_expiry_notice.submit(**n, at=at) for n in d["notices"]]
    out = {"at": at, "certificates": sum(d["counts"].values()), "managed_starts": len(starts), "started": 0,
           "waiting_manual": 0, "already": 0, "reviews": len(reviews), "issued": 0, "renewals": 0, "notices": 0,
           "task_runs": 1 + len(starts) + len(reviews) + len(notices)}
    for s in (f.result() for f in starts):
        out[s["outcome"]] = out.get(s["outcome"], 0) + 1
        if s["outcome"] == "started":
            cid = s["certificate_id"]
            launch("apply", {"certificate_id": cid}, key=f"apply-{cid}", mode=launch_mode)
        progress.tick()
    for r in (f.result() for f in reviews):
        if r["state"] == Status.ISSUED:
            out["issued"] += 1
            launch("deploy", {"certificate_id": r["certificate_id"]}, key=f"deploy-{r['certificate_id']}",
                   mode=launch_mode)
        progress.tick()
    for cid in d["resume_applications"]:  # started before, still pending: relaunch if its run died
        launch("apply", {"certificate_id": cid}, key=f"apply-{cid}", mode=launch_mode)
        progress.tick()
    for r in d["renewals_due"]:
        launch("renew", {"certificate_id": r["certificate_id"], "years": r["years"]}, key=r["key"], mode=launch_mode)
        out["renewals"] += 1
        progress.tick()
    out["notices"] = sum(1 for f in notices if f.result())
    progress.tick(len(notices))
    t.publish(d, out)
    return out
