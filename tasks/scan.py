"""Tasks and helpers of the `scan` flow: one decision, one task per due item, the artifacts.

The decision task returns plain data (IDs, names, numbers); every other task acts on one
certificate in its own transaction through `certpilot.operations.scan`, so a retry or a second
scanner is harmless (PL-8, NT-1). The artifact helpers are plain functions (not tasks): the scan
creates task runs only for the certificates that need action.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from certpilot import runtime as rt
from certpilot.core.errors import IllegalTransitionError, TransientError
from certpilot.core.models import Status
from certpilot.core.scan import ManagedStart
from certpilot.operations.common import iso, parse_instant
from tasks.common import certpilot_task

PROGRESS_KEY = "scan-progress"
TABLE_KEY = "scan-inventory"
SUMMARY_KEY = "scan-summary"


def instant(at: str | None) -> datetime:
    """The scan's `now`: the ISO 8601 `at` when given (injected time), else the runtime clock."""
    return parse_instant(at) if at else rt.services().clock()


@certpilot_task(name="scan-decide")
def decide(at: str | None = None, table_limit: int = 500) -> dict[str, Any]:
    """Decide one scan (PL-4, CA-2, NT-1) in one read-only transaction; plain data only.

    Returns:
        ``{"at", "counts", "managed_starts", "resume_reviews", "renewals_due", "notices", "lines"}``:
        lists of dicts with IDs, names and numbers (no key material, nothing large).
    """
    from certpilot.operations import scan as ops
    from certpilot.store.db import session_scope

    run = rt.services()
    now = instant(at)
    with session_scope(run.database_url, readonly=True) as s:
        d = ops.decide_scan(s, now, run.policy, table_limit=table_limit)
        years = ops.renewal_years(s, [r.certificate_id for r in d.renewals_due])
    return {
        "at": iso(now),
        "counts": dict(sorted(d.counts.items())),
        "managed_starts": [{"certificate_id": m.certificate_id, "predecessor_id": m.predecessor_id,
                            "order_id": m.order_id, "days_left": m.days_left} for m in d.managed_starts],
        "resume_reviews": list(d.resume_reviews),
        "resume_applications": list(d.resume_applications),
        "renewals_due": [{"certificate_id": r.certificate_id, "years": years[r.certificate_id],
                          "key": f"renew-{r.certificate_id}-{r.not_after.date().isoformat() if r.not_after else ''}"}
                         for r in d.renewals_due],
        "notices": [{"certificate_id": n.certificate_id, "common_name": n.common_name,
                     "threshold": n.threshold_days, "days_left": n.days_left} for n in d.notices],
        "lines": [{"name": x.common_name, "id": x.id, "status": x.status,
                   "days left": "" if x.days_left is None else x.days_left, "plan": x.plan,
                   "next action": x.next_action} for x in d.lines],
    }


def _event(kind: str, certificate_id: str, common_name: str, subject: str, body: str):
    from certpilot.adapters.notify.base import EventKind, NotificationEvent

    return NotificationEvent(kind=EventKind(kind), certificate_id=certificate_id, common_name=common_name,
                             subject=subject, body=body)


def _send(event, session=None) -> int:
    """Send through every notifier; all of them failing is transient (the caller rolls back and
    retries, so the notice is not recorded as sent). Returns how many channels delivered."""
    run = rt.services()
    failures = run.notify(event, session=session)
    if run.notifiers and len(failures) == len(run.notifiers):
        raise TransientError(f"no notification channel delivered {event.kind.value} for {event.common_name} "
                             f"({', '.join(failures)} failed); retrying")
    return len(run.notifiers) - len(failures)


@certpilot_task(name="scan-managed-start")
def start_managed_application(certificate_id: str, predecessor_id: str, order_id: str, days_left: int,
                              at: str | None = None) -> dict[str, Any]:
    """PL-4/PL-5/PL-8: record and make one managed start (exactly once); NT-2 when it must wait.

    Returns:
        ``{"certificate_id", "outcome", "detail", "notified"}`` (outcome: started, waiting_manual,
        already, skipped).
    """
    from certpilot.operations import scan as ops

    run = rt.services()
    start = ManagedStart(certificate_id, predecessor_id, order_id, days_left)
    notified = 0
    try:
        with run.session() as s:
            out = ops.start_managed(s, start, now=instant(at), dns_writable=run.dns_writable)
            if out.notify_owner:
                # In the transaction that records it: if no channel delivers, the start (a
                # `waiting_manual` row) rolls back with it and the next scan decides it again.
                notified = _send(_event(
                    "action_needed", certificate_id, out.common_name,
                    f"certpilot: the next certificate of {out.common_name} needs a manual submission",
                    f"The managed start of certificate {certificate_id} ({out.common_name}) could not start by "
                    f"itself (PL-5): {out.detail}\n"), session=s)
    except IllegalTransitionError as exc:  # moved meanwhile (cancelled, submitted by hand): nothing kept
        return {"certificate_id": certificate_id, "outcome": "skipped", "detail": exc.message, "notified": 0}
    return {"certificate_id": certificate_id, "outcome": out.outcome, "detail": out.detail, "notified": notified}


@certpilot_task(name="scan-follow-review")
def follow_review(certificate_id: str, at: str | None = None) -> dict[str, Any]:
    """CA-2: poll the CA once for an application under review; tell the owner once on rejection.

    Returns:
        ``{"certificate_id", "state", "detail"}`` with the certificate's lifecycle state after.
    """
    from certpilot.operations import applications
    from certpilot.operations import scan as ops
    from certpilot.store.repository import Repository

    run = rt.services()
    with run.session() as s:
        cert = Repository(s).certificate_model(certificate_id)
        if cert.state is not Status.UNDER_REVIEW:
            return {"certificate_id": certificate_id, "state": cert.state.value, "detail": ""}
        from prefect.concurrency.sync import concurrency

        from tasks.pipeline import CA_LIMIT

        with concurrency(CA_LIMIT, occupy=1, strict=False):  # the CA's API, shared with `apply`
            res = applications.refresh(s, certificate_id, run.issuer_for(cert, emergency=cert.temporary),
                                       now=instant(at), actor="scanner")
        state = Repository(s).certificate_model(certificate_id).state
        if state is Status.REJECTED and ops.record_notice(s, certificate_id, ops.CA_REJECTED, 0, res.detail,
                                                          now=instant(at)):
            _send(_event("action_needed", certificate_id, cert.common_name,
                         f"certpilot: the CA rejected {cert.common_name}",
                         f"The CA rejected the application of certificate {certificate_id} ({cert.common_name}) "
                         f"(CA-2): {res.detail or 'no detail given'}. Fix the application data and resubmit it "
                         f"(the `apply` deployment, certificate_id={certificate_id}).\n"), session=s)
    return {"certificate_id": certificate_id, "state": state.value, "detail": res.detail}


@certpilot_task(name="scan-expiry-notice")
def send_expiry_notice(certificate_id: str, common_name: str, threshold: int, days_left: int,
                       at: str | None = None) -> bool:
    """NT-1: record the notice, then send it, in one transaction (two scanners send it once).

    Returns:
        True when this call sent it, False when it was already recorded.

    Raises:
        TransientError: every channel failed (rolled back: the retry sends it).
    """
    from certpilot.operations import scan as ops

    run = rt.services()
    detail = f"{days_left} days left"
    with run.session() as s:
        if not ops.record_notice(s, certificate_id, ops.EXPIRY, threshold, detail, now=instant(at)):
            return False
        _send(_event("expiring", certificate_id, common_name,
                     f"certpilot: {common_name} expires in {days_left} days",
                     f"Certificate {certificate_id} ({common_name}) expires in {days_left} days "
                     f"(notice at {threshold} days, NT-1). Renew it (certpilot renew {certificate_id}) or let "
                     "automatic renewal do it; an uploaded certificate is replaced by uploading its successor.\n"),
              session=s)
    return True


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


def publish(decision: dict[str, Any], summary: dict[str, Any]) -> None:
    """The inventory table (name, status, days left, plan, next action) and a markdown summary."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    rows = decision["lines"] or [{"name": "-", "id": "-", "status": "-", "days left": "", "plan": "-",
                                  "next action": "nothing due"}]
    create_table_artifact(rows, key=TABLE_KEY,
                          description=f"Certificates that need attention at {decision['at']} (most urgent first)")
    counts = " | ".join(f"{k}: {v}" for k, v in decision["counts"].items()) or "no certificates"
    lines = [f"# Scan at {decision['at']}", "", f"**Inventory**: {sum(decision['counts'].values())} certificate(s) "
             f"— {counts}", "", "| action | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)]
    create_markdown_artifact("\n".join(lines) + "\n", key=SUMMARY_KEY, description="scan summary")
    publish_inbox()


INBOX_KEY = "certpilot-inbox"


def publish_inbox(limit: int = 50) -> int:
    """DEP-3/NT-2: the unread in-product messages as a markdown artifact (newest first)."""
    from prefect.artifacts import create_markdown_artifact

    from certpilot.adapters.notify.inbox import messages

    with rt.services().session() as s:
        unread = messages(s, limit=limit)
    lines = [f"# certpilot inbox: {len(unread)} unread message(s)", ""]
    for m in unread:
        lines += [f"## {m.subject}", f"*{m.at:%Y-%m-%d %H:%M}Z · {m.kind} · certificate `{m.certificate_id}`*", "",
                  "```", m.body.strip(), "```", ""]
    if not unread:
        lines.append("Nothing needs you.")
    create_markdown_artifact("\n".join(lines) + "\n", key=INBOX_KEY,
                             description="in-product messages: failed deployments, human steps, expiry")
    return len(unread)


def action_count(decision: dict[str, Any]) -> int:
    """How many task runs and launches the decision asks for (what the scan's cost grows with)."""
    return sum(len(decision[k]) for k in ("managed_starts", "resume_reviews", "resume_applications",
                                          "renewals_due", "notices"))
