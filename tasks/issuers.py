"""Tasks of the `revoke` and `issuer` flows: one call each into `certpilot.operations.issuers`."""

from __future__ import annotations

from certpilot import runtime as rt
from certpilot.core.issuers import IssuerInForce, RevokeOutcome
from certpilot.operations import issuers as ops
from tasks.common import certpilot_task


@certpilot_task(name="revoke")
def revoke(certificate_id: str, reason: str, replaced_by: str | None = None) -> RevokeOutcome:
    """Revoke the certificate at the CA that issued it, record REVOKED, tell the owner."""
    r = ops.revoke(rt.services(), certificate_id, reason=reason, actor="flow:revoke")
    return RevokeOutcome(certificate_id=r.certificate_id, issuer=r.issuer, reason=r.reason, serial=r.serial,
                         already=r.already, replaced_by=replaced_by, served_at=r.served_at)


@certpilot_task(name="check-revocation-reason", retries=0)
def check_reason(reason: str) -> str:
    """The reason, checked before anything is renewed or revoked (BadInputError names the known ones)."""
    return ops.check_reason(reason)


@certpilot_task(name="set-issuer", retries=0)
def set_issuer(certificate_id: str, issuer: str | None, fallbacks: list[str] | None) -> IssuerInForce:
    """Name a certificate's issuer and/or fallbacks (UNKNOWN_ISSUER refused, nothing written)."""
    s = ops.set_issuer(rt.services(), certificate_id, issuer=issuer, fallbacks=fallbacks, actor="flow:issuer")
    return IssuerInForce(certificate_id=s.certificate_id, issuer=s.issuer, fallbacks=s.fallbacks, source=s.source,
                         paid=s.paid)
