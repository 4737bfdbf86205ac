"""The `discover` flow: find the certificates a list of endpoints (or an nginx configuration)
serves and add the new ones to the inventory as discovered certificates, with a table artifact
of what was found (the UI's way to `certpilot discover`)."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from certpilot.core.discovery import DiscoveryReport
from certpilot.core.secrets import TextParameter
from tasks import discovery as t


@flow(name="discover", log_prints=True)
def discover(endpoints: list[TextParameter] | None = None, nginx_config: TextParameter | None = None,
             connect: TextParameter = "127.0.0.1",
             concurrency: int = 50) -> DiscoveryReport:
    """Discover served certificates.

    Args:
        endpoints: `host`, `host:port` or `host:port/sni` specs.
        nginx_config: path of an nginx configuration on the worker; its TLS `server_name`s are probed.
        connect: where nginx listens when a `listen` names only a port.
        concurrency: connections in flight at most.
    """
    report = t.discover(list(endpoints or []), nginx_config, connect, concurrency)
    create_table_artifact(key="certpilot-discovery", description=(
        f"{report.added} added, {report.known} already known, {report.failed} failed"), table=[
        {"endpoint": i.endpoint, "certificate": i.certificate_id or "", "common name": i.common_name,
         "expires": i.not_after or "", "result": "added" if i.added else "known" if i.known else i.error}
        for i in report.items])
    print(f"discovery: {report.added} added, {report.known} known, {report.failed} failed"
          + (f"; skipped {', '.join(report.skipped)}" if report.skipped else ""))
    return report
