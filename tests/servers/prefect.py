"""Prefect under test: one temporary API server for the whole session, heartbeats off.

Non-autouse: only tests that run flows ask for `prefect_harness` (it costs ~10 s once).
PREFECT_HOME is pointed at a temp dir by tests/conftest.py before prefect is imported.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """Start `prefect_test_harness` once; sync flows skip their ~1 s heartbeat wait at exit."""
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            yield
