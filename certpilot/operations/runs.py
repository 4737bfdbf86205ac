"""Which flow run works on which certificate: the renewal run's claim, the scanner's reading.

A renewal run claims its certificate when it starts (`claim`); the scanner reads the claims of
the certificates whose work is unfinished (`claims`) and asks Prefect whether each claiming run
still lives (`certpilot.core.runs.works_on`). Each door owns its short transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from certpilot.core.errors import BadInputError
from certpilot.core.runs import WorkClaim
from certpilot.store import run_queries as q

if TYPE_CHECKING:
    from certpilot.runtime import Services


def claim(svc: Services, certificate_id: str, flow_run_id: str, at: datetime | None = None) -> WorkClaim:
    """Record that `flow_run_id` works on `certificate_id` from now on (the latest claim wins).

    Idempotent: the same run claiming again only moves the claim's time.

    Args:
        svc: the services (store, clock).
        certificate_id: the certificate the run works on.
        flow_run_id: the claiming flow run's id.
        at: when (timezone-aware UTC); default the services' clock.

    Returns:
        The claim recorded.

    Raises:
        BadInputError: an empty certificate or flow run id (a task run outside any flow run).
    """
    if not certificate_id or not flow_run_id:
        raise BadInputError(f"a work claim needs a certificate id and a flow run id "
                            f"(got {certificate_id!r}, {flow_run_id!r}): claim from inside a flow run")
    with svc.session() as s:
        return q.upsert_claim(s, certificate_id, str(flow_run_id), at or svc.now())


def claims(svc: Services, certificate_ids: Sequence[str]) -> dict[str, WorkClaim]:
    """The claims of these certificates, by certificate id, in one read-only transaction
    (certificates never claimed are absent)."""
    if not certificate_ids:
        return {}
    with svc.session(readonly=True) as s:
        return q.claims_of(s, certificate_ids)


__all__ = ["claim", "claims"]
