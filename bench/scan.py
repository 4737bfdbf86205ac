"""Scan at scale: the scanner's cost grows with what is due, not with the inventory.

    .venv/bin/python bench/scan.py [--n 100000] [--due 300] [--no-flow]

Builds N certificates in a temp SQLite (bulk Core inserts; `--due` of them are 2-year plans whose
certificate 2 is due for its managed start, PL-4), then prints seconds for:

- floor: a bare stdlib sqlite3 SELECT of the same rows (fetchall);
- scan decision: `operations.scan.decide_scan` (the store's one query + core decide), best of 3;
- the scan flow under a prefect_test_harness the bench starts (CERTPILOT_LAUNCH_MODE=none), with the task
  runs it created (read back through the Prefect client);

and `ratio: X` (scan decision / floor) and the peak RSS. Targets: ratio <= 3, RSS <= 300 MB,
task runs proportional to the due certificates.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = datetime(2025, 9, 1, tzinfo=UTC)
DAY = timedelta(days=1)

FLOOR_SQL = (
    "SELECT c.id, c.common_name, c.state, c.origin, c.not_after, c.order_id, o.kind, c.plan_index, c.parent_id, "
    "o.managed_fee, coalesce(p.auto_renew, 1) FROM certificates c LEFT OUTER JOIN orders o ON o.id = c.order_id "
    "LEFT OUTER JOIN renewal_policies p ON p.certificate_id = c.id"
)


def _cert(cid: str, *, state: str, not_after: datetime | None, order_id: str | None = None, index: int = 0,
          parent_id: str | None = None) -> dict:
    return {"id": cid, "common_name": f"{cid}.example.test", "names": [f"{cid}.example.test"], "cert_type": "single",
            "origin": "official", "level": "DV", "brand": "DigiCert", "key_algorithm": "EC-P256",
            "not_before": not_after - 365 * DAY if not_after else None, "not_after": not_after, "serial": None,
            "fingerprint_sha256": None, "parent_id": parent_id, "order_id": order_id, "plan_index": index,
            "state": state, "validation_method": "dns-auto", "owner_email": "ops@example.test", "owner_name": "Ops",
            "owner_phone": "+81-3-0000-0000", "temporary": False, "key_held": True, "publicly_trusted": True,
            "key_id": None, "leaf_pem": None, "chain_pem": None, "created_at": NOW, "updated_at": NOW}


def build(url: str, n: int, due: int) -> None:
    """N certificates: `due` plans (original + order + certificate 1 at 20 days + certificate 2 not
    activated) and the rest issued, 100-460 days from expiry (nothing to do)."""
    from certpilot.store.db import ensure_schema

    ensure_schema(url)
    certs, orders = [], []
    for i in range(due):
        orig, c1, c2, oid = f"d{i}-orig", f"d{i}-c1", f"d{i}-c2", f"d{i}-order"
        certs.append(_cert(orig, state="issued", not_after=NOW - 345 * DAY))
        orders.append({"id": oid, "kind": "renewal", "certificate_id": orig, "spec_key": "DigiCert/DV/single",
                       "brand": "DigiCert", "level": "DV", "cert_type": "single", "years": 2, "csr_mode": "system",
                       "managed_services": 1, "managed_fee": False, "state": "paid", "payment": [], "planned": [],
                       "idempotency_key": None, "created_at": NOW, "updated_at": NOW})
        certs.append(_cert(c1, state="issued", not_after=NOW + 20 * DAY, order_id=oid, parent_id=orig))
        certs.append(_cert(c2, state="not_activated", not_after=None, order_id=oid, index=1, parent_id=orig))
    for i in range(n - len(certs)):
        certs.append(_cert(f"v{i}", state="issued", not_after=NOW + (100 + i % 360) * DAY))
    # Stdlib executemany with values in SQLAlchemy's SQLite storage format (UTC text, JSON, 0/1):
    # an order of magnitude faster than binding 100,000 rows through SQLAlchemy's type processing.
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    with conn:
        for table, rows in (("certificates", [c for c in certs if c["order_id"] is None]), ("orders", orders),
                            ("certificates", [c for c in certs if c["order_id"] is not None])):
            cols = list(rows[0]) if rows else []
            if not cols:
                continue
            conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                             [tuple(_sqlite_value(r[c]) for c in cols) for r in rows])
    conn.close()


def _sqlite_value(v):
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, list | dict):
        return json.dumps(v)
    return v


def floor(path: str) -> tuple[float, int]:
    """The stdlib sqlite3 floor: the same SELECT, fetchall."""
    conn = sqlite3.connect(path)
    t0 = time.perf_counter()
    rows = conn.execute(FLOOR_SQL).fetchall()
    took = time.perf_counter() - t0
    conn.close()
    return took, len(rows)


def decision(url: str):
    """The store's scan query + decide in one read-only transaction (what `operations.scan.decide` does)."""
    from certpilot.core.models import Policy
    from certpilot.operations.scan import decide_scan
    from certpilot.store.db import session_scope

    t0 = time.perf_counter()
    with session_scope(url, readonly=True) as s:
        d = decide_scan(s, NOW, Policy())
    return time.perf_counter() - t0, d


def run_flow(url: str) -> tuple[float, dict, int]:
    """The scan flow under a test harness (launch mode none: decide and act, launch nothing);
    returns seconds, summary, task runs. The clock is the installed services' (fixed at NOW)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from certpilot import runtime as rt
    from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
    from flows.scan import scan

    zone = Rfc2136Provider("127.0.0.1", 53, zones=["example.test"], keyname="bench", secret="YmVuY2gAAA==")
    with prefect_test_harness(server_startup_timeout=90), temporary_settings(
            updates={"flows.heartbeat_frequency": None}):
        with rt.use(rt.local_services(database_url=url, dns_providers=[zone], clock=lambda: NOW)):
            os.environ["CERTPILOT_LAUNCH_MODE"] = "none"
            t0 = time.perf_counter()
            state = scan(return_state=True)
            took = time.perf_counter() - t0
            summary = state.result()
        # Task runs reach the server as events, recorded asynchronously: poll until all are in.
        expected = summary.task_runs
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while True:
                count = _count_task_runs(client, state.state_details.flow_run_id)
                if count >= expected or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    return took, summary, count


def _count_task_runs(client, flow_run_id) -> int:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    count, page = 0, 200
    while True:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                     limit=page, offset=count)
        count += len(runs)
        if len(runs) < page:
            return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="certificates in the inventory")
    parser.add_argument("--due", type=int, default=300, help="plans due for their managed start (3 rows each)")
    parser.add_argument("--no-flow", action="store_true", help="skip the Prefect flow run")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="certpilot-bench-scan-"))
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))
    os.environ.setdefault("CERTPILOT_HOME", str(tmp / "home"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    path = tmp / "bench.db"
    url = f"sqlite:///{path}"

    t0 = time.perf_counter()
    # In a child process: the peak RSS printed below is the scan's, not the inventory builder's.
    child = multiprocessing.get_context("fork").Process(target=build, args=(url, args.n, args.due))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"building the inventory failed (exit {child.exitcode})")
    print(f"build: {args.n} certificates ({args.due} plans due) in {time.perf_counter() - t0:.2f} s")

    floors = [floor(str(path)) for _ in range(3)]
    floor_s = min(f[0] for f in floors)
    print(f"floor (sqlite3 SELECT, fetchall, {floors[0][1]} rows): {floor_s:.3f} s")
    runs = [decision(url) for _ in range(3)]
    scan_s = min(r[0] for r in runs)
    d = runs[0][1]
    print(f"scan decision (query + decide): {scan_s:.3f} s -> {len(d.managed_starts)} managed starts, "
          f"{len(d.notices)} notices, {len(d.renewals_due)} renewals, {len(d.resume_reviews)} reviews")
    print(f"ratio: {scan_s / floor_s:.2f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS after the decision: {rss:.0f} MB")
    if not args.no_flow:
        took, summary, count = run_flow(url)
        print(f"scan flow: {took:.2f} s, task runs created: {count} (decision 1 + due items "
              f"{summary.task_runs - 1}), started {summary.started}, notices {summary.notices}")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS with the flow and the Prefect test server: {rss:.0f} MB")


if __name__ == "__main__":
    main()
