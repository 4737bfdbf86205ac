"""Deployment targets from the UI: each task is one call into `certpilot.operations.targets`."""

from __future__ import annotations

from typing import Any

from certpilot import runtime as rt
from certpilot.core.deployment import DeploymentOutcome
from certpilot.operations import deployments
from certpilot.operations import targets as ops
from tasks.common import certpilot_task, retrying

DEPLOY_TARGET = "deploy-target/deploy-target"
"""The deployment whose runs deploy one task on the worker of its target's host (work queue)."""


@certpilot_task(name="target-add", retries=0)
def add_target(certificate_id: str, kind: str, config: dict[str, Any], endpoints: list[str], name: str,
               host: str | None, check: bool) -> ops.TargetView:
    """Add a target, validated first (nothing stored when refused; the field is named)."""
    return ops.add(rt.services(), certificate_id, kind, config=config,
                   endpoints=[ops.endpoint_of(e) for e in endpoints], name=name, host=host, check=check,
                   known_hosts=_work_queues if host else None)


def _work_queues() -> list[str]:
    """The certpilot pool's work queues (a target's host must be one of them)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [q.name for q in client.read_work_queues(work_pool_name="certpilot")]


@certpilot_task(name="target-test", retries=0)
def test_target(target_id: str) -> ops.TargetTest:
    """Check a target without changing anything (files, permissions, `nginx -t`, ARN, TLS probe)."""
    return ops.test(rt.services(), target_id)


@certpilot_task(name="target-remove", retries=0)
def remove_target(target_id: str) -> ops.TargetView:
    """Stop deploying to a target (kept with its history)."""
    return ops.remove(rt.services(), target_id)


@certpilot_task(name="target-config", retries=0)
def config_of(kind: str, files: list[str], check_cmd: str | None, reload_cmd: str | None, directory: str | None,
              post_cmd: str | None, arn: str | None, mode: str | None, not_verifiable: bool,
              trust: str | None = None, resource_ids: list[int] | None = None,
              connection: str | None = None) -> dict[str, Any]:
    """The stored configuration from the form's fields (`operations.targets.config_of`)."""
    return ops.config_of(kind, files=files, check_cmd=check_cmd, reload_cmd=reload_cmd, directory=directory,
                         post_cmd=post_cmd, arn=arn, mode=mode, not_verifiable=not_verifiable, trust=trust,
                         resource_ids=resource_ids or [], connection=connection)


def deploy_routes(certificate_id: str) -> tuple[tuple[str, str | None], ...]:
    """DEP-1/DEP-2: the certificate's deployment tasks (planned now or before), each with the host
    (work queue) of its target, or None when any worker may deploy it. A helper step with no task
    run of its own (as `tasks.pipeline.deploy_plan`), retried on transient errors."""
    return retrying(lambda: deployments.routes(rt.services(), certificate_id))


@certpilot_task(name="deploy-on-host", run_name="deploy-on-{host}", retries=0)
def deploy_on_host(task_id: str, host: str) -> DeploymentOutcome:
    """Run one deployment task on a worker of `host` (the `deploy-target` deployment on that work
    queue) and wait for it; the outcome is what that run recorded in the store (DEP-2).

    Raises:
        PermanentError: the run on that host ended without recording an outcome (it never started
            the task: no worker there, or it was refused).
    """
    from prefect.deployments import run_deployment

    run = run_deployment(DEPLOY_TARGET, parameters={"task_id": task_id}, work_queue_name=host, poll_interval=1,
                         flow_run_name=f"deploy {task_id} on {host}")
    got = deployments.outcome(rt.services(), task_id)
    if got.state.value in ("pending", "running"):
        from certpilot.core.errors import PermanentError

        raise PermanentError(f"the deployment run of task {task_id} on host {host} ended "
                             f"{run.state.name if run.state else 'without a state'} and the task is still "
                             f"{got.state.value}: is a worker polling the {host} queue "
                             f"(`prefect worker start --pool certpilot --work-queue {host}`)?")
    return got
