"""Operator views at scale: each `certpilot` read as a whole CLI process on 100,000 certificates.

    .venv/bin/python bench/views.py [--n 100000] [--due 300] [--repeat 3] [--code DIR] [--db PATH]

Builds the inventory `bench/scan.py` builds (N certificates, `--due` 2-year plans; `--db` reuses a
file built before), then runs, each as a fresh process (`python -m certpilot.cli`, best of
`--repeat`), and prints wall seconds, CPU seconds (user + sys of the child) and the output size:

- `list --status expiring_soon --expiring-within 30`   target <= 1 s
- `list --json` (the whole inventory)                    target <= 4 s
- `show ID`                                               target <= 0.5 s
- `inbox`, `quota`: constant in the inventory size

each beside its floor: the bare `sqlite3` query of the same rows (the sqlite3 command-line
program as a process, and Python's stdlib sqlite3 in this process). `show`, `inbox` and `quota`
are also run on a 1,000-certificate inventory: their time must not grow with the inventory.
`python -c pass` and `certpilot --help` are printed as the start-up floor of any CLI process.

`--code DIR` runs the CLI of another checkout (e.g. `git archive 386709b | tar -x -C /tmp/before`)
with this venv, to measure before/after on the same inventory.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

AT = "2025-09-01T00:00:00Z"
AT_SQL = "2025-09-01 00:00:00.000000"
SOON_SQL = "2025-10-01 00:00:00.000000"  # AT + 30 days: the --expiring-within horizon
WINDOW_SQL = "2025-10-31 00:00:00.000000"  # AT + 60 days: LC-4's window
COLS = ("id, common_name, names, cert_type, origin, level, brand, key_algorithm, state, not_before, not_after, "
        "parent_id, order_id, plan_index, serial, fingerprint_sha256, owner_email")
FLOORS = {
    "soon": (f"SELECT {COLS} FROM certificates WHERE state IN ('issued','uploaded') AND not_after >= '{AT_SQL}' "
             f"AND not_after <= '{WINDOW_SQL}' AND not_after <= '{SOON_SQL}' ORDER BY not_after, id"),
    "json": f"SELECT {COLS} FROM certificates ORDER BY not_after IS NULL, not_after, id",
    "show": f"SELECT {COLS} FROM certificates WHERE id = 'v5'",
    "inbox": "SELECT * FROM messages WHERE read = 0 ORDER BY at DESC, id DESC LIMIT 100",
    "quota": "SELECT kind, spec_key, sum(delta) FROM ledger_entries GROUP BY kind, spec_key",
}


def run_cli(args: list[str], env: dict[str, str], repeat: int) -> tuple[float, float, int, int]:
    """Best wall seconds of `repeat` runs of the CLI, the CPU seconds of that run, bytes printed, exit code."""
    best = None
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "certpilot.cli", *args], env=env, capture_output=True,
                              cwd=env["PYTHONPATH"])
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"certpilot {' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[-800:]}")
        if best is None or wall < best[0]:
            best = (wall, cpu, len(done.stdout), done.returncode)
    return best


def run_process(argv: list[str], repeat: int, env: dict[str, str] | None = None) -> float:
    """Best wall seconds of a plain process (the floors)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, env=env)
        best = min(best, time.perf_counter() - t0)
    return best


def stdlib_floor(path: Path, sql: str, repeat: int) -> tuple[float, int]:
    """Best seconds of the query with Python's sqlite3 (fetchall) and its row count."""
    best, rows = float("inf"), 0
    for _ in range(repeat):
        conn = sqlite3.connect(path)
        t0 = time.perf_counter()
        rows = len(conn.execute(sql).fetchall())
        best = min(best, time.perf_counter() - t0)
        conn.close()
    return best, rows


def build(path: Path, n: int, due: int, code: Path) -> None:
    """The scan benchmark's inventory (built by `code`'s bench/scan.py, so that its schema is that
    checkout's), plus a few inbox messages and ledger entries."""
    script = (f"import sys; sys.path.insert(0, {str(code / 'bench')!r}); from scan import build; "
              f"build({'sqlite:///' + str(path)!r}, {n}, {due})")
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "PYTHONPATH": str(code)}, cwd=code)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO messages (at, kind, certificate_id, common_name, subject, body, read) "
                         "VALUES (?, 'expiry', ?, ?, ?, 'body', 0)",
                         [(AT_SQL, f"v{i}", f"v{i}.example.test", f"certpilot: v{i} expires") for i in range(50)])
        conn.executemany("INSERT INTO ledger_entries (id, kind, spec_key, delta, amount, idempotency_key, created_at, "
                         "note) VALUES (?, 'quota', 'DigiCert/DV/single', 1, 0, ?, ?, '')",
                         [(f"l{i}", f"bench:{i}", AT_SQL) for i in range(20)])
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--code", type=Path, default=None, help="run the CLI of this checkout instead")
    parser.add_argument("--db", type=Path, default=None, help="reuse (or build at) this inventory file")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="certpilot-bench-views-"))
    code = (args.code or ROOT).resolve()
    big = args.db or tmp / "big.db"
    small = tmp / "small.db"
    t0 = time.perf_counter()
    if not big.exists():
        build(big, args.n, args.due, code)
    build(small, 1000, 10, code)
    print(f"inventories: {args.n} and 1000 certificates ({time.perf_counter() - t0:.1f} s to build)")

    env = {**os.environ, "CERTPILOT_HOME": str(tmp / "home"), "PREFECT_HOME": str(tmp / "prefect"),
           "PYTHONPATH": str(code)}
    print(f"code: {code}")
    # First use of each database migrates it (this checkout's heads): not part of any measurement.
    for db in (big, small):
        run_cli(["db", "upgrade"], {**env, "CERTPILOT_DATABASE_URL": f"sqlite:///{db}"}, 1)

    sqlite_cli = shutil.which("sqlite3")
    start = run_process([sys.executable, "-c", "pass"], args.repeat)
    help_s = run_cli(["--help"], env, args.repeat)[0]
    print(f"start-up floor: python -c pass {start:.3f} s, certpilot --help {help_s:.3f} s")
    cases = [
        ("soon", ["list", "--status", "expiring_soon", "--expiring-within", "30", "--at", AT], 1.0),
        ("json", ["list", "--json", "--at", AT], 4.0),
        ("show", ["show", "v5", "--at", AT], 0.5),
        ("inbox", ["inbox"], None),
        ("quota", ["quota"], None),
    ]
    print(f"{'command':<52} {'n':>7} {'wall s':>7} {'cpu s':>6} {'bytes':>9} {'target':>7}  "
          f"{'sqlite3 CLI':>11} {'stdlib q':>8} {'rows':>6}")
    for key, argv, target in cases:
        for db, n in ((big, args.n), (small, 1000)):
            if key in ("soon", "json") and db is small:
                continue
            wall, cpu, size, _ = run_cli(argv, {**env, "CERTPILOT_DATABASE_URL": f"sqlite:///{db}"}, args.repeat)
            cli_floor = run_process([sqlite_cli, str(db), FLOORS[key]], args.repeat) if sqlite_cli else float("nan")
            q_floor, rows = stdlib_floor(db, FLOORS[key], args.repeat)
            verdict = "-" if target is None else ("ok" if wall <= target else f">{target:g}")
            print(f"{' '.join(argv):<52} {n:>7} {wall:>7.3f} {cpu:>6.2f} {size:>9} {verdict:>7}  "
                  f"{cli_floor:>11.3f} {q_floor:>8.3f} {rows:>6}")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs "
          "(wall times on a shared machine include waiting for a CPU; the CPU column does not)")


if __name__ == "__main__":
    main()
