"""Targets on other hosts, the Prefect way (issue 11): a target names its host (a work queue);
its deploy step runs on a worker of that queue, the rest of the renewal wherever.

Two real `prefect worker start --pool certpilot` processes stand for two hosts, each with its own
filesystem root (its own CERTPILOT_HOME: a relative target path lives there) and the same store:
`web-2` polls its queue only; `web-3` polls its own and `default`, where the renewal run goes.
A files target on `web-2` is deployed by the `web-2` worker only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.integration.production.conftest import Operator, import_due, operator_env

pytestmark = [pytest.mark.servers]
NAME = "hosts.example.com"


PULL = [{"prefect.deployments.steps.set_working_directory": {"directory": "."}}]
"""prefect.yaml's pull step (what `prefect deploy` records)."""


def _set_up_server(api_url: str, store: str) -> None:
    """`certpilot setup --private-ca` and `prefect deploy` of the two deployments this test runs,
    done in this process against `api_url` (two CLI processes would cost ~20 s here; the CLI
    path has tests of its own in test_checkout/test_wheel)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from certpilot.setup import setup
    from flows.renewal import renewal
    from flows.targets import deploy_target

    async def deploy() -> None:
        async with get_client() as client:
            for flow, name, entry in ((renewal, "renewal", "flows.renewal:renewal"),
                                      (deploy_target, "deploy-target", "flows.targets:deploy_target")):
                flow_id = await client.create_flow_from_name(flow.name)
                await client.create_deployment(
                    flow_id=flow_id, name=name, entrypoint=entry, work_pool_name="certpilot",
                    work_queue_name="default", pull_steps=PULL, tags=["certpilot"],
                    parameter_openapi_schema=flow.parameters.model_dump_for_openapi())
            for queue in ("web-2", "web-3"):
                try:
                    await client.create_work_queue(name=queue, work_pool_name="certpilot")
                except Exception:  # noqa: BLE001 - already there (an earlier run of the session)
                    pass

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        setup(api_url=api_url, database_url=store, private_ca=True)
        asyncio.run(deploy())


def test_dep1_a_target_on_web_2_is_deployed_by_the_web_2_worker_only(production_api, tmp_path, monkeypatch):
    """DEP-1: the renewal runs on web-3 (the default queue); its deploy step for the target on
    web-2 is a `deploy-target` run on the web-2 queue, executed by the web-2 worker: the bundle
    is in web-2's root, web-3's root has none, and the task is recorded with its host."""
    from certpilot import runtime
    from certpilot.operations import targets
    from certpilot.operations.inventory import show_certificate
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines
    from certpilot.store.repository import Repository
    from tests.servers.base import spawn

    started = time.monotonic()
    store = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**operator_env(production_api, tmp_path / "home-op"), "CERTPILOT_DATABASE_URL": store}
    op = Operator(production_api, Path(sys.executable).parent, tmp_path / "home-op", env)
    for name in ("CERTPILOT_HOME", "CERTPILOT_MASTER_KEY", "CERTPILOT_DATABASE_URL"):
        monkeypatch.setenv(name, env[name])
    get_settings.cache_clear()
    reset_engines()
    _set_up_server(production_api.api_url, store)
    print(f"two hosts: server set up in {time.monotonic() - started:.1f} s")
    homes = {host: tmp_path / f"root-{host}" / "home" for host in ("web-2", "web-3")}
    for host, queues in (("web-2", ["web-2"]), ("web-3", ["web-3", "default"])):
        homes[host].mkdir(parents=True)
        argv = [str(op.bin / "prefect"), "worker", "start", "--pool", "certpilot", "--name", host]
        for q in queues:
            argv += ["--work-queue", q]
        op.workers.append(spawn(argv, log=tmp_path / f"{host}.log", cwd=homes[host].parent,
                                env={**op.env, "CERTPILOT_HOME": str(homes[host]), "PREFECT_WORKER_QUERY_SECONDS": "1"}))
    try:
        svc = runtime.local_services()
        cert_id = import_due(svc, tmp_path, NAME)
        queues = [q["name"] for q in op.api_post("/work_pools/certpilot/queues/filter", {})]
        from certpilot.core.errors import BadInputError

        with pytest.raises(BadInputError, match="host: unknown host 'web-9'"):  # no such queue: nothing stored
            targets.add(svc, cert_id, "files", config={"directory": "sites/hosts"}, host="web-9", known_hosts=lambda: queues)
        assert targets.list_targets(svc, cert_id) == []
        target = targets.add(svc, cert_id, "files", config={"directory": "sites/hosts", "verify": False},
                             name="hosts bundle", host="web-2", known_hosts=lambda: queues)
        assert target.record.host == "web-2"
        dep = op.api_get("/deployments/name/renewal/renewal")
        run = op.api_post(f"/deployments/{dep['id']}/create_flow_run", {"parameters": {"certificate_id": cert_id}})
        t0 = time.monotonic()
        done = op.wait_for_run(run["id"], timeout=150)
        print(f"two hosts: renewal run {time.monotonic() - t0:.1f} s")
        assert done["state_type"] == "COMPLETED", (done["state"], op.run_logs(run["id"]), op.log_tail())
        assert done["work_queue_name"] == "default"
        remote = [r for r in op.flow_runs(name={"like_": "deploy "}) if r["name"].endswith(" on web-2")]
        assert [(r["work_queue_name"], r["state_type"]) for r in remote] == [("web-2", "COMPLETED")]
        child = min(show_certificate(svc, cert_id).children, key=lambda c: c.plan_index or 0)
        with svc.session() as s:
            leaf = Repository(s).get_certificate(child.id).leaf_pem
        bundle = homes["web-2"] / "sites" / "hosts"
        assert (bundle / "cert.pem").read_text().strip() == leaf.strip()  # web-2's root holds it
        assert not (homes["web-3"] / "sites").exists()                    # web-3 never wrote it
        lines = targets.deployments_of(svc, child.id)
        assert [(x.host, x.task.state.value) for x in lines] == [("web-2", "unverified")]
    finally:
        op.stop_workers()
        get_settings.cache_clear()
        reset_engines()
    print(f"two hosts: {time.monotonic() - started:.1f} s")
