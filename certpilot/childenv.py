"""The environment of every child process certpilot starts: an allow-list, never the whole of ours.

nginx (`nginx -t`, reload), post-deploy commands and the Prefect server of `certpilot up` get
PATH, HOME, the locale and what their caller names, so no secret of this process (the master
key, cloud credentials, API tokens) reaches them. No settings are read here: it filters a
mapping (`os.environ` by default).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

BASE_CHILD_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
"""Inherited by every child process: what a command needs to find binaries, files and a locale."""
_LOCALE_PREFIX = "LC_"
_SECRET_MARKERS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "SESSION")


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret (never inherited by a child)."""
    upper = name.upper()
    return upper.startswith("AWS_") or any(marker in upper for marker in _SECRET_MARKERS)


def child_env(extra: Mapping[str, str] | None = None, *, keep: Iterable[str] = (),
              environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: an allow-list, never the whole of ours.

    Inherited: `BASE_CHILD_ENV` and the locale (`LC_*`), then the variables named in `keep` (an
    entry ending in `_` keeps every variable with that prefix). A name that looks like a secret
    (`is_secret_name`: *KEY*, *SECRET*, *TOKEN*, *PASSWORD*, AWS_*, CERTPILOT_MASTER_KEY...) is
    never inherited through the base list or a prefix; only an exact name in `keep` or a value
    in `extra` (the caller handing the child its own secret on purpose) reaches the child.

    Args:
        extra: variables set for the child (win over inherited ones).
        keep: exact names or prefixes (ending in `_`) to inherit as well.
        environ: the environment to filter (default os.environ).

    Returns:
        A new dict for `subprocess`'s `env=`.
    """
    source = os.environ if environ is None else environ
    keep = tuple(keep)
    exact = {k for k in keep if not k.endswith("_")}
    prefixes = tuple(k for k in keep if k.endswith("_"))
    env: dict[str, str] = {}
    for name, value in source.items():
        if name in exact:
            env[name] = value
        elif is_secret_name(name):
            continue
        elif name in BASE_CHILD_ENV or name.startswith(_LOCALE_PREFIX) or (prefixes and name.startswith(prefixes)):
            env[name] = value
    env.update(extra or {})
    return env
