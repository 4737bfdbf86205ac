"""A chunk of renewals for one worker: the launch unit on a fleet (`CERTPILOT_LAUNCH_MODE=workers`).

The scanner starts one `renewal-batch` run per chunk of due renewals; whichever worker takes it
pays one process start and executes the chunk's `renewal` runs in-process (`flows.launch`), each
a top-level run of the `renewal` deployment, by the same idempotency keys as the scanner's own
launches: a batch started twice, or retried, renews every certificate once.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.settings import get_current_settings, temporary_settings

from certpilot.core.runs import LaunchOutcome
from certpilot.core.scan import RenewalLaunch
from flows.launch import LaunchMode, launch_renewals

HEARTBEAT_SECONDS = 30
"""Heartbeat period of the renewal runs a batch executes when none is configured: on a fleet,
the zombie automation marks a run Crashed when its heartbeats stop (its worker died)."""


class BatchIncomplete(RuntimeError):
    """Some renewals of the batch could not be launched (their sentences are in the message)."""


@flow(name="renewal-batch", log_prints=True)
def renewal_batch(items: list[RenewalLaunch]) -> dict[str, int]:
    """Execute a chunk of renewals in this process, a bounded number at a time.

    Args:
        items: the renewals (certificate id, plan years, idempotency key, run name).

    Returns:
        How many runs ended in each `LaunchOutcome` (completed, suspended, failed, live, done...).

    Raises:
        BatchIncomplete: some items could not be launched at all (the batch ends Failed; the
            others ran). A renewal that ran and failed is its own run's failure, not the batch's.
    """
    logger = get_run_logger()
    updates = {} if get_current_settings().flows.heartbeat_frequency else {"flows.heartbeat_frequency": HEARTBEAT_SECONDS}
    with temporary_settings(updates=updates):
        results = launch_renewals(items, mode=LaunchMode.IN_PROCESS)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    logger.info("renewal batch of %d: %s", len(items), ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    errors = [f"{r.certificate_id}: {r.detail}" for r in results if r.outcome is LaunchOutcome.ERROR]
    if errors:
        raise BatchIncomplete(f"{len(errors)} of {len(items)} renewal(s) could not be launched: " + "; ".join(errors))
    return counts
