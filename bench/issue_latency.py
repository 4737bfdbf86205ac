"""Issuance latency and throughput against a real Pebble + BIND (DNS-01 over RFC 2136).

Usage: .venv/bin/python bench/issue_latency.py [-n 20] [--postgres]

Starts its own BIND and Pebble (PEBBLE_AUTHZREUSE=0: every order is really validated; no
nonce rejection; no VA sleep), then issues N certificates one after the other and N at once
(one thread each), each through the stage-2 use cases a task runs: key + CSR into the vault,
submit (CAA check, order, DNS-01 record, visibility check, validation, finalize) and collect
into a SQLite store. Prints per-certificate latency (median, p95) and throughput for both runs
and the concurrency speed-up. Targets: median <= 1 s; concurrent >= 5x sequential throughput.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CERTPILOT_HOME", tempfile.mkdtemp(prefix="certpilot-bench-"))

from certpilot.adapters.dns.checks import caa_refusal, resolver_for, wait_until_visible  # noqa: E402
from certpilot.adapters.dns.rfc2136 import Rfc2136Provider  # noqa: E402
from certpilot.adapters.issuers.acme import AcmeIssuer  # noqa: E402
from certpilot.adapters.issuers.base import OrderStatus  # noqa: E402
from certpilot.core.models import Certificate, CertType, Origin, Status  # noqa: E402
from certpilot.crypto.vault import KeyVault, LocalMasterKey  # noqa: E402
from certpilot.operations import applications  # noqa: E402
from certpilot.store.db import session_scope  # noqa: E402
from certpilot.store.ports import SqlAcmeAccountStore  # noqa: E402
from certpilot.store.repository import Repository  # noqa: E402
from tests.servers.acme import start_bind, start_pebble  # noqa: E402
from tests.servers.base import stop  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def issue_one(sessions, vault, issuer, name: str) -> float:
    """Key + CSR, submit, collect one certificate; returns its latency in seconds."""
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    cid = str(uuid.uuid4())
    with sessions() as s:
        Repository(s).add_certificate(Certificate(id=cid, common_name=name, names=[name], cert_type=CertType.SINGLE,
                                                  origin=Origin.OFFICIAL, state=Status.PENDING_APPLICATION), now=now)
        applications.create_key_and_csr(s, cid, vault=vault, now=now)
    result = applications.submit(sessions, cid, issuer, now=now)
    if result.status is not OrderStatus.VALID:
        raise RuntimeError(f"{name}: {result.status} {result.detail}")
    return time.perf_counter() - t0


def report(label: str, latencies: list[float], wall: float) -> float:
    """Print one run's figures; returns its throughput (certificates per second)."""
    throughput = len(latencies) / wall
    print(f"{label:<11} n={len(latencies):<3} median={statistics.median(latencies) * 1000:7.1f} ms  "
          f"p95={percentile(latencies, 95) * 1000:7.1f} ms  wall={wall:6.2f} s  "
          f"throughput={throughput:6.2f} cert/s")
    return throughput


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="certificates per run (default 20)")
    parser.add_argument("--postgres", action="store_true",
                        help="store in a PostgreSQL started for the run instead of SQLite")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="certpilot-bench-issue-"))
    bind = pebble = pg = None
    try:
        bind = start_bind(work / "bind")
        pebble = start_pebble(work / "pebble", bind.port, authz_reuse=0, nonce_reject=0)
        print(f"BIND ready in {bind.started_in:.2f} s, Pebble in {pebble.started_in:.2f} s")
        url = f"sqlite:///{work / 'bench.db'}"
        if args.postgres:
            from tests.servers.postgres import start_postgres

            pg = start_postgres()
            url = pg.create_database("bench_issue")
        print(f"store: {url.split(':', 1)[0]}")
        sessions = partial(session_scope, url)
        vault = KeyVault(LocalMasterKey(os.urandom(32)))
        dns = Rfc2136Provider(bind.host, bind.port, zones=bind.zones, keyname=bind.tsig_name,
                              secret=bind.tsig_secret, algorithm=bind.tsig_algorithm)
        resolver = resolver_for(bind.nameservers)
        issuer = AcmeIssuer(pebble.directory_url, accounts=SqlAcmeAccountStore(sessions), vault=vault, ca_bundle=str(pebble.ca_bundle),
                            dns_providers=[dns], publicly_trusted=False,
                            caa_check=lambda names: caa_refusal(names, pebble.ca_identifiers, resolver),
                            wait_visible=lambda f, v: wait_until_visible(f, v, bind.nameservers, 10))
        run = uuid.uuid4().hex[:6]
        issue_one(sessions, vault, issuer, f"warmup-{run}.example.test")  # account registration, schema

        t0 = time.perf_counter()
        seq = [issue_one(sessions, vault, issuer, f"s{i}-{run}.example.test") for i in range(args.n)]
        seq_tp = report("sequential", seq, time.perf_counter() - t0)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.n) as pool:
            conc = list(pool.map(lambda i: issue_one(sessions, vault, issuer, f"c{i}-{run}.example.test"),
                                 range(args.n)))
        conc_tp = report("concurrent", conc, time.perf_counter() - t0)
        print(f"speed-up   {conc_tp / seq_tp:.1f}x  (targets: median <= 1000 ms, speed-up >= 5x)")
        return 0
    finally:
        if pebble is not None:
            stop(pebble.proc)
        if bind is not None:
            stop(bind.proc)
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
