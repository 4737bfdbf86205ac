"""`certpilot up`: the whole product locally, in one command.

Starts (or reuses) a Prefect server on 127.0.0.1:4200 with SQLite, migrates the inventory,
registers the blocks with the embedded defaults (private CA issuer), loads the demo inventory
with deployment targets served by a local TLS endpoint, serves every deployment from this
process and triggers a first scan that renews the due demo certificates end to end. Ctrl-C
stops everything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from certpilot.settings import get_settings

API_HOST = "127.0.0.1"
API_PORT = 4200
DEMO_TLS_PORT = 8443


def _say(message: str) -> None:
    print(f"certpilot up: {message}", flush=True)


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class PrefectServer:
    """A `prefect server start` child process on loopback (SQLite), or one already running."""

    def __init__(self, home: Path, host: str = API_HOST, port: int = API_PORT):
        self.home, self.host, self.port = home, host, port
        self.api_url = f"http://{host}:{port}/api"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Start the server unless one answers already; wait until `/api/health` answers.

        Raises:
            RuntimeError: it did not become healthy in time (the log's tail is in the message).
        """
        if _healthy(self.api_url):
            _say(f"a Prefect server already answers at {self.api_url}; using it")
            return
        log = self.home / "prefect-server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
        env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        env.pop("PREFECT_API_URL", None)
        self.proc = subprocess.Popen(
            [prefect, "server", "start", "--host", self.host, "--port", str(self.port), "--analytics-off"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        delay = 0.1
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _healthy(self.api_url):
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        tail = log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"the Prefect server did not become healthy at {self.api_url}:\n{tail}")

    def stop(self) -> None:
        """Stop the server this object started (not one it found running)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


class DemoTlsServer:
    """A small TLS endpoint serving, per SNI name, the bundle a files target deployed.

    Stands in for the web server of the demo inventory so that `deploy` has something real to
    verify: it reads `<root>/<name>/fullchain.pem` and `key.pem` again whenever they change,
    like a server reloaded after a deployment (DEP-5).
    """

    def __init__(self, root: Path, host: str = API_HOST, port: int = DEMO_TLS_PORT):
        self.root, self.host, self.port = root, host, port
        self._contexts: dict[str, tuple[float, ssl.SSLContext]] = {}
        self._server = None
        self._thread: threading.Thread | None = None

    def _context_for(self, name: str) -> ssl.SSLContext | None:
        directory = self.root / name
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
        """Listen in a daemon thread (asyncio)."""
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

        def run():
            loop = asyncio.new_event_loop()
            self._server = loop.run_until_complete(asyncio.start_server(handle, self.host, self.port, ssl=base))
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="demo-tls", daemon=True)
        self._thread.start()
        ready.wait(10)


def configure_blocks() -> None:
    """Register certpilot's block types and save the embedded defaults when absent."""
    import blocks as b

    b.register_all()
    for block_cls, name, factory in (
        (b.PrivateCaBlock, "default", lambda: b.PrivateCaBlock()),
        (b.CertpilotConfigBlock, "default", lambda: b.CertpilotConfigBlock(default_issuer="private-ca/default")),
    ):
        try:
            block_cls.load(name)
        except ValueError:
            factory().save(name)


def ensure_concurrency_limits() -> None:
    """Create the global concurrency limits of the CA and DNS APIs when absent."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from tasks.pipeline import API_LIMITS

    async def go():
        async with get_client() as client:
            for name, limit in API_LIMITS.items():
                try:
                    await client.read_global_concurrency_limit_by_name(name)
                except Exception:  # noqa: BLE001 - absent: create it
                    await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))

    asyncio.run(go())


def serve_all(first_scan: bool = True) -> None:
    """Serve every deployment from this process (blocking); optionally start a first scan."""
    from prefect import serve

    from flows.admin import cancel, import_certificate, purchase
    from flows.apply import apply
    from flows.deploy import deploy
    from flows.emergency import emergency
    from flows.renew import renew
    from flows.scan import scan

    deployments = [
        scan.to_deployment(name="scan", cron="0 * * * *", description="Hourly inventory scan (PL-4, NT-1, CA-2)."),
        renew.to_deployment(name="renew", description="Stage 1: order and payment."),
        apply.to_deployment(name="apply", description="Stage 2: key, CSR, validation, CA review."),
        deploy.to_deployment(name="deploy", description="Stage 3: deploy and verify."),
        emergency.to_deployment(name="emergency", description="EM-1..3: restore a site with an expired certificate."),
        cancel.to_deployment(name="cancel", description="PL-7: cancel a not-activated certificate."),
        import_certificate.to_deployment(name="import", description="UP-3: import a certificate."),
        purchase.to_deployment(name="purchase", description="Buy a new certificate."),
    ]
    if first_scan:
        threading.Thread(target=_first_scan, name="first-scan", daemon=True).start()
    serve(*deployments, limit=8)


def _first_scan() -> None:
    from prefect.deployments import run_deployment

    for _ in range(120):
        try:
            run = run_deployment("scan/scan", timeout=0, idempotency_key=f"first-scan-{os.getpid()}")
            _say(f"first scan started: flow run {run.name} ({run.id})")
            return
        except Exception:  # noqa: BLE001 - deployments not registered yet
            time.sleep(0.5)


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
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    server = PrefectServer(home)
    _say("starting the Prefect server (SQLite) …")
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        configure_blocks()
        svc = runtime.from_blocks(database_url=settings.db_url)
        runtime.install(svc)
        upgrade_schema(svc)
        ensure_concurrency_limits()
        from certpilot.automations import install as install_automations

        if installed := install_automations():
            _say(f"automations installed: {', '.join(installed)}")
        if with_demo:
            _serve_demo(svc, home, on_demo)
        _say(f"UI: http://{API_HOST}:{API_PORT} — serving deployments (Ctrl-C stops everything)")
        serve_all(first_scan=first_scan)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        _say("stopped")


def _serve_demo(svc, home: Path, on_demo: Callable[[Any], None] | None) -> None:
    """Load the demo inventory and serve its sites on the demo TLS endpoint."""
    from certpilot.demo import run_demo
    from certpilot.demo_targets import install_demo_targets

    report = run_demo(svc)
    if on_demo is not None:
        on_demo(report)
    tls = DemoTlsServer(home / "deploy")
    tls.start()
    count = install_demo_targets(svc, home / "deploy", port=tls.port)
    _say(f"demo inventory loaded; {count} demo site(s) served on https://127.0.0.1:{tls.port} by SNI")
