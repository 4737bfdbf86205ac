"""EL-4: a private-CA certificate is renewed by reissuing it from the private CA.

No order and no ledger: the private CA is the operator's own. The reissue is a child
certificate (LC-2) pending application; `apply` then gets it signed by the private CA and the
inventory holds the result.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from certpilot.core.eligibility import RenewalInput, check_renewal
from certpilot.core.errors import Reason, Refusal, RefusedError
from certpilot.core.models import Certificate, Origin, Policy, Status
from certpilot.operations.common import new_id, require_aware
from certpilot.store.repository import Repository

_OPEN = (Status.PENDING_APPLICATION, Status.UNDER_REVIEW, Status.ISSUED)


def reissue_private_ca(session: Session, cert_id: str, *, now: datetime, policy: Policy | None = None,
                       actor: str = "cli") -> Certificate:
    """Create (or find again) the reissue of a private-CA certificate (EL-4).

    Args:
        session: the caller's transaction.
        cert_id: the private-CA certificate to reissue.
        now: the time deciding eligibility (expiring soon or expired).
        policy: the expiry window (default the seed's).
        actor: who asks, for the audit log.

    Returns:
        The child certificate, PENDING_APPLICATION (or further along when it already existed).

    Raises:
        RefusedError: not a private-CA certificate, or not yet expiring soon (EL-4, EL-5).
    """
    now = require_aware(now)
    repo = Repository(session)
    cert = repo.certificate_model(cert_id)
    if cert.origin is not Origin.PRIVATE_CA:
        raise RefusedError(Refusal(
            Reason.NOT_RENEWABLE_STATE,
            f"{cert.common_name} (id {cert.id}) is not from the private CA; renew it with `certpilot renew` "
            "instead of reissuing it", "EL-4"))
    for child in repo.children(cert_id):
        if child.origin is Origin.PRIVATE_CA and child.state in _OPEN:
            return child
    refusal = check_renewal(RenewalInput(certificate=cert, now=now, policy=policy or Policy()))
    if refusal is not None and refusal.reason is not Reason.PRIVATE_CA_REISSUE:
        raise RefusedError(refusal)
    child = cert.model_copy(update={
        "id": new_id("crt"), "parent_id": cert.id, "order_id": None, "plan_index": 0,
        "state": Status.PENDING_APPLICATION, "not_before": None, "not_after": None, "serial": None,
        "fingerprint_sha256": None, "temporary": False, "key_held": True, "publicly_trusted": False,
    })
    repo.add_certificate(child, actor=actor, now=now, why=f"reissue of private-CA certificate {cert.id} (EL-4)")
    repo.record_audit("certificate", cert.id, actor=actor, now=now,
                      why=f"reissued as {child.id} from the private CA (EL-4); stays valid until its own expiry (LC-1)")
    return repo.certificate_model(child.id)
