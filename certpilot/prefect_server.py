"""The local Prefect server `certpilot up` runs: a `prefect server start` child on loopback, locked down.

- API auth: a random auth string, generated once into `$CERTPILOT_HOME/prefect-api-auth` (0600),
  is the server's `PREFECT_SERVER_API_AUTH_STRING`; every client (this process, the runner's flow
  runs, the CLI) sends it as `PREFECT_API_AUTH_STRING` (`client_env`). The UI asks for it at login.
- CSRF protection on; CORS limited to the UI's own origins (`ui_origins`).
- Block secrets encrypted with a key kept out of the server's database when the database is new
  (`$CERTPILOT_HOME/prefect-encryption-key`, 0600, as `PREFECT_SERVER_ENCRYPTION_KEY`).
- Ownership: one `certpilot up` per home (an exclusive lock the kernel drops when the process
  dies, even by `kill -9`), a state file naming the server it started; a server on the port that
  it did not start is refused, never used; a server its dead predecessor left is stopped.
- The server dies with `certpilot up`: on Linux the child asks the kernel for SIGKILL when its
  parent dies (`PR_SET_PDEATHSIG`), so a hard kill of `up` leaves no server behind.
- The child's environment is an allow-list (`certpilot.childenv.child_env`): no master key, no
  cloud credential, no token of this process reaches it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from certpilot.childenv import child_env
from certpilot.core.errors import PermanentError
from certpilot.settings import ensure_home, get_settings

API_HOST = "127.0.0.1"
API_PORT = 4200
AUTH_FILE = "prefect-api-auth"
"""Under CERTPILOT_HOME, 0600: `certpilot:<random>`, the API's basic-auth string."""
ENCRYPTION_KEY_FILE = "prefect-encryption-key"
"""Under CERTPILOT_HOME, 0600: the Fernet key encrypting block documents in the server's database."""
STATE_FILE = "prefect-server.json"
"""Under CERTPILOT_HOME: which server process `certpilot up` started (pid, start time, port)."""
LOCK_FILE = "up.lock"
"""Under CERTPILOT_HOME: held (flock) by the running `certpilot up`; the kernel drops it on death."""
AUTH_USER = "certpilot"

SERVER_ENV_KEEP = (
    "PREFECT_HOME", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH", "PREFECT_SERVER_", "PREFECT_API_DATABASE_",
    "PREFECT_LOGGING_", "PREFECT_SERVER_ENCRYPTION_KEY", "PREFECT_SERVER_DATABASE_PASSWORD",
    "PREFECT_API_DATABASE_PASSWORD",
)
"""What the server child inherits beyond the base allow-list: its own settings (database, logging,
an operator's encryption key or database password), nothing of the clients' (no PREFECT_API_KEY,
no PREFECT_API_AUTH_STRING, no CERTPILOT_*, no AWS_*)."""

_PR_SET_PDEATHSIG = 1


class ServerInUseError(PermanentError):
    """`certpilot up` cannot start its Prefect server: the port or the home is taken by another process."""


def _say(message: str) -> None:
    print(f"certpilot up: {message}", flush=True)


def ui_origins(host: str, port: int) -> list[str]:
    """The browser origins of the UI the server serves (the only ones CORS lets in)."""
    origins = [f"http://{host}:{port}"]
    if host in ("127.0.0.1", "localhost"):
        origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    return origins


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` 0600 from the first byte, atomically; an existing file wins (first writer)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_private(path: Path, what: str) -> str | None:
    """The stripped text of a 0600 secret file, None when absent.

    Raises:
        PermanentError: the file is readable by group or others (its secret may be known).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_mode & 0o077:
        raise PermanentError(f"{what} {path} is accessible by group or others (mode {st.st_mode & 0o777:04o}): "
                             f"delete it so that `certpilot up` makes a new one, or `chmod 600 {path}`")
    return path.read_text().strip()


def load_auth(home: Path) -> str | None:
    """The API auth string `certpilot up` made for `home`, or None when it never ran there.

    Raises:
        PermanentError: the auth file is group/world accessible.
    """
    return _read_private(Path(home) / AUTH_FILE, "the Prefect API auth file")


def ensure_auth(home: Path) -> str:
    """The API auth string of `home`, generated (random, 0600 file; the home made 0700) on first use.

    Raises:
        PermanentError: the auth file is group/world accessible; the home is not ours.
    """
    path = Path(home) / AUTH_FILE
    if not path.exists():
        ensure_home(Path(home))
        _write_private(path, f"{AUTH_USER}:{secrets.token_urlsafe(32)}\n".encode())
    auth = load_auth(home)
    if not auth:
        raise PermanentError(f"the Prefect API auth file {path} is empty: delete it so that `certpilot up` "
                             "makes a new one")
    return auth


def client_env(home: Path) -> dict[str, str]:
    """`PREFECT_API_URL` and `PREFECT_API_AUTH_STRING` of the server `certpilot up` runs from `home`.

    The URL is the one the running (or last) `certpilot up` recorded, else the default port.
    Empty when `home` has no auth file (`certpilot up` never ran there): nothing to add.

    Raises:
        PermanentError: the auth file is group/world accessible.
    """
    auth = load_auth(home)
    if not auth:
        return {}
    state = _read_state(Path(home))
    url = state.get("api_url") or f"http://{API_HOST}:{get_settings().prefect_port}/api"
    return {"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": auth}


def cli_env(home: Path) -> dict[str, str]:
    """What a command-line process adds to its environment to reach `certpilot up`'s server,
    respecting the operator's own Prefect configuration (environment and active profile).

    - No Prefect API configured: the URL and auth string of `certpilot up` from `home`.
    - `PREFECT_API_URL` (or the profile's) is that server's URL and no auth string is
      configured: the auth string only.
    - Any other API (a remote server, Prefect Cloud): nothing; the operator's settings stand.
    Empty when `certpilot up` never ran from `home`.

    Raises:
        PermanentError: the auth file is group/world accessible.
    """
    local = client_env(home)
    if not local:
        return {}
    from prefect.settings.models.root import Settings

    configured = Settings()  # environment + active profile, as Prefect's client will read them
    url = configured.api.url
    if not url:
        return local
    same = {local["PREFECT_API_URL"], local["PREFECT_API_URL"].replace("//127.0.0.1:", "//localhost:", 1)}
    if url.rstrip("/") in same and configured.api.auth_string is None:
        return {"PREFECT_API_AUTH_STRING": local["PREFECT_API_AUTH_STRING"]}
    return {}


def use_client_env(env: Mapping[str, str]) -> None:
    """Make this process a client of that API: set the variables and refresh Prefect's settings.

    Prefect reads its settings from the environment once, when imported; a process that set the
    variables after importing it would still talk to the old URL without the auth string.
    """
    os.environ.update(env)
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell it from a reused pid."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_line.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    """Whether `pid` is running and is the same process (same start time when known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not one we started
    return start is None or _proc_start(pid) in (None, start)


def _read_state(home: Path) -> dict:
    try:
        return json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _port_in_use(host: str, port: int) -> bool:
    """Whether something listens on host:port (binding it, as the server will, fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _die_with_parent(parent_pid: int):
    """A `preexec_fn` asking Linux to SIGKILL the child when its parent dies (`kill -9` included).

    The death signal fires when the *thread* that forked the child ends, so `start` must be
    called from a thread that lives as long as the server should (the main thread in `up`).
    """
    def preexec() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec if sys.platform.startswith("linux") else None


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _encryption_key(home: Path) -> str | None:
    """The key encrypting block secrets in the server's database, None to leave Prefect's default.

    Made (0600 file) only when the server's database is a SQLite file that does not exist yet:
    a database whose blocks Prefect already encrypted with the key it keeps in that database
    would become unreadable under another key. An operator's own `PREFECT_SERVER_ENCRYPTION_KEY`
    is inherited by the child as it is (`SERVER_ENV_KEEP`).
    """
    path = home / ENCRYPTION_KEY_FILE
    if os.environ.get("PREFECT_SERVER_ENCRYPTION_KEY"):
        return None
    if not path.exists():
        from prefect.settings.models.root import Settings

        url = Settings().server.database.connection_url
        url = url.get_secret_value() if url is not None else ""
        database = url.split(":///", 1)[1] if url.startswith("sqlite") and ":///" in url else None
        if database is None or database == ":memory:" or Path(database).exists():
            return None
        from cryptography.fernet import Fernet

        _write_private(path, Fernet.generate_key() + b"\n")
    return _read_private(path, "the Prefect encryption key file")


class PrefectServer:
    """The `prefect server start` child of `certpilot up` on loopback (SQLite), locked down.

    `start` refuses when another `certpilot up` runs from the same home, or when anything
    already listens on the port; it stops a server a dead predecessor (same home) left running.
    """

    def __init__(self, home: Path, host: str = API_HOST, port: int | None = None):
        self.home, self.host = Path(home), host
        self.port = get_settings().prefect_port if port is None else port
        self.api_url = f"http://{host}:{self.port}/api"
        self.ui_url = f"http://{host}:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._lock_fd: int | None = None

    def client_env(self) -> dict[str, str]:
        """`PREFECT_API_URL` and `PREFECT_API_AUTH_STRING` for the clients of this server."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_API_AUTH_STRING": ensure_auth(self.home)}

    def server_env(self) -> dict[str, str]:
        """The child's whole environment: the allow-list plus the lock-down settings.

        Raises:
            PermanentError: a secret file under the home is group/world accessible.
        """
        settings = {
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_API_AUTH_STRING": ensure_auth(self.home),
            "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
            "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": ",".join(ui_origins(self.host, self.port)),
            "PREFECT_SERVER_UI_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        if key := _encryption_key(self.home):
            settings["PREFECT_SERVER_ENCRYPTION_KEY"] = key
        return child_env(settings, keep=SERVER_ENV_KEEP)

    def start(self, timeout: float = 90.0) -> None:
        """Start the server and wait until `/api/health` answers.

        Raises:
            ServerInUseError: another `certpilot up` runs from this home, or something (not started
                by this home's `certpilot up`) listens on the port: the message names the port.
            RuntimeError: it did not become healthy in time (the log's tail is in the message).
        """
        self.claim()
        log = self.home / "prefect-server.log"
        prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
        with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
            self.proc = subprocess.Popen(
                [prefect, "server", "start", "--host", self.host, "--port", str(self.port), "--analytics-off"],
                stdout=out, stderr=subprocess.STDOUT, env=self.server_env(), start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()))  # noqa: PLW1509 - only prctl and getppid run there
        self._write_state()
        self._wait_healthy(log, timeout)

    def claim(self) -> None:
        """Make this home and port ours: take the home's lock, stop what a dead predecessor left.

        Raises:
            ServerInUseError: another `certpilot up` runs from this home, or something still listens
                on the port that this home's `certpilot up` did not start (named in the message).
        """
        self._take_home()
        self._reclaim()
        if _port_in_use(self.host, self.port):
            self.release()
            raise ServerInUseError(
                f"port {self.port} on {self.host} is already in use by a server this certpilot up did not start "
                f"(a Prefect server started by hand, or another program): certpilot up will not use it (it "
                f"runs its own, locked-down server). Stop that server (`prefect server stop` for a background "
                f"Prefect server), or set CERTPILOT_PREFECT_PORT to a free port")

    def _wait_healthy(self, log: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.1
        while time.monotonic() < deadline and self.proc.poll() is None:
            if _healthy(self.api_url):
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        tail = log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"the Prefect server did not become healthy at {self.api_url}:\n{tail}")

    def _take_home(self) -> None:
        """Hold this home's `up` lock for the life of this process (the kernel drops it on death).

        Raises:
            ServerInUseError: another live `certpilot up` holds it.
        """
        import fcntl

        if self._lock_fd is not None:
            return
        ensure_home(self.home)
        fd = os.open(self.home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            state = _read_state(self.home)
            raise ServerInUseError(
                f"another certpilot up (pid {state.get('owner_pid', '?')}) is running from {self.home} with its "
                f"Prefect server on port {state.get('port', '?')}: use it, or stop it (Ctrl-C) first") from None
        self._lock_fd = fd

    def _reclaim(self) -> None:
        """Stop the server a previous `certpilot up` of this home left running, if any.

        Called with the home's lock held: the owner recorded in the state file is dead.
        """
        state = _read_state(self.home)
        pid, start = state.get("server_pid"), state.get("server_start")
        if isinstance(pid, int) and _alive(pid, start) and b"prefect" in _cmdline(pid):
            _say(f"stopping the Prefect server (pid {pid}, port {state.get('port')}) a previous certpilot up left")
            _terminate_group(pid, grace=15.0)
            deadline = time.monotonic() + 10
            while _port_in_use(self.host, int(state.get("port", self.port))) and time.monotonic() < deadline:
                time.sleep(0.2)
        (self.home / STATE_FILE).unlink(missing_ok=True)

    def _write_state(self) -> None:
        state = {"owner_pid": os.getpid(), "owner_start": _proc_start(os.getpid()), "server_pid": self.proc.pid,
                 "server_start": _proc_start(self.proc.pid), "host": self.host, "port": self.port,
                 "api_url": self.api_url}
        path = self.home / STATE_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh)
        os.replace(tmp, path)

    @property
    def pid(self) -> int | None:
        """The server process's pid while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def stop(self) -> None:
        """Stop the server this object started (never one it did not) and release the home."""
        if self.proc is not None and self.proc.poll() is None:
            _terminate_group(self.proc.pid, grace=15.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if self.proc is not None:
            (self.home / STATE_FILE).unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        """Let go of the home's lock (another `certpilot up` may start)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b"prefect"  # no /proc (not Linux): the pid and its start time were all we could check


def _terminate_group(pid: int, grace: float) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it if it is still there after `grace` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
