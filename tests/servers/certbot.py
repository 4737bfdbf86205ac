"""A real certbot (PyPI) making real lineages against Pebble + BIND (DNS-01 via certbot-dns-rfc2136).

certbot pins its own `cryptography`, so it lives in its own venv, made on first use
(`pip install "certbot>=5,<6" "certbot-dns-rfc2136>=5,<6"`, about a minute) in the user's cache
(``$XDG_CACHE_HOME/certpilot/certbot-5``, default ``~/.cache/…``) so that a fresh clone on the same
machine reuses it as pip reuses its wheels; or named by ``CERTPILOT_CERTBOT`` (a certbot executable). Without it the tests
that need it skip (fail with ``CI=true``).

`make_lineage(...)` runs ``certbot certonly`` with ``--config-dir/--work-dir/--logs-dir`` in a
temporary directory, ``REQUESTS_CA_BUNDLE`` = Pebble's CA: the lineage is exactly what certbot
writes (``live/``, ``archive/``, ``renewal/NAME.conf``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.base import missing

VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "certpilot" / "certbot-5"


def certbot_executable() -> str:
    """The certbot to run: CERTPILOT_CERTBOT, else the cached venv's (made now if missing).

    Raises:
        RuntimeError: certbot cannot be installed (the message holds pip's last lines).
    """
    if os.environ.get("CERTPILOT_CERTBOT"):
        return os.environ["CERTPILOT_CERTBOT"]
    exe = VENV / "bin" / "certbot"
    if not exe.exists():
        steps = [[sys.executable, "-m", "venv", str(VENV)],
                 [str(VENV / "bin" / "pip"), "install", "-q", "certbot>=5,<6", "certbot-dns-rfc2136>=5,<6"]]
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv[:3])} failed: {(done.stderr or done.stdout)[-800:]}")
    return str(exe)


@pytest.fixture(scope="session")
def certbot_bin() -> str:
    """A certbot executable (see the module); skips (fails in CI) when it cannot be had."""
    try:
        return certbot_executable()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        missing(f"certbot ({exc})")


def make_lineage(certbot: str, base: Path, pebble, bind, *, name: str, domains: list[str],
                 key_type: str = "ecdsa", extra: tuple[str, ...] = (), renew: bool = False) -> Path:
    """Run `certbot certonly` (DNS-01 through BIND's RFC 2136) into `base/config`; with `renew`,
    `certbot renew --force-renewal` once more, so that live/ points at the archive's version 2.

    Returns:
        The certbot configuration directory (`base/config`).
    """
    base.mkdir(parents=True, exist_ok=True)
    config, work, logs = base / "config", base / "work", base / "logs"
    creds = base / "rfc2136.ini"
    if not creds.exists():
        creds.write_text(f"dns_rfc2136_server = 127.0.0.1\ndns_rfc2136_port = {bind.port}\n"
                         f"dns_rfc2136_name = {bind.tsig_name.rstrip('.')}\ndns_rfc2136_secret = {bind.tsig_secret}\n"
                         "dns_rfc2136_algorithm = HMAC-SHA256\n")
        creds.chmod(0o600)
    common = ["--non-interactive", "--config-dir", str(config), "--work-dir", str(work), "--logs-dir", str(logs)]
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)}
    argv = [certbot, "certonly", *common, "--agree-tos", "-m", "ops@example.test", "--server", pebble.directory_url,
            "--authenticator", "dns-rfc2136", "--dns-rfc2136-credentials", str(creds),
            "--dns-rfc2136-propagation-seconds", "1", "--cert-name", name, "--key-type", key_type,
            *[a for d in domains for a in ("-d", d)], *extra]
    _run(argv, env)
    if renew:
        _run([certbot, "renew", *common, "--cert-name", name, "--force-renewal", "--no-random-sleep-on-renew"], env)
    return config


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"certbot failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
