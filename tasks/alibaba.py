"""Tasks of the Alibaba Cloud integration (issue 14): sync an account into the inventory.

One call into `certpilot.operations.alibaba_sync` each; the report carries ids, names, outcomes
and counts, never key material or the AccessKey (the connection is built from its block here).
"""

from __future__ import annotations

from certpilot import runtime as rt
from certpilot.operations.alibaba_sync import SyncReport, sync
from tasks.common import certpilot_task


@certpilot_task(retries=3)
def sync_account(connection: str, owner: str | None = None, connect_to: str | None = None) -> SyncReport:
    """Inventory the account's certificates and bring the package quota to CAS's count; a
    retry after throttling or a 5xx skips what the first try imported (same fingerprint)."""
    svc = rt.services()
    return sync(svc, rt.alibaba_inventory(svc, connection), connection=connection, owner=owner,
                connect_to=connect_to, actor="flow:sync-alibaba")


def publish(report: SyncReport) -> None:
    """A markdown summary (counts, quota) and a table of every certificate's outcome."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    counts = report.bulk.counts
    lines = [f"- **{k}**: {v}" for k, v in sorted(counts.items())]
    lines += [f"- **CAS quota {spec}**: {left} remaining" for spec, left in sorted(report.quota.items())]
    create_markdown_artifact(key="sync-alibaba-summary", description=f"sync of {report.bulk.source}",
                             markdown=f"# sync of `{report.bulk.source}`\n\n" + "\n".join(lines) + "\n")
    create_table_artifact(key="sync-alibaba-certificates", description="every certificate of the account",
                          table=[{"cas": r.source, "common_name": r.common_name, "outcome": r.outcome.value,
                                  "certificate_id": r.certificate_id, "reason": r.reason, "message": r.message}
                                 for r in report.bulk.reports])
