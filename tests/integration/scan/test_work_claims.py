"""Work claims on SQLite and PostgreSQL: a renewal run records itself on its certificate, the
latest claim wins, a repeated claim is harmless, the scanner reads many claims at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from scan_inventory import DAY, NOW, certificate
from sqlalchemy import func, select

from certpilot import runtime
from certpilot.core.errors import BadInputError
from certpilot.core.runs import WorkClaim
from certpilot.operations import runs
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository
from certpilot.store.tables_runs import WorkClaimRow

RUN_A = "0b5b0a57-0000-4000-8000-00000000000a"
RUN_B = "0b5b0a57-0000-4000-8000-00000000000b"


@pytest.fixture
def svc(store_url):
    with session_scope(store_url) as s:
        repo = Repository(s)
        for i in range(3):
            repo.add_certificate(certificate(f"c{i}", left=20 * DAY), now=NOW)
    return runtime.local_services(database_url=store_url, clock=lambda: NOW)


def _rows(url: str) -> int:
    with session_scope(url, readonly=True) as s:
        return s.execute(select(func.count()).select_from(WorkClaimRow)).scalar_one()


def test_claim_is_recorded_and_read_back_with_aware_time(svc):
    assert runs.claim(svc, "c0", RUN_A) == WorkClaim("c0", RUN_A, NOW)
    got = runs.claims(svc, ["c0", "c1"])
    assert got == {"c0": WorkClaim("c0", RUN_A, NOW)}
    assert got["c0"].claimed_at.utcoffset().total_seconds() == 0


def test_same_run_claiming_again_only_moves_the_time(svc):
    runs.claim(svc, "c0", RUN_A)
    runs.claim(svc, "c0", RUN_A, NOW + DAY)
    assert runs.claims(svc, ["c0"]) == {"c0": WorkClaim("c0", RUN_A, NOW + DAY)}
    assert _rows(svc.database_url) == 1


def test_latest_claim_wins(svc):
    runs.claim(svc, "c0", RUN_A)
    runs.claim(svc, "c0", RUN_B, NOW + DAY)
    assert runs.claims(svc, ["c0"])["c0"].flow_run_id == RUN_B
    assert _rows(svc.database_url) == 1


def test_concurrent_claims_leave_one_row_per_certificate(svc):
    barrier = threading.Barrier(4, timeout=20)

    def claim(i: int) -> None:
        barrier.wait()
        runs.claim(svc, "c1", RUN_A if i % 2 else RUN_B)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(claim, range(4)))
    assert runs.claims(svc, ["c1"])["c1"].flow_run_id in {RUN_A, RUN_B}
    assert _rows(svc.database_url) == 1


def test_claims_of_many_certificates_in_one_call(svc):
    runs.claim(svc, "c0", RUN_A)
    runs.claim(svc, "c2", RUN_B)
    ids = ["c0", "c1", "c2"] + [f"absent-{i}" for i in range(1200)]  # more than one IN list
    assert runs.claims(svc, ids) == {"c0": WorkClaim("c0", RUN_A, NOW), "c2": WorkClaim("c2", RUN_B, NOW)}
    assert runs.claims(svc, []) == {}


@pytest.mark.parametrize("cid, run_id", [("", RUN_A), ("c0", "")])
def test_a_claim_needs_a_certificate_and_a_run(svc, cid, run_id):
    with pytest.raises(BadInputError):
        runs.claim(svc, cid, run_id)
    assert _rows(svc.database_url) == 0
