"""The Prometheus exporter's HTTP side: `GET /metrics` answers `operations.metrics.exposition`.

Used by `certpilot metrics --listen HOST:PORT` (foreground) and by `certpilot up` as a sidecar
thread (`CERTPILOT_METRICS_LISTEN`). Each scrape reads the store afresh; nothing is cached, so two
exporters on one store agree. A scrape whose store read fails answers 503 with the error's first
line (never a partial page that would read as "no certificates").
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from certpilot.core.errors import BadInputError

if TYPE_CHECKING:
    from certpilot.runtime import Services

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9469"


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) → (host, port).

    Raises:
        BadInputError: not HOST:PORT with a port in 1..65535.
    """
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInputError(f"--listen {listen!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN})")
    return host, int(port)


def make_server(svc: Services, listen: str = DEFAULT_LISTEN) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server answering `/metrics` from `svc`'s store.

    Raises:
        BadInputError: bad `listen`. OSError: the address is in use or not bindable.
    """
    from certpilot.operations.metrics import CONTENT_TYPE, exposition

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics here")
                return
            try:
                body, status, ctype = exposition(svc), 200, CONTENT_TYPE
            except Exception as exc:  # noqa: BLE001 - a failed scrape is a 503, not a crash
                lines = str(exc).splitlines()
                body, status, ctype = f"{type(exc).__name__}: {lines[0] if lines else ''}\n".encode(), 503, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args) -> None:
            log.debug("metrics: " + fmt, *args)

    host, port = parse_listen(listen)
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def start_sidecar(svc: Services, listen: str) -> ThreadingHTTPServer:
    """Serve `/metrics` on a daemon thread (for `certpilot up`); returns the server (`shutdown()` stops it)."""
    server = make_server(svc, listen)
    threading.Thread(target=server.serve_forever, name="certpilot-metrics", daemon=True).start()
    return server
