"""Stage 3 (LC-3): every target the old certificate had (DEP-1), verified by probe (VER-1)."""

from __future__ import annotations

from prefect import flow

from certpilot.core.outcomes import DeployRun
from tasks import pipeline as t


@flow(name="deploy", log_prints=True)
def deploy(certificate_id: str) -> DeployRun:
    """Deploy a newly issued certificate wherever its predecessor served, one managed deployment
    task per target (DEP-2); each is verified, rolled back on failure (DEP-7) and a failure is
    notified (DEP-3). Re-entrant: succeeded tasks are not run again."""
    task_ids = t.plan_deployments(certificate_id)
    futures = [t.run_deployment_task.submit(task_id) for task_id in task_ids]
    run = DeployRun(certificate_id=certificate_id, results=tuple(f.result() for f in futures))
    for r in run.failed:
        print(f"deployment {r.task_id} to {r.target_id} ended {r.state.value}: {r.details}")
    return run
