"""`sync-alibaba`: an Alibaba Cloud account's certificates into the inventory, on a schedule.

The same use case as `certpilot sync alibaba`: every certificate CAS lists (official and uploaded)
with its brand, level, names, dates and the cloud resources serving it, and the package quota
brought to CAS's count. Renewing what is due is the scan's job, as for any certificate.
"""

from __future__ import annotations

from prefect import flow

from certpilot.core.secrets import TextParameter
from tasks import alibaba as t


@flow(name="sync-alibaba", log_prints=True)
def sync_alibaba(connection: TextParameter = "default", owner: TextParameter | None = None,
                 connect_to: TextParameter | None = None) -> dict[str, int]:
    """Inventory the Alibaba Cloud account of block `certpilot-alibaba-cloud/<connection>`.

    Args:
        connection: the connection block's name.
        owner: who hears of expiry of the certificates imported now (NT-1).
        connect_to: ``host:port`` to probe resources' domains at instead of ``domain:443``.

    Returns:
        How many certificates were imported, skipped (already there) and refused (with UP-3's
        reason in the `sync-alibaba-certificates` artifact).
    """
    report = t.sync_account(connection, owner, connect_to)
    t.publish(report)
    quota = ", ".join(f"{left} {spec}" for spec, left in sorted(report.quota.items()))
    print(f"sync of {report.bulk.source}: " + ", ".join(f"{v} {k}" for k, v in report.bulk.counts.items())
          + (f"; CAS quota: {quota} remaining" if quota else ""))
    return report.bulk.counts
