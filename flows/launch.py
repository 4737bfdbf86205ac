"""Starting one flow from another: a deployment run when served, a subflow otherwise.

Under `certpilot up` or a `prefect deploy` setup the scanner starts `apply`/`renew` as runs of
their deployments (each visible on its own in the UI, with an idempotency key so a second
scanner or a retry gets the same run). Without deployments (tests, a one-off script) the same
flow runs inline as a subflow. Mode "none" records the decision and starts nothing.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

Mode = Literal["auto", "deployment", "inline", "none"]

FLOW_MODULES = {
    "renew": "flows.renew",
    "apply": "flows.apply",
    "deploy": "flows.deploy",
    "emergency": "flows.emergency",
}


def _served() -> bool:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


def launch(flow_name: str, parameters: dict[str, Any], *, key: str, mode: Mode = "auto") -> str:
    """Start `flow_name` with `parameters`; returns the flow run id (or the inline result).

    Args:
        flow_name: one of FLOW_MODULES; its deployment is `<flow_name>/<flow_name>`.
        parameters: IDs and plain values only (never key material: flow parameters are stored).
        key: idempotency key: the same key starts at most one deployment run.
        mode: "auto" (a deployment run when this flow itself runs from a deployment, else
            inline), "deployment", "inline" or "none".
    """
    if mode == "none":
        return ""
    if mode == "deployment" or (mode == "auto" and _served()):
        from prefect.deployments import run_deployment

        name = f"{flow_name}/{flow_name}"
        run = run_deployment(name, parameters=parameters, timeout=0, idempotency_key=key, as_subflow=False)
        # The server keeps an idempotency key for good: a run that failed, crashed or was
        # cancelled would be handed back forever. Start a fresh one, keyed after the dead run.
        while run.state is not None and run.state.type.value in ("FAILED", "CRASHED", "CANCELLED"):
            run = run_deployment(name, parameters=parameters, timeout=0, idempotency_key=f"{key}:after:{run.id}",
                                 as_subflow=False)
        return str(run.id)
    module = importlib.import_module(FLOW_MODULES[flow_name])
    result = getattr(module, flow_name)(**parameters)
    return str(result)
