"""Tasks and helpers of the `scan` flow: one decision, one task per due item, the artifacts.

Each task is one call into `certpilot.operations.scan` (the review poll: into
`certpilot.operations.pipeline.follow_review`, the door the renewal run uses too), which owns its
transactions and returns a frozen result of `certpilot.core`; a retry or a second scanner is
harmless (PL-8, NT-1, CA-2). A remote CA's API limit is taken around the review poll (Prefect's
global concurrency; the operation says which limits, none for the embedded private CA). The artifact helpers are plain functions (not tasks): the scan creates
task runs only for the certificates that need action.
"""

from __future__ import annotations

from datetime import datetime

from certpilot import runtime as rt
from certpilot.core.fleet import FleetReport
from certpilot.core.outcomes import ReviewOutcome
from certpilot.core.scan import InFlight, ManagedStart, ScanPlan, ScanSummary, StartOutcome
from certpilot.core.text import md_escape, visible
from certpilot.operations import fleet, inbox, inventory_report, pipeline
from certpilot.operations import scan as ops
from tasks.common import certpilot_task
from tasks.pipeline import api_slots

PROGRESS_KEY = "scan-progress"
TABLE_KEY = "scan-inventory"
SUMMARY_KEY = "scan-summary"
INBOX_KEY = "certpilot-inbox"
INVENTORY_KEY = "certpilot-inventory"
INVENTORY_PAGE_KEY = "certpilot-inventory-page"
DEPLOYMENTS_KEY = "certpilot-deployments"


def renewal_info_due(limit: int = 100) -> tuple[str, ...]:
    """The certificates whose CA's renewal window (ARI) should be read before this scan decides
    (never read, or its Retry-After passed): a plain read, no task run of its own."""
    from certpilot.operations import issuers

    return issuers.renewal_info_due(rt.services(), limit=limit)


@certpilot_task(name="renewal-info")
def refresh_renewal_info(certificate_id: str) -> bool:
    """Read the certificate's renewal window from its CA (ARI, RFC 9773) and keep it until its
    Retry-After; the CA's API slot is held around the request. True when the CA gave a window."""
    from certpilot.operations import issuers

    with api_slots((pipeline.CA_LIMIT,)):
        return issuers.renewal_info(rt.services(), certificate_id).window is not None


@certpilot_task(name="scan-decide")
def decide(table_limit: int = 500) -> ScanPlan:
    """Decide one scan (PL-4, CA-2, NT-1, automatic renewals) in one read-only transaction, at
    the services' clock.

    Args:
        table_limit: at most this many inventory table lines.

    Returns:
        The `ScanPlan` (IDs, names, numbers, launch keys: no key material, nothing large).
    """
    return ops.decide(rt.services(), table_limit=table_limit)


@certpilot_task(name="scan-managed-start")
def start_managed_application(start: ManagedStart, at: datetime | None = None) -> StartOutcome:
    """PL-4/PL-5/PL-8: make one managed start (exactly once); NT-2 when it must wait."""
    return ops.start_managed(rt.services(), start, at)


@certpilot_task(name="scan-follow-review")
def follow_review(certificate_id: str, at: datetime | None = None) -> ReviewOutcome:
    """CA-2: poll the CA once for an application under review; the owner hears of a rejection once.
    A remote CA's API slot is held around the poll (shared with the renewal's ca-review stage)."""
    return pipeline.follow_review(rt.services(), certificate_id, at, gate=api_slots, actor="scanner")


@certpilot_task(name="scan-expiry-notice")
def send_expiry_notice(certificate_id: str, threshold: int, days_left: int, at: datetime | None = None) -> bool:
    """NT-1: record the notice and send it in one transaction (two scanners send it once).

    Returns:
        True when this call sent it, False when it was already recorded.
    """
    return ops.send_expiry_notice(rt.services(), certificate_id, threshold, days_left, at)


@certpilot_task(name="scan-probe-fleet")
def probe_fleet(at: datetime | None = None) -> FleetReport:
    """Probe every endpoint of every deployment target; tell drift, broken chains and expiring
    served certificates once each (inbox, notice, Prefect event)."""
    return fleet.probe_fleet(rt.services(), at)


@certpilot_task(name="scan-unfinished-work")
def unfinished_work(pending: list[str], issued_now: list[str]) -> tuple[InFlight, ...]:
    """The certificates whose work is unfinished, each with the run that last claimed it (pending
    applications among `pending`, issued certificates not deployed; `issued_now`: just issued by
    this scan's review polls)."""
    return ops.unfinished_work(rt.services(), pending, issued_now)


@certpilot_task(name="scan-report-problem", retries=2)
def report_problem(certificate_id: str, action: str, error: str) -> int:
    """Tell the owner the scan could not do `action` for a certificate (at most once a day).

    Returns:
        How many channels delivered (0 when already told today).
    """
    return ops.report_problem(rt.services(), certificate_id, action, error)


# ------------------------------------------------------------------ artifacts (plain helpers)


class Progress:
    """The scan's progress artifact (created at start, updated at most ~20 times)."""

    def __init__(self) -> None:
        from prefect.artifacts import create_progress_artifact

        self.id = create_progress_artifact(0.0, key=PROGRESS_KEY, description="scan: deciding")
        self.total = 0
        self.done = 0
        self._shown = 0.0

    def plan(self, total: int) -> None:
        """Set how many actions the scan will take (after the decision: 5 %)."""
        self.total = total
        self._update(5.0, f"scan: {total} action(s) to take")

    def tick(self, n: int = 1) -> None:
        """`n` more actions done."""
        self.done += n
        pct = 5.0 + 95.0 * self.done / max(self.total, 1)
        if pct - self._shown >= 5.0 or self.done >= self.total:
            self._update(min(pct, 100.0), f"scan: {self.done}/{self.total} action(s) done")

    def _update(self, pct: float, description: str) -> None:
        from prefect.artifacts import update_progress_artifact

        self._shown = pct
        update_progress_artifact(self.id, pct, description=description)


def publish(plan: ScanPlan, summary: ScanSummary) -> None:
    """The inventory table (name, status, days left, plan, next action) and a markdown summary."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    rows = [{"name": visible(x.common_name, limit=253), "id": visible(x.id, limit=64), "status": x.status,
             "days left": "" if x.days_left is None else x.days_left, "plan": x.plan, "next action": x.next_action}
            for x in plan.lines]
    rows = rows or [{"name": "-", "id": "-", "status": "-", "days left": "", "plan": "-",
                     "next action": "nothing due"}]
    at = plan.at_iso
    create_table_artifact(rows, key=TABLE_KEY, description=f"Certificates that need attention at {at} (most urgent first)")
    counts = " | ".join(f"{k}: {v}" for k, v in plan.counts) or "no certificates"
    lines = [f"# Scan at {at}", "", f"**Inventory**: {plan.certificates} certificate(s) — {counts}", "",
             "| action | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary.rows()]
    if summary.problems:
        lines += ["", f"## {len(summary.problems)} item(s) failed (the rest went on)", "",
                  "| certificate | what | error |", "|---|---|---|"]
        lines += [f"| {md_escape(p.certificate_id or '-')} | {md_escape(p.action)} | {md_escape(p.error)} |"
                  for p in summary.problems]
    create_markdown_artifact("\n".join(lines) + "\n", key=SUMMARY_KEY, description="scan summary")
    publish_inventory(plan.at)
    publish_inbox()


def publish_inventory(at: datetime | None = None) -> int:
    """The whole inventory (counts per status and origin, expiry buckets, the certificates page by
    page, soonest expiry first) and the deployment targets table; returns how many pages."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    r = inventory_report.inventory_report(rt.services(), at)
    lines = [f"# Inventory at {r.at}: {r.total} certificate(s)", "", "| status | count |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in r.counts]
    lines += ["", "| origin | count |", "|---|---|"] + [f"| {k} | {n} |" for k, n in r.origins]
    lines += ["", "| live certificates that | count |", "|---|---|"] + [f"| {k} | {n} |" for k, n in r.expiring]
    rest = r.total - r.shown
    lines += ["", f"Listed: {r.shown} (soonest expiry first, artifacts `{INVENTORY_PAGE_KEY}-1`…"
                  f"`{INVENTORY_PAGE_KEY}-{len(r.pages)}`)" + (f"; {rest} more counted above, listed by "
                                                               "`certpilot list`" if rest else ""),
              f"Deployment targets: {len(r.deployments)} (artifact `{DEPLOYMENTS_KEY}`)"]
    create_markdown_artifact("\n".join(lines) + "\n", key=INVENTORY_KEY, description="the whole inventory")
    for i, page in enumerate(r.pages, 1):
        create_table_artifact(list(page), key=f"{INVENTORY_PAGE_KEY}-{i}",
                              description=f"Inventory page {i} of {len(r.pages)} at {r.at} (soonest expiry first)")
    create_table_artifact(list(r.deployments) or [{"target": "-", "last deployment": "no deployment targets"}],
                          key=DEPLOYMENTS_KEY, description=f"Deployment targets at {r.at}: newest task, probe findings")
    return len(r.pages)


def publish_inbox(limit: int = 50) -> int:
    """DEP-3/NT-2: the unread in-product messages as a markdown artifact (newest first)."""
    from prefect.artifacts import create_markdown_artifact

    unread = inbox.messages(rt.services(), limit=limit)
    lines = [f"# certpilot inbox: {len(unread)} unread message(s)", ""]
    for m in unread:
        # Subjects and bodies name certificates (CNs from outside): escaped, and the body's own
        # fences neutralized so it cannot close the code block and inject markdown.
        lines += [f"## {md_escape(m.subject)}",
                  f"*{m.at:%Y-%m-%d %H:%M}Z · {md_escape(m.kind)} · certificate {md_escape(m.certificate_id)}*", "",
                  "```", m.body.strip().replace("`", "'"), "```", ""]
    if not unread:
        lines.append("Nothing needs you.")
    create_markdown_artifact("\n".join(lines) + "\n", key=INBOX_KEY,
                             description="in-product messages: failed deployments, human steps, expiry")
    return len(unread)
