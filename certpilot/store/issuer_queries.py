"""Which issuer each certificate is applied to (table `certificate_issuers`, migration 0013).

A certificate's own choice, or the nearest one up its lineage (a renewal's certificates inherit
the issuer of the certificate they renew); `certpilot.core.issuers.choose_issuer` decides from
what is read here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from certpilot.core.issuers import IssuerChoice
from certpilot.store.tables import CertificateRow
from certpilot.store.tables_issuance import CaApplicationRow, CertificateIssuerRow

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
