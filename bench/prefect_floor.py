"""The orchestration floor under `bench/renew_batch.py`: what Prefect itself costs for a batch of
runs shaped like renewals, with no certpilot work in them.

Usage:
    .venv/bin/python bench/prefect_floor.py [--n 20] [--tasks 6] [--threads 8] [--postgres]

A `prefect server` (SQLite, or PostgreSQL through asyncpg with `--postgres`) and a deployment of
a flow whose body calls `--tasks` no-op tasks in sequence (certpilot's task options: no result
persistence, no cache); `--n` runs of it created Pending and executed in this process in
`--threads` threads, exactly as the single-machine launcher does (`flows.launch.run_in_process`).
With `--automations`, certpilot's automations are installed first (without a notification
block: the zombie-run one), as `certpilot setup` does. Printed: the wall time of the batch, the CPU seconds of the Prefect server and of this process,
and the task-run state changes per second the server recorded (three per task run: Pending,
Running, Completed). Run it with `--tasks 0` too: the difference is what each task run costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _task_runs_final(api_url: str, tag: str) -> int:
    import httpx

    body = {"flow_runs": {"tags": {"all_": [tag]}},
            "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    return httpx.post(f"{api_url}/task_runs/count", json=body, timeout=30).json()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20, help="flow runs")
    ap.add_argument("--tasks", type=int, default=6, help="no-op task runs per flow run")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--automations", action="store_true",
                    help="install certpilot's automations first (the zombie-run one: a proactive trigger on heartbeats)")
    args = ap.parse_args()

    from tests.servers.prefect import asyncpg_url, start_prefect_server

    work = Path(tempfile.mkdtemp(prefix="certpilot-floor-"))
    pg = db_url = None
    if args.postgres:
        from tests.servers.postgres import start_postgres

        pg = start_postgres()
        db_url = asyncpg_url(pg.create_database("prefect"))
    api = start_prefect_server(work / "prefect", database_url=db_url)
    os.environ.update({k: v for k, v in api.env.items() if k.startswith("PREFECT_")})
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    try:
        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE

        from certpilot.core.scan import RenewalLaunch
        from flows.launch import run_in_process

        @task(persist_result=False, cache_policy=NO_CACHE)
        def step(i: int) -> int:
            return i

        @flow(name="floor")
        def floor(certificate_id: str, years: int = 1) -> int:
            return sum(step(i) for i in range(args.tasks))

        deployment = floor.to_deployment(name="floor", tags=["floor"]).apply()
        if args.automations:
            from certpilot.automations import _install

            print("automations:", asyncio.run(_install(None)))
        tag = "certpilot"  # the launcher tags its runs so
        batch = uuid.uuid4().hex[:8]
        items = [RenewalLaunch(certificate_id=str(i), years=1, key=f"floor:{batch}:{i}", name=f"floor-{i}")
                 for i in range(args.n)]
        time.sleep(2.0)
        server0, own0, t0 = _cpu_seconds(api.proc.pid), time.process_time(), time.monotonic()
        results = run_in_process(floor, deployment, items,
                                 lambda it: {"certificate_id": it.certificate_id, "years": it.years},
                                 threads=args.threads)
        wall = time.monotonic() - t0
        expected = args.n * args.tasks
        while _task_runs_final(api.api_url, tag) < expected and time.monotonic() - t0 < wall + 60:
            time.sleep(0.2)
        recorded = time.monotonic() - t0
        server, own = _cpu_seconds(api.proc.pid) - server0, time.process_time() - own0
        outcomes = sorted({r.outcome.value for r in results})
        print(f"{args.n} runs × {args.tasks} no-op tasks, {args.threads} threads, "
              f"{'PostgreSQL' if args.postgres else 'SQLite'}: {outcomes}")
        print(f"  batch wall {wall:.2f} s ({wall / args.n * args.threads:.2f} s per run per thread); every task run "
              f"recorded by the server after {recorded:.2f} s")
        print(f"  CPU: Prefect server {server:.1f} s ({server / args.n:.2f} per run), this process {own:.1f} s "
              f"({own / args.n:.2f} per run)")
        if args.tasks:
            print(f"  task-run state changes recorded: {3 * expected / recorded:.0f}/s")
        return 0
    finally:
        api.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    raise SystemExit(main())
