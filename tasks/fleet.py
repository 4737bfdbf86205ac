"""Tasks of the fleet imports (issue 16): find a folder's bundles, import a batch of them.

Each task is one call into `certpilot.operations.bulk_import`; bundles travel as references
(paths and PEM block positions, `core.bulk.FoundBundle`), never as PEM or key material. The
progress artifact helper is here, like the scan's (it is a Prefect call).
"""

from __future__ import annotations

from certpilot import runtime as rt
from certpilot.core.bulk import BundleReport, FoundBundle
from certpilot.operations import bulk_import
from tasks.common import certpilot_task


@certpilot_task
def discover_folder(directory: str) -> bulk_import.Discovery:
    """The folder's bundles (by reference), the files refused while reading it and those ignored."""
    return bulk_import.discover(directory, passphrase=_passphrase(None))


@certpilot_task(retries=2)
def import_bundles(directory: str, bundles: list[FoundBundle], origin: str, level: str, brand: str,
                   owner: str | None, passphrase_block: str | None = None) -> list[BundleReport]:
    """Import a batch of found bundles, one transaction each (UP-3); refused and skipped ones are
    reports, not failures. A retried batch skips what it imported before (same fingerprint)."""
    return bulk_import.import_batch(rt.services(), directory, bundles, origin=origin, level=level, brand=brand,
                                    owner=owner, passphrase=_passphrase(passphrase_block), actor="flow:import-folder")


def _passphrase(block: str | None) -> str | None:
    """The keys' passphrase from a Prefect Secret block (never a flow parameter: CSR-5)."""
    if block is None:
        return None
    from prefect.blocks.system import Secret

    return Secret.load(block).get()


class ImportProgress:
    """The import's progress artifact: created at start, updated after each batch."""

    def __init__(self, key: str) -> None:
        from prefect.artifacts import create_progress_artifact

        self.id = create_progress_artifact(0.0, key=key, description="import: reading the folder")

    def update(self, done: int, total: int, counts: dict[str, int]) -> None:
        """`done` of `total` bundles imported, skipped or refused so far."""
        from prefect.artifacts import update_progress_artifact

        pct = 100.0 if total == 0 else 100.0 * done / total
        update_progress_artifact(self.id, pct, description=f"import: {done}/{total} bundle(s): "
                                 + ", ".join(f"{v} {k}" for k, v in counts.items()))


def publish_report(key: str, source: str, reports: list[BundleReport], ignored: tuple[str, ...]) -> None:
    """A markdown summary and a table of the refused bundles (files, reason, what to do)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    counts: dict[str, int] = {}
    for r in reports:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    create_markdown_artifact(
        key=f"{key}-summary", description=f"import of {source}",
        markdown=f"# import of `{source}`\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in sorted(counts.items()))
        + f"\n- **ignored files**: {len(ignored)}\n")
    refused = [r for r in reports if r.outcome.value == "refused"]
    if refused:
        create_table_artifact(key=f"{key}-refused", description="refused (UP-3): nothing of these was stored",
                              table=[{"files": ", ".join(r.files), "reason": r.reason, "message": r.message}
                                     for r in refused])
