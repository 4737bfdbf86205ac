"""Which issuer each certificate is applied to (table `certificate_issuers`, migration 0013), and
the renewal windows its CA suggested (table `renewal_windows`, ARI).

A certificate's own choice, or the nearest one up its lineage (a renewal's certificates inherit
the issuer of the certificate they renew); `certpilot.core.issuers.choose_issuer` decides from
what is read here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from certpilot.core.issuers import IssuerChoice
from certpilot.core.models import Status
from certpilot.store.tables import CertificateRow
from certpilot.store.tables_issuance import CaApplicationRow, CertificateIssuerRow, RenewalWindowRow

_MAX_LINEAGE = 64
"""How far up a lineage a choice is looked for (a renewal chain longer than this is not real)."""


def _choice(row: CertificateIssuerRow | None) -> IssuerChoice | None:
    return IssuerChoice(row.issuer, tuple(row.fallbacks or ())) if row is not None else None


def recorded_choices(session: Session, certificate_id: str) -> tuple[IssuerChoice | None, IssuerChoice | None]:
    """(the certificate's own choice, the nearest ancestor's choice), each None when absent."""
    own = _choice(session.get(CertificateIssuerRow, certificate_id))
    cert = session.get(CertificateRow, certificate_id)
    parent = cert.parent_id if cert is not None else None
    for _ in range(_MAX_LINEAGE):
        if parent is None:
            break
        found = session.get(CertificateIssuerRow, parent)
        if found is not None:
            return own, _choice(found)
        row = session.get(CertificateRow, parent)
        parent = row.parent_id if row is not None else None
    return own, None


def set_choice(session: Session, certificate_id: str, issuer: str, fallbacks: tuple[str, ...], *,
               now: datetime) -> None:
    """Record (or replace) a certificate's issuer and fallbacks."""
    row = session.get(CertificateIssuerRow, certificate_id)
    if row is None:
        row = CertificateIssuerRow(certificate_id=certificate_id, issuer=issuer, fallbacks=list(fallbacks),
                                   updated_at=now)
        session.add(row)
    else:
        row.issuer, row.fallbacks, row.updated_at = issuer, list(fallbacks), now
    session.flush()


def ordered_with(session: Session, certificate_id: str) -> str | None:
    """The issuer reference an application's CA order was placed with, once it was placed."""
    row = session.query(CaApplicationRow).filter(CaApplicationRow.certificate_id == certificate_id).first()
    if row is None or row.order_url is None:
        return None
    return row.issuer


def cached_window(session: Session, certificate_id: str) -> RenewalWindowRow | None:
    """The renewal window last read from the certificate's CA (ARI), or None."""
    return session.get(RenewalWindowRow, certificate_id)


def save_window(session: Session, certificate_id: str, *, start: datetime | None, end: datetime | None,
                explanation_url: str, checked_at: datetime, next_check_at: datetime) -> None:
    """Keep the CA's window for a certificate until `next_check_at` (its Retry-After)."""
    row = session.get(RenewalWindowRow, certificate_id)
    if row is None:
        row = RenewalWindowRow(certificate_id=certificate_id)
        session.add(row)
    row.start, row.end, row.explanation_url = start, end, explanation_url or None
    row.checked_at, row.next_check_at = checked_at, next_check_at
    session.flush()


def renewal_info_due(session: Session, now: datetime, issuer_refs: list[str], *, limit: int) -> list[str]:
    """Issued, unexpired certificates applied for at one of `issuer_refs` (the issuers that serve
    ARI) whose window was never read or whose Retry-After has passed; soonest expiry first."""
    if not issuer_refs:
        return []
    c, a, w = CertificateRow, CaApplicationRow, RenewalWindowRow
    stmt = (select(c.id).join(a, a.certificate_id == c.id).outerjoin(w, w.certificate_id == c.id)
            .where(c.state == Status.ISSUED.value, c.not_after > now, a.order_url.is_not(None),
                   a.issuer.in_(issuer_refs), or_(w.next_check_at.is_(None), w.next_check_at <= now))
            .order_by(c.not_after).limit(limit))
    return list(session.scalars(stmt))
