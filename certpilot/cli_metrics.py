"""`certpilot metrics`: the Prometheus exporter (`--listen HOST:PORT`) or one page (`--once`).

Registered by `certpilot.cli` (`register(module)`). Like the rest of the CLI it reaches the store
through `certpilot.operations` (the page) and `certpilot.metrics_server` (the HTTP side).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Annotated

from cyclopts import Parameter

_cli: ModuleType | None = None


def register(cli: ModuleType) -> None:
    """Add `metrics` to `cli.app`."""
    global _cli
    _cli = cli
    cli.app.command(metrics, name="metrics")


def metrics(*, listen: Annotated[str, Parameter(help="HOST:PORT to serve /metrics on.")] = "127.0.0.1:9469",
            once: Annotated[bool, Parameter(negative="", help="Print the page once and exit.")] = False) -> int:
    """Serve the Prometheus metrics of the inventory, deployments, fleet probe and quota.

    Metric names: certpilot_certificate_expiration_timestamp_seconds{id,name,origin,level},
    certpilot_certificate_renewal_due_timestamp_seconds{id,name}, certpilot_certificate_status{status},
    certpilot_deployment_last_status{target,name,status}, certpilot_probe_ssl_earliest_cert_expiry{endpoint},
    certpilot_quota_remaining{spec}. Runs until interrupted (Ctrl-C).
    """
    from certpilot.metrics_server import make_server
    from certpilot.operations.metrics import exposition

    svc = _cli._ctx.services()
    if once:
        sys.stdout.write(exposition(svc).decode())
        return _cli.EXIT_OK
    server = make_server(svc, listen)
    host, port = server.server_address[:2]
    _cli._ctx.console(stderr=True).print(f"serving certpilot metrics on http://{host}:{port}/metrics (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return _cli.EXIT_OK
