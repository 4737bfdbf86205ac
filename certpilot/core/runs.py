"""Runs and the work they claim: the pure rules the launcher and the scanner share.

A renewal run records itself on the certificate it works on (`WorkClaim`). Whether a run still
lives is a question about its Prefect state type, passed in here as a plain string (core knows
no Prefect): a run that ended — failed, crashed, cancelled, or completed while the work it
claimed is still unfinished — no longer works on anything, and the scanner launches the work
again. A suspended (PAUSED) run lives: its answer or the scanner resumes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

DEAD_STATES = frozenset({"FAILED", "CRASHED", "CANCELLED"})
"""Prefect state types of a run that ended without finishing: its idempotency key is spent, a
relaunch needs a fresh key (`relaunch_key`)."""

ENDED_STATES = DEAD_STATES | {"COMPLETED"}
"""Prefect state types of a run that works on nothing any more."""

REVIEW_PAUSE_PREFIX = "review-"
"""The pause key of a renewal run suspended while the CA reviews its application starts with
this (`review-<certificate id>-<attempt>`); the scanner resumes such a run once the CA answered.
Prefect's run-input keys allow letters, digits and dashes only."""


@dataclass(frozen=True, slots=True)
class WorkClaim:
    """The flow run that last claimed a certificate's work.

    Attributes:
        certificate_id: the certificate.
        flow_run_id: the claiming flow run (Prefect's id, as text).
        claimed_at: when it claimed (timezone-aware UTC).
    """

    certificate_id: str
    flow_run_id: str
    claimed_at: datetime


def is_dead(state_type: str | None) -> bool:
    """True when a run in this state type ended without finishing (FAILED, CRASHED, CANCELLED)."""
    return state_type in DEAD_STATES


def works_on(state_type: str | None) -> bool:
    """True when a run in this state type may still work on what it claimed: scheduled, pending,
    running, paused or suspended, cancelling. None (the run is unknown to the API: deleted, or
    recorded by another Prefect server) does not."""
    return state_type is not None and state_type not in ENDED_STATES


def relaunch_key(key: str, dead_run_id: str) -> str:
    """The idempotency key of a relaunch after the run `dead_run_id` used `key` and died.

    Prefect keeps an idempotency key for good: the same key would hand the dead run back forever.
    Keyed after the dead run, two scanners seeing the same dead run still start one new run.
    """
    return f"{key}:after:{dead_run_id}"


class LaunchOutcome(StrEnum):
    """What launching one run came to."""

    COMPLETED = "completed"
    """It ran in this process and ended Completed."""
    FAILED = "failed"
    """It ran in this process and ended Failed, Crashed or Cancelled."""
    SUSPENDED = "suspended"
    """It ran in this process and suspended: it waits for a human or a CA review, holding no
    thread (an answer or the scanner resumes it on a runner or worker)."""
    LIVE = "live"
    """A run under its key already works on it (another scanner, a worker): nothing started."""
    DONE = "done"
    """A run under its key completed before: nothing to do."""
    HANDED_OFF = "handed_off"
    """Handed to a renewal-batch run that a worker will execute."""
    ERROR = "error"
    """It could not be launched (the API or the flow refused); `detail` says why."""


@dataclass(frozen=True, slots=True)
class LaunchResult:
    """The result of launching one run.

    Attributes:
        certificate_id: the certificate.
        key: the idempotency key finally used (after dead runs: `relaunch_key`s).
        outcome: what it came to.
        flow_run_id: the run's id ("" when none was created).
        detail: a sentence for an operator (the error, the final state's message).
    """

    certificate_id: str
    key: str
    outcome: LaunchOutcome
    flow_run_id: str = ""
    detail: str = ""


__all__ = ["DEAD_STATES", "ENDED_STATES", "REVIEW_PAUSE_PREFIX", "LaunchOutcome", "LaunchResult", "WorkClaim", "is_dead", "relaunch_key", "works_on"]
