"""Probe rate: certpilot's TLS prober against a bare asyncio+ssl handshake loop and an openssl loop.

    .venv/bin/python bench/probe_rate.py [--names 1000] [--concurrency 64] [--openssl-names 200]

Starts its own nginx (tests/servers/nginx.py) with N SNI names, each with its own EC P-256
certificate from one test CA, then measures on this machine:
  - certpilot: `aprobe_many` over all N names (leaf + chain read, fingerprint, expiry, names,
    chain check against the trust bundle, outcome);
  - reference: the same connections with a bare asyncio + ssl handshake and nothing else;
  - openssl: `openssl s_client -servername NAME | openssl x509 -enddate` over 200 names, one
    after the other, as an operator's shell loop does.
Prints probes per second for each, certpilot ÷ reference, and `ratio: X` (certpilot ÷ openssl).
Each in-process measurement is run `--rounds` times, alternating, and the best is kept; every
certpilot round starts with a fresh Prober (cold caches).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from certpilot.adapters.probe import Endpoint, ProbeOutcome, Prober, aprobe_many  # noqa: E402
from certpilot.adapters.probe.tls import probe_context  # noqa: E402
from tests.servers.certs import make_ca, make_key, make_leaf  # noqa: E402
from tests.servers.nginx import VHost, start_nginx  # noqa: E402


def make_vhosts(n: int):
    """N vhosts, each with its own leaf (EC P-256) from one intermediate under one root."""
    root = make_ca("bench root")
    ca = make_ca("bench intermediate", issuer=root)
    now = datetime.now(UTC)
    names = [f"n{i:05d}.bench.test" for i in range(n)]
    vhosts = []
    for name in names:
        leaf = make_leaf(ca, [name], now - timedelta(days=1), now + timedelta(days=60), key=make_key("EC-P256"))
        vhosts.append(VHost(name, leaf.fullchain_pem, leaf.key_pem))
    return root, names, vhosts


async def certpilot_pass(prober: Prober, endpoints: list[Endpoint], concurrency: int) -> tuple[float, float, int]:
    """Wall and CPU seconds for certpilot to probe every endpoint, and how many came back OK."""
    started, cpu = time.perf_counter(), time.process_time()
    results = await aprobe_many(endpoints, concurrency=concurrency, timeout=10, trust=prober)
    took = time.perf_counter() - started
    return took, time.process_time() - cpu, sum(r.outcome is ProbeOutcome.OK for r in results)


async def reference_pass(endpoints: list[Endpoint], concurrency: int) -> tuple[float, float, int]:
    """Wall and CPU seconds for a bare asyncio+ssl handshake-only loop over the same endpoints."""
    ctx = probe_context()
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def one(ep: Endpoint) -> int:
        async with gate:
            transport, _ = await loop.create_connection(asyncio.Protocol, ep.host, ep.port, ssl=ctx,
                                                        server_hostname=ep.sni)
            transport.abort()
            return 1

    started, cpu = time.perf_counter(), time.process_time()
    done = await asyncio.gather(*(one(ep) for ep in endpoints))
    return time.perf_counter() - started, time.process_time() - cpu, sum(done)


def openssl_pass(port: int, names: list[str]) -> float:
    """Seconds for `openssl s_client | openssl x509 -enddate` over `names`, sequentially."""
    started = time.perf_counter()
    for name in names:
        cmd = (f"openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null"
               " | openssl x509 -noout -enddate")
        out = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False)
        if "notAfter=" not in out.stdout:
            raise RuntimeError(f"openssl loop failed for {name}: {out.stderr.strip()}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1000, help="SNI names (vhosts, one certificate each)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections in flight")
    parser.add_argument("--openssl-names", type=int, default=200, help="names for the openssl loop")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best kept")
    args = parser.parse_args()

    t0 = time.perf_counter()
    root, names, vhosts = make_vhosts(args.names)
    gen = time.perf_counter() - t0
    work = Path(tempfile.mkdtemp(prefix="probe-bench-"))
    t0 = time.perf_counter()
    server = start_nginx(work, vhosts)
    boot = time.perf_counter() - t0
    try:
        trust = work / "root.pem"
        trust.write_bytes(root.cert_pem)
        endpoints = [Endpoint("127.0.0.1", server.port, n) for n in names]
        print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; "
              f"{args.names} names: certificates {gen:.2f}s, nginx start {boot:.2f}s")

        async def measure():
            await reference_pass(endpoints[: min(100, len(endpoints))], args.concurrency)   # warm-up
            best_c = best_r = best_w = cpu_c = cpu_r = float("inf")
            ok = 0
            for _ in range(args.rounds):
                # A fresh Prober each round: no signature or parse cache carried over (cold numbers).
                prober = Prober(trust, timeout=10)
                took, cpu, ok = await certpilot_pass(prober, endpoints, args.concurrency)
                best_c, cpu_c = min(best_c, took), min(cpu_c, cpu)
                took, cpu, _ = await reference_pass(endpoints, args.concurrency)
                best_r, cpu_r = min(best_r, took), min(cpu_r, cpu)
                # The same Prober again: leaf signatures already checked (a re-scan, a VER-1 poll).
                took, _, _ = await certpilot_pass(prober, endpoints, args.concurrency)
                best_w = min(best_w, took)
            return best_c, best_r, best_w, cpu_c, cpu_r, ok

        best_c, best_r, best_w, cpu_c, cpu_r, ok = asyncio.run(measure())
        if ok != len(endpoints):
            raise SystemExit(f"certpilot: only {ok}/{len(endpoints)} probes were OK")
        certpilot_rate = len(endpoints) / best_c
        reference_rate = len(endpoints) / best_r
        k = min(args.openssl_names, len(names))
        openssl_rate = k / openssl_pass(server.port, names[:k])
        print(f"certpilot prober:   {certpilot_rate:8.1f} probes/s ({len(endpoints)} names, "
              f"concurrency {args.concurrency}, leaf+chain+checks)")
        print(f"certpilot, re-scan: {len(endpoints) / best_w:8.1f} probes/s (same Prober: signature checks cached)")
        print(f"bare asyncio+ssl:   {reference_rate:8.1f} handshakes/s (reference, handshake only)")
        print(f"openssl loop:       {openssl_rate:8.1f} probes/s ({k} names, s_client | x509 -enddate)")
        n = len(endpoints)
        print(f"client CPU per probe: certpilot {cpu_c / n * 1e6:.0f} us, reference {cpu_r / n * 1e6:.0f} us "
              "(load-independent; the difference is certpilot's parsing and checks)")
        print(f"certpilot / reference: {certpilot_rate / reference_rate:.2f} (cold); "
              f"{len(endpoints) / best_w / reference_rate:.2f} (re-scan)")
        print(f"ratio: {certpilot_rate / openssl_rate:.1f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
