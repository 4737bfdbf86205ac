"""`certpilot up`: the whole product locally, in one command.

Starts its own locked-down Prefect server on 127.0.0.1:4200 with SQLite (API auth string,
CSRF on, CORS limited to the UI; never a server it did not start: `certpilot.prefect_server`),
makes CERTPILOT_HOME private (0700), migrates the inventory,
registers the blocks with the embedded defaults (private CA issuer), loads the demo inventory
with deployment targets served by a local TLS endpoint, serves every deployment from this
process and triggers a first scan that renews the due demo certificates end to end. Ctrl-C
stops everything it started.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from certpilot.core.errors import PermanentError
from certpilot.prefect_server import API_HOST, AUTH_FILE, PrefectServer, use_client_env
from certpilot.settings import ensure_home, get_settings

DEMO_TLS_PORT = 8443


def _say(message: str) -> None:
    print(f"certpilot up: {message}", flush=True)


class DemoTlsServer:
    """A small TLS endpoint serving, per SNI name, the bundle a files target deployed.

    Stands in for the web server of the demo inventory so that `deploy` has something real to
    verify: it reads `<root>/<name>/fullchain.pem` and `key.pem` again whenever they change,
    like a server reloaded after a deployment (DEP-5).

    The SNI name a client sends is never used to build a path: it is looked up in the set of
    names served (the directories under `root` whose name is a valid host name in normal form,
    not symlinks), and only a directory of that set is read. `..`, `/`, NUL, an over-long or
    otherwise hostile name matches nothing and gets the unrecognized-name alert.
    """

    def __init__(self, root: Path, host: str = API_HOST, port: int = DEMO_TLS_PORT):
        self.root, self.host, self.port = root, host, port
        self._contexts: dict[str, tuple[float, ssl.SSLContext]] = {}
        self._served: tuple[float, dict[str, Path]] = (-1.0, {})
        self._server = None
        self._thread: threading.Thread | None = None

    def served_names(self) -> dict[str, Path]:
        """The names served and their directories (re-read when `root` changes)."""
        from certpilot.core.names import normalize_name

        try:
            stamp = self.root.stat().st_mtime
        except OSError:
            return {}
        if stamp == self._served[0]:
            return self._served[1]
        served: dict[str, Path] = {}
        for entry in os.scandir(self.root):
            if not entry.is_dir(follow_symlinks=False):
                continue
            try:
                if normalize_name(entry.name) == entry.name:
                    served[entry.name] = self.root / entry.name
            except Exception:  # noqa: BLE001 - a directory that is not a host name is not served
                continue
        self._served = (stamp, served)
        return served

    def _context_for(self, name: str) -> ssl.SSLContext | None:
        directory = self.served_names().get(name.lower()) if len(name) <= 253 else None
        if directory is None:
            return None
        name = directory.name
        chain, key = directory / "fullchain.pem", directory / "key.pem"
        if not (chain.exists() and key.exists()):
            return None
        stamp = max(chain.stat().st_mtime, key.stat().st_mtime)
        cached = self._contexts.get(name)
        if cached and cached[0] == stamp:
            return cached[1]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(chain, key)
        self._contexts[name] = (stamp, ctx)
        return ctx

    def start(self) -> None:
        """Listen in a daemon thread (asyncio); returns once listening.

        Raises:
            PermanentError: the port cannot be bound (in use), saying what to do; nothing listens.
        """
        import asyncio

        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

        def sni(sslobj, server_name, _ctx):
            ctx = self._context_for(server_name or "")
            if ctx is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            sslobj.context = ctx
            return None

        base.sni_callback = sni

        async def handle(reader, writer):
            try:
                await reader.read(1024)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\nconnection: close\r\n\r\ncertpilot demo ok")
                await writer.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                writer.close()

        ready = threading.Event()
        failed: list[OSError] = []

        def run():
            loop = asyncio.new_event_loop()
            try:
                self._server = loop.run_until_complete(asyncio.start_server(handle, self.host, self.port, ssl=base))
            except OSError as exc:  # the port is taken: told to the caller, not printed by the thread
                failed.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="demo-tls", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failed:
            raise PermanentError(
                f"the demo sites' TLS endpoint cannot listen on {self.host}:{self.port} ({failed[0].strerror}): "
                "another `certpilot up` (with another CERTPILOT_HOME) or another server holds that port; stop it, "
                "or run `certpilot up --no-demo`") from None


def up(*, with_demo: bool = True, first_scan: bool = True, on_demo: Callable[[Any], None] | None = None) -> None:
    """Run the product locally until Ctrl-C (see the module docstring).

    The services are built once, from the blocks just configured (`runtime.from_blocks`), and
    installed for this process: the demo's keys are sealed in the vault the served flow runs
    (each in its own process, building the same services from the same blocks) open them with.

    Args:
        with_demo: load the demo inventory and serve its sites.
        first_scan: start a scan as soon as the deployments are served.
        on_demo: called with the demo's `DemoReport` once it is loaded (the CLI prints it).

    Raises:
        MissingBlockError: the certpilot-config block names a block that does not exist.
    """
    from certpilot import runtime
    from certpilot.operations.admin import upgrade_schema

    settings = get_settings()
    home = settings.home
    if tightened := ensure_home(home):
        _say(tightened)
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    server = PrefectServer(home)
    _say(f"starting the Prefect server (SQLite) on port {server.port} …")
    server.start()
    # This process and the flow runs the runner starts (they inherit os.environ) are its clients.
    use_client_env(server.client_env())
    try:
        from certpilot.serving import serve_all
        from certpilot.setup import configure_blocks, ensure_concurrency_limits

        configure_blocks()
        svc = runtime.from_blocks(database_url=settings.db_url)
        runtime.install(svc)
        upgrade_schema(svc)
        ensure_concurrency_limits()
        _metrics_sidecar(svc)
        from certpilot.automations import install as install_automations

        if installed := install_automations():
            _say(f"automations installed: {', '.join(installed)}")
        if with_demo:
            _serve_demo(svc, home, on_demo)
        _say(f"UI: {server.ui_url} (log in with the auth string in {home / AUTH_FILE}) — serving deployments "
             "(Ctrl-C stops everything)")
        serve_all(first_scan=first_scan)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        _say("stopped")


def _metrics_sidecar(svc) -> None:
    """Serve the Prometheus metrics beside the deployments (CERTPILOT_METRICS_LISTEN, default
    127.0.0.1:9469; `off` disables). An address in use is said, not fatal: `certpilot metrics
    --listen` serves them too."""
    from certpilot.metrics_server import DEFAULT_LISTEN, start_sidecar

    listen = os.environ.get("CERTPILOT_METRICS_LISTEN", DEFAULT_LISTEN)
    if listen.lower() == "off":
        return
    try:
        start_sidecar(svc, listen)
        _say(f"metrics: http://{listen}/metrics")
    except Exception as exc:  # noqa: BLE001 - a bad address or a port in use is said, never fatal
        _say(f"metrics not served on {listen} ({exc}); set CERTPILOT_METRICS_LISTEN or run `certpilot metrics`")


def _serve_demo(svc, home: Path, on_demo: Callable[[Any], None] | None) -> None:
    """Load the demo inventory and serve its sites on the demo TLS endpoint."""
    from certpilot.demo import run_demo
    from certpilot.demo_targets import install_demo_targets

    report = run_demo(svc)
    if on_demo is not None:
        on_demo(report)
    tls = DemoTlsServer(home / "deploy")
    tls.start()
    count = install_demo_targets(svc, home / "deploy", port=tls.port, home=home, ids=report.load.ids)
    _say(f"demo inventory loaded; {count} demo site(s) served on https://127.0.0.1:{tls.port} by SNI")
