"""`certpilot list` in SQL (issue 16): the database's filter agrees with LC-4's pure rule on the
boundary instants, pages add up to the whole answer, and the demo's views read only its rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from helpers_store import NOW, cert

from certpilot.core.models import DEFAULT_POLICY, Status
from certpilot.core.status import derive_status
from certpilot.operations.inventory import LIVE, CertificateView, certificate_views, views_of
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository

WINDOW = DEFAULT_POLICY.expiry_window
US = timedelta(microseconds=1)
SECOND = timedelta(seconds=1)
# not_after relative to NOW on every LC-4 boundary: expired / expiring soon at 0 and at the window.
OFFSETS = [-timedelta(days=400), -SECOND, -US, timedelta(0), US, SECOND, timedelta(days=29), WINDOW - SECOND,
           WINDOW - US, WINDOW, WINDOW + US, WINDOW + SECOND, timedelta(days=61), timedelta(days=300)]


def _inventory(url: str) -> None:
    """Dated certificates (issued and uploaded) on every boundary, undated and other lifecycle
    states, and a renewal (LC-2) whose marker the listing carries."""
    with session_scope(url) as s:
        repo = Repository(s)
        for i, off in enumerate(OFFSETS):
            for state in (Status.ISSUED, Status.UPLOADED):
                c = cert(f"c{i:02d}-{state.value}", state=state, not_after=None)
                repo.add_certificate(c.model_copy(update={"not_after": NOW + off, "not_before": NOW - WINDOW}),
                                     now=NOW)
        repo.add_certificate(cert("z-issued-undated", not_after=None), now=NOW)
        repo.add_certificate(cert("z-cancelled", state=Status.CANCELLED), now=NOW)
        repo.add_certificate(cert("y-pending", state=Status.PENDING_APPLICATION, parent_id="c06-issued",
                                  not_after=None), now=NOW)
        repo.add_certificate(cert("y-review", state=Status.UNDER_REVIEW, not_after="2026-09-30"), now=NOW)


def _models(url: str) -> list:
    with session_scope(url, readonly=True) as s:
        repo = Repository(s)
        return [repo.certificate_model(r[0]) for r in repo.status_rows()]


def _pure(views: list[CertificateView], now: datetime, status: Status | None, within: int | None,
          hide: bool) -> list[str]:
    """The rule as written before SQL filtering: every status derived in Python, then filtered."""
    if status is not None:
        views = [v for v in views if status in (v.status, v.state)]
    if within is not None:
        horizon = now + timedelta(days=within)
        views = [v for v in views if v.status in LIVE and v.not_after is not None and v.not_after <= horizon
                 and not (hide and v.status is Status.EXPIRED)]
    views = sorted(views, key=lambda v: (v.not_after is None, v.not_after or datetime.max.replace(tzinfo=NOW.tzinfo),
                                         v.id))
    return [v.id for v in views]


@pytest.fixture
def inventory_url(store_url):
    _inventory(store_url)
    return store_url


FILTERS = [(status, within, hide) for status in (None, *Status) for within, hide in
           ((None, False), (0, False), (30, False), (60, False), (60, True))]


def test_lc4_sql_filter_agrees_with_the_pure_rule_on_boundary_instants(inventory_url):
    """LC-4: `list --status/--expiring-within` filtered by the database keeps exactly the rows the
    pure rule keeps, at `now` itself, one microsecond and one second either side of expiry and of
    the 60-day window, in the list's order; statuses shown are derived (`derive_status`)."""
    models = {c.id: c for c in _models(inventory_url)}
    for now in (NOW, NOW + US, NOW - SECOND):
        derived = [CertificateView.of(c, now, DEFAULT_POLICY) for c in models.values()]
        with session_scope(inventory_url, readonly=True) as s:
            for status, within, hide in FILTERS:
                views = certificate_views(s, now=now, status=status, expiring_within_days=within, hide_expired=hide)
                assert [v.id for v in views] == _pure(derived, now, status, within, hide), (now, status, within)
                for v in views:
                    assert v.status is derive_status(models[v.id], now, DEFAULT_POLICY)
    with session_scope(inventory_url, readonly=True) as s:
        soon = [v.id for v in certificate_views(s, now=NOW, status=Status.EXPIRING_SOON) if v.state is Status.ISSUED]
    # Exactly the offsets 0 .. window inclusive: at the window it is expiring soon, one µs past it valid.
    assert soon == [f"c{i:02d}-issued" for i, off in enumerate(OFFSETS) if timedelta(0) <= off <= WINDOW]


def test_lc2_listing_carries_renewal_marker_and_pages_add_up(inventory_url):
    """Pages of 4 (dated rows, then undated ones) concatenate to the whole list; the renewed
    certificate carries its marker (LC-2) on whichever page it falls."""
    with session_scope(inventory_url, readonly=True) as s:
        whole = certificate_views(s, now=NOW)
        pages = [certificate_views(s, now=NOW, offset=o, limit=4) for o in range(0, len(whole) + 4, 4)]
        past_end = certificate_views(s, now=NOW, offset=len(whole) + 10, limit=4)
        undated_only = certificate_views(s, now=NOW, offset=len(whole) - 2, limit=10)
    assert [v.id for p in pages for v in p] == [v.id for v in whole]
    assert past_end == []
    assert [v.id for v in undated_only] == ["y-pending", "z-issued-undated"]  # undated last, by id
    renewed = next(v for v in whole if v.id == "c06-issued")
    assert renewed.renewal is not None and renewed.renewal.startswith("renewed → y-pending pending_application")
    assert all(v.renewal is None for v in whole if v.id != "c06-issued")


def test_views_of_reads_the_given_certificates_and_their_renewals(inventory_url):
    with session_scope(inventory_url, readonly=True) as s:
        views = views_of(s, ["c06-issued", "y-review", "nope"], now=NOW)
    assert [v.id for v in views] == ["c06-issued", "y-review", "y-pending"]
