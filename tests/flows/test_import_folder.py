"""The `import-folder` flow (issue 16): the UI's door to `certpilot import --dir`, with a progress
artifact updated per batch and the refused bundles in a table artifact (UP-3)."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime

import pytest

from certpilot import runtime as rt
from certpilot.crypto.vault import KeyVault, LocalMasterKey

fleet_folder = importlib.import_module("tests.fixtures.import.fleet")
pytestmark = pytest.mark.flows
NOW = datetime(2026, 2, 1, tzinfo=UTC)


def test_up3_import_folder_flow_reports_progress_and_refusals(tmp_path, prefect_harness):
    """The flow imports the good bundles in batches of 2, refuses the bad ones with their reason,
    and leaves a 100 % progress artifact, a summary and the refused table; a second run skips all."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.fleet import PROGRESS_KEY, import_folder

    fleet_folder.write_fleet(tmp_path / "fleet")
    svc = rt.local_services(database_url=f"sqlite:///{tmp_path / 'f.db'}", clock=lambda: NOW,
                            vault=KeyVault(LocalMasterKey(bytes(range(32)), source="test")))
    with rt.use(svc):
        first = import_folder(str(tmp_path / "fleet"), batch_size=2)
        again = import_folder(str(tmp_path / "fleet"), batch_size=2)
    assert first == {"imported": 4, "skipped": 0, "refused": 7}
    assert again == {"imported": 0, "skipped": 4, "refused": 7}
    with get_client(sync_client=True) as client:
        def latest(key):
            found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return max(found, key=lambda a: a.created)

        progress = latest(PROGRESS_KEY)
        refused = latest("import-folder-refused")
    assert progress.data == 100.0 and "6/6 bundle(s)" in progress.description
    rows = json.loads(refused.data) if isinstance(refused.data, str) else refused.data
    assert sorted(r["reason"] for r in rows) == sorted(fleet_folder.REFUSED.values())
