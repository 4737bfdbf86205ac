"""Moving a fleet in from the UI: `import-folder` imports every bundle of a folder on the worker.

The same use case as `certpilot import --dir DIR`: the folder is read once (`discover_folder`),
then its bundles are imported in batches (one task run per batch, one transaction per bundle),
a progress artifact updated after each batch and the report published at the end. Keys are
read from the folder by the task that seals them; an encrypted keys' passphrase comes from a
Prefect Secret block named by `passphrase_block`, never from a parameter.
"""

from __future__ import annotations

from prefect import flow

from certpilot.core.bulk import BulkOutcome
from certpilot.core.secrets import TextParameter
from tasks import fleet as t

PROGRESS_KEY = "import-folder-progress"


@flow(name="import-folder", log_prints=True)
def import_folder(directory: TextParameter, origin: TextParameter = "uploaded", level: TextParameter = "DV",
                  brand: TextParameter = "certpilot", owner: TextParameter | None = None, batch_size: int = 200,
                  passphrase_block: TextParameter | None = None
                  ) -> dict[str, int]:
    """Import every bundle (certificate, key, chain matched by keys) of `directory` (UP-3).

    Returns the counts: imported, skipped (already in the inventory), refused (each with UP-3's
    reason in the `import-folder-refused` table artifact).
    """
    progress = t.ImportProgress(PROGRESS_KEY)
    found = t.discover_folder(directory)
    reports = list(found.refused)
    bundles = list(found.bundles)
    counts = {o.value: sum(1 for r in reports if r.outcome is o) for o in BulkOutcome}
    progress.update(0, len(bundles), counts)
    for start in range(0, len(bundles), max(1, batch_size)):
        batch = t.import_bundles(found.directory, bundles[start:start + batch_size], origin, level, brand, owner,
                                 passphrase_block)
        reports += batch
        for r in batch:
            counts[r.outcome.value] += 1
        progress.update(min(start + batch_size, len(bundles)), len(bundles), counts)
    t.publish_report("import-folder", found.directory, reports, found.ignored)
    print(f"import of {found.directory}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return counts
