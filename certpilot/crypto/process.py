"""Process hardening for processes that hold private keys in memory (issue 15).

A core dump of a process that opened a key writes that key to disk, readable by whoever reads
the dump (systemd-coredump, apport, a core file in the working directory). `no_core_dumps()`
sets RLIMIT_CORE to 0 and, on Linux, clears the process's "dumpable" flag (which also stops
core_pattern pipe handlers, which ignore RLIMIT_CORE, and same-user ptrace attach). The vault
calls it before it first opens or seals a key, so every process holding one is covered.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
import threading

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

_done = False
_lock = threading.Lock()


def no_core_dumps() -> None:
    """Turn core dumps off for this process (idempotent, cheap after the first call)."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ValueError, OSError):  # pragma: no cover - a platform without the limit
            pass
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        _done = True


def dumpable() -> bool | None:
    """Whether this process may dump core (Linux; None elsewhere): False once `no_core_dumps` ran."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
