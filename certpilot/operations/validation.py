"""Which validation method a certificate applies with (DV-1..DV-4): the operator's choice, kept in
its renewal policy (`certpilot policy ID --validation METHOD`), else `core.validation.choose_method`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from certpilot.core.errors import BadInputError, Reason, RefusedError
from certpilot.core.models import Certificate, ValidationMethod
from certpilot.core.validation import check_validation_method, choose_method
from certpilot.store.repository import Repository
from certpilot.store.tables_pipeline import RenewalPolicyRow

AUTO = "auto"
"""`--validation auto`: forget the operator's choice; `choose_method` decides again."""


def chosen_method(session: Session, cert: Certificate) -> ValidationMethod | None:
    """The operator's choice for `cert`: its own policy's, else that of the certificate it renews
    (a choice made on the original carries to its renewals)."""
    for cid in (cert.id, cert.parent_id):
        row = session.get(RenewalPolicyRow, cid) if cid else None
        if row is not None and row.validation_method:
            return ValidationMethod(row.validation_method)
    return None


def record_method(session: Session, certificate_id: str, *, dns_writable: Callable[[list[str]], bool],
                  http_responder: bool, delegated: Callable[[list[str]], bool] | None = None,
                  now: datetime, actor: str = "system") -> ValidationMethod:
    """DV-1..DV-4 at submission: decide the certificate's validation method (`choose_method`) and
    record it on the certificate (audited when it changes) before its CA order is placed.

    Raises:
        RefusedError: WILDCARD_FILE_VALIDATION when the decided method cannot prove a wildcard (DV-4).
    """
    repo = Repository(session)
    cert = repo.certificate_model(certificate_id)
    names = list(cert.names)
    original = repo.certificate_model(cert.parent_id).validation_method if cert.parent_id else None
    is_delegated = bool(names) and delegated is not None and delegated(names)
    # A delegated name is written only through its CNAME: that is a delegation, not DV-2's own zone.
    method = choose_method(names, original=original, chosen=chosen_method(session, cert),
                           dns_writable=bool(names) and not is_delegated and dns_writable(names),
                           http_responder=http_responder, delegated=is_delegated)
    refusal = check_validation_method(names, method)
    if refusal is not None:
        raise RefusedError(refusal)
    if method is not cert.validation_method:
        repo.update_certificate(certificate_id, now=now, validation_method=method)
        repo.record_audit("certificate", certificate_id, actor=actor, now=now,
                          why=f"validation method {method.value} (was {cert.validation_method.value}; DV-1..DV-4)")
    return method


def checked_method(cert: Certificate, method: str) -> str | None:
    """The method an operator asked for `cert`, checked (DV-4), as stored; None for `auto`.

    Raises:
        BadInputError: not a method certpilot knows (the message lists them).
        RefusedError: WILDCARD_FILE_VALIDATION: file validation for a wildcard name (DV-4).
    """
    if method == AUTO:
        return None
    try:
        chosen = ValidationMethod(method)
    except ValueError:
        known = ", ".join([m.value for m in ValidationMethod] + [AUTO])
        raise BadInputError(f"unknown validation method {method!r}; use one of {known}", Reason.BAD_INPUT) from None
    refusal = check_validation_method(cert.names, chosen)
    if refusal is not None:
        raise RefusedError(refusal)
    return chosen.value
