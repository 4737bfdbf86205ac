"""Debian nginx in a temporary prefix on a loopback port, with SNI vhosts, for tests and benches.

`start_nginx(workdir, vhosts)` writes one `server` block per `VHost` (its own certificate and key
files under the prefix) and runs `nginx -g "daemon off;"` as a child process we own, so stopping
it is a kill by PID; `-s reload` still works through the pid file inside the prefix.

Fixtures:
- `nginx_ca`: a test root and intermediate (session).
- `nginx_server`: one nginx for the session with vhosts a/b/c.example.test serving leaves from
  `nginx_ca`. Do not leave it changed: a test that deploys or breaks things uses `nginx_factory`.
- `nginx_factory`: `make(vhosts=None) -> NginxServer`, a fresh nginx per call (~15 ms), stopped
  after the test; with no argument, the same three names with fresh leaves.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.servers.base import free_port, missing, port_open, spawn, stop, wait_until, which
from tests.servers.certs import Leaf, TestCA, make_ca, make_leaf

NGINX_BIN_FALLBACKS = ("/usr/sbin/nginx",)
DEFAULT_NAMES = ("a.example.test", "b.example.test", "c.example.test")


@dataclass
class VHost:
    """One SNI virtual host: its name and the PEMs it serves at start.

    `cert_pem` is what goes into `ssl_certificate` (a leaf or a full chain, leaf first).
    """

    server_name: str
    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:  # never print key material
        return f"VHost({self.server_name!r})"


def _slug(name: str) -> str:
    """A file-system-safe directory name for a server name (`*.x` → `_wildcard_.x`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("*", "_wildcard_"))


@dataclass
class NginxServer:
    """A running nginx in `prefix`; paths of each vhost's files; control commands."""

    binary: str
    prefix: Path
    port: int
    proc: subprocess.Popen
    names: list[str]
    extra: dict = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        """The main configuration file."""
        return self.prefix / "conf" / "nginx.conf"

    @property
    def error_log(self) -> Path:
        """nginx's error log (notice level: reloads are logged)."""
        return self.prefix / "error.log"

    @property
    def pid_file(self) -> Path:
        """The master's pid file, used by `-s reload`."""
        return self.prefix / "nginx.pid"

    def cert_path(self, name: str) -> Path:
        """The `ssl_certificate` file of vhost `name`."""
        return self.prefix / "certs" / _slug(name) / "fullchain.pem"

    def key_path(self, name: str) -> Path:
        """The `ssl_certificate_key` file of vhost `name`."""
        return self.prefix / "certs" / _slug(name) / "key.pem"

    def _base_argv(self) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log)]

    def check_argv(self) -> list[str]:
        """argv of the configuration test (`nginx -t`) for this instance."""
        return [*self._base_argv(), "-t", "-q"]

    def reload_argv(self) -> list[str]:
        """argv of a graceful reload (`nginx -s reload`) for this instance."""
        return [*self._base_argv(), "-s", "reload"]

    def test_config(self) -> subprocess.CompletedProcess:
        """Run `nginx -t`; the result carries returncode and output (stderr says why it failed)."""
        return subprocess.run(self.check_argv(), capture_output=True, text=True, timeout=30)

    def worker_pids(self) -> set[int]:
        """PIDs of the master's current children (the workers; renewed by every reload)."""
        return _children_of(self.proc.pid)

    def reload(self, *, wait: bool = True, timeout: float = 10.0) -> None:
        """Send a graceful reload; with `wait`, return once only new workers answer.

        A new worker runs the new configuration; the old ones keep accepting for ~100 ms while
        they shut down gracefully, so this also waits (up to `timeout`) for them to exit — an old
        worker held by a client's open connection is left to finish.

        Raises RuntimeError when nginx refuses the reload command or no new worker appears
        (the master keeps its old configuration when the new one does not load).
        """
        before = self.worker_pids()
        done = subprocess.run(self.reload_argv(), capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"nginx -s reload failed: {done.stderr.strip()}")
        if wait:
            wait_until(lambda: bool(self.worker_pids() - before), timeout=timeout,
                       what="nginx reload (new worker)", log=self.error_log)
            try:
                wait_until(lambda: not (self.worker_pids() & before), timeout=timeout,
                           what="nginx reload (old workers exit)")
            except RuntimeError:
                pass  # a lingering connection keeps an old worker: it no longer accepts new ones

    def master_start_time(self) -> datetime:
        """When the master process started (UTC); unchanged by reloads."""
        return _proc_start_time(self.proc.pid)

    def last_load_time(self) -> datetime | None:
        """When the running configuration was loaded: the start of the newest worker (UTC).

        For the "was the service reloaded" diagnosis (VER-2): compare with the certificate
        files' modification time.
        """
        times = [t for pid in self.worker_pids() if (t := _safe_start_time(pid)) is not None]
        return max(times) if times else None

    def running(self) -> bool:
        """True while the master process lives."""
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop nginx (TERM to its process group, KILL if it lingers)."""
        stop(self.proc)

    def __repr__(self) -> str:
        return f"NginxServer(port={self.port}, vhosts={len(self.names)}, prefix={str(self.prefix)!r})"


def _children_of(pid: int) -> set[int]:
    """Children of `pid`, read from /proc (the `children` file, or a scan of every stat)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return {int(p) for p in children.read_text().split()}
    except OSError:
        pass
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("no btime in /proc/stat")


def _proc_start_time(pid: int) -> datetime:
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22 counted after "pid (comm)"
    return datetime.fromtimestamp(_boot_time() + ticks / os.sysconf("SC_CLK_TCK"), tz=UTC)


def _safe_start_time(pid: int) -> datetime | None:
    try:
        return _proc_start_time(pid)
    except (OSError, IndexError, ValueError):
        return None


def render_config(prefix: Path, port: int, names: list[str], *, as_root: bool) -> str:
    """nginx.conf for `names` on 127.0.0.1:`port`; everything nginx writes stays in `prefix`.

    One `server` block per name (the first is the default server for clients without SNI);
    hash sizes are raised so that thousands of names load.
    """
    p = str(prefix)
    blocks = []
    for i, name in enumerate(names):
        d = f"{p}/certs/{_slug(name)}"
        default = " default_server" if i == 0 else ""
        blocks.append(
            f"  server {{\n    listen 127.0.0.1:{port} ssl{default};\n    server_name {name};\n"
            f"    ssl_certificate {d}/fullchain.pem;\n    ssl_certificate_key {d}/key.pem;\n"
            f"    location / {{ return 200 \"{name}\\n\"; }}\n  }}\n")
    temp = "".join(f"  {kind}_temp_path {p}/tmp/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # As root, nginx would switch workers to `nobody`; keep them as root so they can read
    # everything in a 0700 pytest temp dir.
    user = "user root;\n" if as_root else ""
    return (
        f"{user}worker_processes 1;\nworker_rlimit_nofile 16384;\npid {p}/nginx.pid;\n"
        f"error_log {p}/error.log notice;\n"
        "events { worker_connections 8192; }\n"
        "http {\n  access_log off;\n"
        "  server_names_hash_bucket_size 128;\n  server_names_hash_max_size 65536;\n"
        "  ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_session_cache off;\n"
        f"{temp}" + "".join(blocks) + "}\n"
    )


def write_vhost_files(prefix: Path, vhost: VHost) -> None:
    """Write a vhost's certificate and key (key 0600 from creation) under the prefix."""
    d = prefix / "certs" / _slug(vhost.server_name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "fullchain.pem").write_bytes(vhost.cert_pem)
    fd = os.open(d / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(vhost.key_pem)


def start_nginx(workdir: Path, vhosts: list[VHost], *, port: int | None = None,
                timeout: float = 20.0) -> NginxServer:
    """Start nginx in `workdir/nginx-PORT` serving `vhosts` on 127.0.0.1:`port` (free by default).

    Args:
        workdir: a directory we own; the prefix is created inside it.
        vhosts: the SNI virtual hosts (at least one); the first is the default server.
        port: loopback port; a free one when None.
    Raises:
        FileNotFoundError: no nginx binary. RuntimeError: nginx did not start (log tail inside).
    """
    binary = which("nginx", *NGINX_BIN_FALLBACKS)
    if binary is None:
        raise FileNotFoundError("nginx")
    if not vhosts:
        raise ValueError("start_nginx needs at least one vhost")
    port = port or free_port()
    prefix = Path(workdir) / f"nginx-{port}"
    for sub in ("conf", "certs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    for vh in vhosts:
        write_vhost_files(prefix, vh)
    names = [vh.server_name for vh in vhosts]
    conf = prefix / "conf" / "nginx.conf"
    conf.write_text(render_config(prefix, port, names, as_root=os.geteuid() == 0))
    log = prefix / "nginx.stdout.log"
    proc = spawn([binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
                  "-g", "daemon off;"], log=log)
    server = NginxServer(binary=binary, prefix=prefix, port=port, proc=proc, names=names)
    try:
        wait_until(lambda: port_open(port) and server.pid_file.exists() and bool(server.worker_pids()),
                   timeout=timeout, what="nginx", proc=proc, log=prefix / "error.log")
    except RuntimeError:
        server.stop()
        raise
    return server


def vhosts_for(ca: TestCA, names: list[str] | tuple[str, ...], **leaf_kwargs) -> tuple[list[VHost], dict[str, Leaf]]:
    """One vhost per name, each with its own leaf from `ca` (full chain served, DEP-6)."""
    leaves = {n: make_leaf(ca, [n], **leaf_kwargs) for n in names}
    return [VHost(n, leaves[n].fullchain_pem, leaves[n].key_pem) for n in names], leaves


@pytest.fixture(scope="session")
def nginx_ca() -> TestCA:
    """A test intermediate CA (under a test root) that signs the vhosts' leaves."""
    root = make_ca("certpilot test root")
    return make_ca("certpilot test intermediate", issuer=root)


def _start_or_skip(workdir: Path, vhosts: list[VHost]) -> NginxServer:
    try:
        return start_nginx(workdir, vhosts)
    except FileNotFoundError as exc:
        missing(f"nginx ({exc})")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def nginx_server(tmp_path_factory, nginx_ca) -> Iterator[NginxServer]:
    """nginx with vhosts a/b/c.example.test for the session; `extra["leaves"]` maps name → Leaf.

    Shared: read it, do not change it (use `nginx_factory` to deploy or break things).
    """
    vhosts, leaves = vhosts_for(nginx_ca, DEFAULT_NAMES)
    server = _start_or_skip(tmp_path_factory.mktemp("nginx"), vhosts)
    server.extra.update(leaves=leaves, ca=nginx_ca)
    yield server
    server.stop()


@pytest.fixture
def nginx_factory(tmp_path, nginx_ca):
    """`make(vhosts=None) -> NginxServer`: a fresh nginx per call, stopped after the test.

    With no vhosts, a/b/c.example.test with fresh leaves from `nginx_ca` (`extra["leaves"]`).
    """
    started: list[NginxServer] = []

    def make(vhosts: list[VHost] | None = None) -> NginxServer:
        leaves: dict[str, Leaf] = {}
        if vhosts is None:
            vhosts, leaves = vhosts_for(nginx_ca, DEFAULT_NAMES)
        server = _start_or_skip(tmp_path / f"n{len(started)}", vhosts)
        server.extra.update(leaves=leaves, ca=nginx_ca)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
