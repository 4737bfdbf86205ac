"""Metrics at scale: how long a Prometheus scrape of 100,000 certificates takes.

    .venv/bin/python bench/metrics.py [--n 100000] [--rounds 3]

Builds N issued certificates in a temp SQLite (bulk Core inserts, expiries spread over 400 days),
serves `/metrics` with the exporter `certpilot metrics` runs (`certpilot.metrics_server`), and
prints, best of `--rounds`:

- floor: a bare stdlib sqlite3 SELECT of the same columns (fetchall);
- page: `operations.metrics.exposition` (the one certificate query + the text);
- scrape: an HTTP GET of /metrics over loopback (what Prometheus sees), with the page size;

and `ratio: X` (page / floor). Target: the scrape of 100,000 certificates in <= 1 s.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def build(url: str, n: int) -> None:
    """N issued certificates, expiries spread over the next 400 days."""
    from sqlalchemy import insert

    from certpilot.store.db import ensure_schema, session_scope
    from certpilot.store.tables import CertificateRow

    ensure_schema(url)
    rows = []
    for i in range(n):
        na = NOW + timedelta(days=i % 400, seconds=i)
        rows.append({"id": f"c{i:06d}", "common_name": f"n{i:06d}.example.test", "names": [f"n{i:06d}.example.test"],
                     "cert_type": "single", "origin": "official", "level": "DV" if i % 3 else "OV", "brand": "DigiCert",
                     "key_algorithm": "EC-P256", "not_before": na - timedelta(days=365), "not_after": na,
                     "serial": None, "fingerprint_sha256": None, "parent_id": None, "order_id": None,
                     "plan_index": 0, "state": "issued", "validation_method": "dns-auto", "owner_email": None,
                     "owner_name": None, "owner_phone": None, "temporary": False, "key_held": True,
                     "publicly_trusted": True, "key_id": None, "leaf_pem": None, "chain_pem": None,
                     "created_at": NOW, "updated_at": NOW})
    with session_scope(url) as s:
        for k in range(0, n, 20000):
            s.execute(insert(CertificateRow.__table__), rows[k:k + 20000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from certpilot.metrics_server import start_sidecar
    from certpilot.operations.metrics import exposition
    from certpilot.runtime import local_services
    from tests.servers.base import free_port

    work = Path(tempfile.mkdtemp(prefix="metrics-bench-"))
    db = work / "certpilot.db"
    url = f"sqlite:///{db}"
    t0 = time.perf_counter()
    build(url, args.n)
    print(f"{args.n} certificates built in {time.perf_counter() - t0:.1f}s")
    svc = local_services(database_url=url, issuers={}, clock=lambda: NOW)
    floor = page = scrape = float("inf")
    size = 0
    port = free_port()
    server = start_sidecar(svc, f"127.0.0.1:{port}")
    try:
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            with sqlite3.connect(db) as conn:
                conn.execute("SELECT id, common_name, origin, level, state, not_after FROM certificates").fetchall()
            floor = min(floor, time.perf_counter() - t0)
            t0 = time.perf_counter()
            exposition(svc)
            page = min(page, time.perf_counter() - t0)
            t0 = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
                size = len(resp.read())
            scrape = min(scrape, time.perf_counter() - t0)
    finally:
        server.shutdown()
    print(f"floor (bare sqlite3 select): {floor:.3f}s")
    print(f"page (one query + text):     {page:.3f}s")
    print(f"scrape (HTTP GET /metrics):  {scrape:.3f}s, {size / 1e6:.1f} MB, {args.n} certificates")
    print(f"ratio: {page / floor:.1f}")


if __name__ == "__main__":
    main()
