"""Suite-wide setup: isolated homes before anything imports prefect, shared server fixtures."""

from __future__ import annotations

import os
import tempfile

# Before prefect or certpilot is imported anywhere: nothing of the suite touches ~/.
_home = tempfile.mkdtemp(prefix="certpilot-test-")
os.environ.setdefault("PREFECT_HOME", os.path.join(_home, "prefect"))
os.environ["CERTPILOT_HOME"] = os.path.join(_home, "certpilot")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

pytest_plugins = [
    "tests.servers.moto",
    "tests.servers.postgres",
    "tests.servers.acme",
    "tests.servers.acme2certifier",
    "tests.servers.nginx",
    "tests.servers.smtp",
    "tests.servers.prefect",
    "tests.servers.certbot",
    "tests.servers.alibaba",
]
