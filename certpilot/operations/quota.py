"""Use case: take back quota or managed-service credits added by mistake (`certpilot quota remove`).

Adding is `orders.top_up`; removing is its inverse and lives here. A removal is one ledger entry
with a negative delta (PAY-4: the ledger is append-only, so a mistaken top-up is corrected, never
erased). It is refused when nothing of that kind is held, and when it would take the balance
below zero: quota already used by orders is spent, and no balance ever goes negative (PAY-3;
the rule is `core.payment.removal_refusal`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from certpilot.core.errors import PermanentError, RefusedError, TransientError
from certpilot.core.models import Balances, LedgerEntry, LedgerKind, Spec
from certpilot.core.payment import balance_name, removal_key, removal_refusal, service_sync_deltas
from certpilot.operations.common import new_id, positive_count, require_aware
from certpilot.store.repository import Repository

if TYPE_CHECKING:
    from certpilot.runtime import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuotaRemoved:
    """A removal: its ledger entry (negative delta) and the balances after it (PAY-3)."""

    entry: LedgerEntry
    balances: Balances


def remove(svc: Services, *, count: int, spec: Spec | None = None, now: datetime | None = None,
           idempotency_key: str | None = None, note: str = "") -> QuotaRemoved:
    """Remove `count` certificate quota of `spec`, or (`spec` None) managed-service credits.

    One transaction, with the ledger locked (two removals cannot both take the last unit). A
    repeated idempotency key removes nothing more and returns the entry written the first time.

    Args:
        svc: the services (their store and clock).
        count: how many to remove (a positive whole number).
        spec: the specification whose quota to remove (its brand canonical, UP-2); None for
            managed-service credits.
        now: the time of the entry (default the services' clock).
        idempotency_key: a retry with the same key writes nothing new.
        note: why, for the ledger (default says what was removed).

    Returns:
        The removal's entry and the balances after it.

    Raises:
        BadInputError: `count` is not a positive whole number.
        RefusedError: NOTHING_TO_REMOVE or NOT_ENOUGH_QUOTA (PAY-3); nothing written.
    """
    positive_count(count, "the count to remove")
    now = require_aware(now or svc.now())
    kind = LedgerKind.MANAGED if spec is None else LedgerKind.QUOTA
    key = idempotency_key or removal_key(kind, new_id("rm"))
    with svc.session() as s:
        repo = Repository(s)
        repo.lock_ledger()
        done = repo.ledger_entry(key) if idempotency_key else None
        if done is None:
            balances = repo.balances()
            held = balances.managed if spec is None else balances.quota.get(spec.key, 0)
            refusal = removal_refusal(spec, count, held, balances)
            if refusal is not None:
                raise RefusedError(refusal)
            (done,) = repo.append_ledger([LedgerEntry(
                id=new_id("led"), kind=kind, spec_key=spec.key if spec else None, delta=-count, order_id=None,
                idempotency_key=key, created_at=now,
                note=note or f"{count} {balance_name(spec)} removed (a correction; PAY-3)")])
        return QuotaRemoved(entry=done, balances=repo.balances())


def reconcile_session(session, remote: dict[str, int], *, source: str, now: datetime) -> tuple[LedgerEntry, ...]:
    """Bring the local quota of each specification in `remote` to the service's count, in the
    caller's transaction (the ledger locked): one appended entry per specification that differs
    (`core.payment.service_sync_deltas`; PAY-4: never an edit), saying where the number came from.

    Args:
        session: the open transaction (the payment's, or one of its own).
        remote: remaining certificates per specification key, as the service counts them.
        source: the service, for the entry's note.
        now: the time of the entries.

    Returns:
        The entries written (none when every count already matched).
    """
    repo = Repository(session)
    repo.lock_ledger()
    entries = [LedgerEntry(id=new_id("led"), kind=LedgerKind.QUOTA, spec_key=key, delta=delta, order_id=None,
                           idempotency_key=f"sync:{new_id('q')}", created_at=now,
                           note=f"{source}: {remote[key]} {key} remaining at the service (synced, PAY-3)")
               for key, delta in service_sync_deltas(repo.balances(), remote).items()]
    return tuple(repo.append_ledger(entries)) if entries else ()


def refresh_from_services(svc: Services, *, tolerate: bool = False) -> dict[str, int]:
    """Bring every specification a configured CA service counts itself (an issuer that
    `CountsQuota`: CAS) to that service's count, one transaction per service.

    Args:
        tolerate: a service that cannot be read keeps its last count (a warning logged) instead
            of raising: for a listing, which must answer at any time (PAY-3).

    Returns:
        The services' counts per specification key.

    Raises:
        TransientError / PermanentError: a service could not be read (unless `tolerate`).
    """
    from certpilot.adapters.issuers.base import CountsQuota

    counts: dict[str, int] = {}
    for ref, issuer in svc.issuers.items():
        if not isinstance(issuer, CountsQuota):
            continue
        try:
            remote = issuer.service_quota()
        except (TransientError, PermanentError) as exc:
            if not tolerate:
                raise
            log.warning("quota of %s not refreshed (%s); showing its last count", ref, exc.message)
            continue
        with svc.session() as s:
            reconcile_session(s, remote, source=f"{ref} ({issuer.name})", now=require_aware(svc.now()))
        counts.update(remote)
    return counts
