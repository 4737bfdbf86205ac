"""The discovery task: one call into `certpilot.operations.discovery`."""

from __future__ import annotations

from certpilot import runtime as rt
from certpilot.core.discovery import DiscoveryReport
from certpilot.operations import discovery
from tasks.common import certpilot_task


@certpilot_task(name="discover")
def discover(endpoints: list[str], nginx_config: str | None = None, connect: str = "127.0.0.1",
             concurrency: int = 50) -> DiscoveryReport:
    """Probe the endpoints (and an nginx configuration's TLS names); add what is new as discovered
    certificates (no key held). Reads only: no served site changes."""
    return discovery.discover(rt.services(), endpoints=endpoints, nginx_config=nginx_config, connect=connect,
                              concurrency=concurrency)
