"""Deployment targets from the UI: each task is one call into `certpilot.operations.targets`."""

from __future__ import annotations

from typing import Any

from certpilot import runtime as rt
from certpilot.operations import targets as ops
from tasks.common import certpilot_task


@certpilot_task(name="target-add", retries=0)
def add_target(certificate_id: str, kind: str, config: dict[str, Any], endpoints: list[str], name: str,
               host: str | None, check: bool) -> ops.TargetView:
    """Add a target, validated first (nothing stored when refused; the field is named)."""
    return ops.add(rt.services(), certificate_id, kind, config=config,
                   endpoints=[ops.endpoint_of(e) for e in endpoints], name=name, host=host, check=check)


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
              post_cmd: str | None, arn: str | None, mode: str | None, not_verifiable: bool) -> dict[str, Any]:
    """The stored configuration from the form's fields (`operations.targets.config_of`)."""
    return ops.config_of(kind, files=files, check_cmd=check_cmd, reload_cmd=reload_cmd, directory=directory,
                         post_cmd=post_cmd, arn=arn, mode=mode, not_verifiable=not_verifiable)
