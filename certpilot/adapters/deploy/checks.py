"""Checks of a target's definition against the world, changing nothing: what `certpilot target
add` and `certpilot target test` run (the adapters' own `check()` does the kind-specific part).

Each problem is a (field, sentence) pair naming the field of the definition to fix.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

Problem = tuple[str, str]
RESOLVE_TIMEOUT = 3.0
"""Seconds a name lookup may take before the host counts as unknown (bounded time on bad input)."""


def endpoint_problems(endpoints: Iterable[tuple[str, int, str | None]], *,
                      timeout: float = RESOLVE_TIMEOUT) -> list[Problem]:
    """Endpoints whose host does not resolve (an unknown host), each named `endpoints[i].host`."""
    out: list[Problem] = []
    eps = list(endpoints)
    if not eps:
        return out
    with ThreadPoolExecutor(max_workers=min(8, len(eps))) as pool:
        futures = [pool.submit(socket.getaddrinfo, host, port, proto=socket.IPPROTO_TCP) for host, port, _ in eps]
        for i, ((host, _port, _sni), fut) in enumerate(zip(eps, futures, strict=True)):
            try:
                fut.result(timeout=timeout)
            except (OSError, FutureTimeout, UnicodeError):
                out.append((f"endpoints[{i}].host", f"unknown host {host!r}: it does not resolve from here"))
    return out


def path_problems(field: str, path: Path, *, must_exist: bool, write: bool = True) -> list[Problem]:
    """A served file (or a directory to write in): missing, unreadable, or its directory not writable."""
    path = Path(path)
    if must_exist and not path.exists():
        return [(field, f"{path} does not exist (the site serves it today: give the file it serves)")]
    if path.exists() and not os.access(path, os.R_OK):
        return [(field, f"{path} is not readable by this user")]
    parent = path.parent
    if not parent.is_dir():
        return [(field, f"directory {parent} does not exist")]
    if not os.access(parent, os.R_OK | os.X_OK):
        return [(field, f"directory {parent} is not readable by this user")]
    if write and not os.access(parent, os.W_OK):
        return [(field, f"directory {parent} is not writable by this user (certpilot switches files there)")]
    return []


def command_problems(field: str, argv: Sequence[str] | None) -> list[Problem]:
    """A command whose program is not found (not run: `target add` never reloads anything)."""
    if argv and shutil.which(argv[0]) is None:
        return [(field, f"program {argv[0]!r} not found on this host's PATH")]
    return []
