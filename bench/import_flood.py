"""Import flood: how long certpilot takes to refuse (or accept) each hostile bundle of issue 15.

    .venv/bin/python bench/import_flood.py [--chain-n 400] [--begin-lines 8000]

Runs `crypto.importer.inspect_bundle` (the parsing and checking layer every import goes
through) on the issue's two quadratic reproductions at full size — 8,000 `BEGIN` lines without
`END` (264 KB) and a chain of N same-name intermediates — and on every case of the hostile test
corpus (tests/fixtures/import/hostile.py). Prints each case's time and outcome, then
`worst: <case> <seconds>`. Run it against an older checkout (PYTHONPATH=<old tree>) to compare.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from certpilot.core.errors import CertpilotError  # noqa: E402
from certpilot.crypto.importer import inspect_bundle  # noqa: E402

hostile = importlib.import_module("tests.fixtures.import.hostile")


def timed(cert: bytes, key: bytes | None, chain: bytes | None, passphrase: bytes | None = None
          ) -> tuple[float, str]:
    """Seconds to inspect one bundle, and what happened (the reason, or 'accepted')."""
    started = time.perf_counter()
    try:
        inspect_bundle(cert, key, chain, now=hostile.pki.NOW, passphrase=passphrase)
        outcome = "accepted"
    except CertpilotError as exc:
        outcome = f"{exc.reason}"
    return time.perf_counter() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain-n", type=int, default=400)
    parser.add_argument("--begin-lines", type=int, default=8000)
    parser.add_argument("--no-corpus", action="store_true", help="only the issue's two reproductions")
    args = parser.parse_args()
    base = hostile.pki.corpus()["base"]
    cases: dict[str, tuple] = {
        f"begin_flood_{args.begin_lines}": (b"-----BEGIN CERTIFICATE-----\nMIIB\n" * args.begin_lines,
                                            base.key, base.chain, None),
        f"same_name_chain_{args.chain_n}": (*hostile.same_name_chain(args.chain_n), None),
    }
    if not args.no_corpus:
        cases.update({name: (c.cert, c.key, c.chain, c.passphrase)
                      for name, (c, _, _) in hostile.hostile_cases().items()})
    worst = ("", 0.0)
    for name, (cert, key, chain, passphrase) in cases.items():
        seconds, outcome = timed(cert, key, chain, passphrase)
        print(f"{name:40s} {seconds:8.3f}s  {outcome}  ({len(cert) + len(key or b'') + len(chain or b'')} bytes)",
              flush=True)
        if seconds > worst[1]:
            worst = (name, seconds)
    print(f"worst: {worst[0]} {worst[1]:.3f}s")


if __name__ == "__main__":
    main()
