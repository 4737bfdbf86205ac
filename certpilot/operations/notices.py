"""Every notice certpilot sends, built in one place (NT-1, NT-2, DEP-3, CA-2, PL-5).

One subject style (``certpilot: <what> <common name>``), the certificate named by its id, common
name and (when known) serial and fingerprint, and the owner's address taken from the inventory so
email channels add it to their recipients. Builders read the certificate in the caller's
transaction; `send` delivers through the services' channels (the inbox always).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from certpilot.adapters.notify.base import EventKind, NotificationEvent
from certpilot.core.errors import PermanentError, TransientError, is_transient
from certpilot.core.models import Certificate
from certpilot.store.repository import Repository

if TYPE_CHECKING:
    from certpilot.runtime import Services

SUBJECT_PREFIX = "certpilot: "


def _event(cert: Certificate, kind: EventKind, what: str, body: str, *, now: datetime | None = None,
           target: str | None = None, diagnosis: str | None = None) -> NotificationEvent:
    extra = {"occurred_at": now} if now is not None else {}
    return NotificationEvent(kind=kind, certificate_id=cert.id, common_name=cert.common_name, target=target,
                             diagnosis=diagnosis, subject=SUBJECT_PREFIX + what, body=body,
                             fingerprint=cert.fingerprint_sha256,
                             owner_email=cert.owner.email if cert.owner else None, **extra)


def _cert(session: Session, certificate_id: str) -> Certificate:
    return Repository(session).certificate_model(certificate_id)


def human_step(session: Session, certificate_id: str, step: str, detail: str,
               now: datetime | None = None) -> NotificationEvent:
    """NT-2: a step needs a human (payment approval, a manual DNS record, the CA's contact).

    Args:
        step: what is needed, e.g. "payment approval", "manual DNS record".
        detail: what exactly to do (the record to add, the amount to approve).
    """
    cert = _cert(session, certificate_id)
    return _event(cert, EventKind.ACTION_NEEDED, f"{step} needed for {cert.common_name}", detail, now=now)


def managed_start_waiting(session: Session, certificate_id: str, detail: str,
                          now: datetime | None = None) -> NotificationEvent:
    """PL-5/NT-2: the next certificate of a plan could not start by itself and waits for a human."""
    cert = _cert(session, certificate_id)
    return _event(cert, EventKind.ACTION_NEEDED,
                  f"the next certificate of {cert.common_name} needs a manual submission",
                  f"The managed start of certificate {certificate_id} ({cert.common_name}) could not start by "
                  f"itself (PL-5): {detail}\n", now=now)


def ca_rejected(session: Session, certificate_id: str, detail: str, now: datetime | None = None, *,
                more_info: bool = False) -> NotificationEvent:
    """CA-2/NT-2: the CA rejected an application, or needs more information; the owner fixes it (or
    gives what the CA asks for) and runs the renewal again."""
    cert = _cert(session, certificate_id)
    if more_info:
        return _event(cert, EventKind.ACTION_NEEDED, f"the CA needs more information about {cert.common_name}",
                      f"The CA needs more information to issue certificate {certificate_id} ({cert.common_name}) "
                      f"(CA-2): {detail or 'no detail given'}. Give it what it asks for, then resubmit the "
                      f"application (`certpilot apply {certificate_id}`, or the `renewal` deployment with "
                      f"certificate_id={certificate_id}).\n", now=now)
    return _event(cert, EventKind.ACTION_NEEDED, f"the CA rejected {cert.common_name}",
                  f"The CA rejected the application of certificate {certificate_id} ({cert.common_name}) "
                  f"(CA-2): {detail or 'no detail given'}. Fix the application data and resubmit it "
                  f"(`certpilot apply {certificate_id}`, or the `renewal` deployment with "
                  f"certificate_id={certificate_id}).\n", now=now)


def issuer_fallback(session: Session, certificate_id: str, failed: str, used: str, why: str,
                    now: datetime | None = None) -> NotificationEvent:
    """The certificate's issuer `failed` could not take its order (down, rate-limited); the
    fallback `used` is applied to instead. The operator hears of it: a different CA signs."""
    cert = _cert(session, certificate_id)
    return _event(cert, EventKind.ISSUER_FALLBACK, f"{cert.common_name} applied to fallback issuer {used}",
                  f"The issuer {failed} of certificate {certificate_id} ({cert.common_name}) could not take its "
                  f"order: {why}. The fallback issuer {used} was applied to instead; its order is followed "
                  f"there. See `certpilot policy {certificate_id}` for the issuers in force.\n", now=now)


def revoked(session: Session, certificate_id: str, issuer: str, reason: str,
            now: datetime | None = None) -> NotificationEvent:
    """A certificate was revoked at its CA (`certpilot revoke`)."""
    cert = _cert(session, certificate_id)
    return _event(cert, EventKind.REVOKED, f"{cert.common_name} revoked",
                  f"Certificate {certificate_id} ({cert.common_name}, serial {cert.serial or '?'}) was revoked at "
                  f"{issuer} (reason {reason}). Endpoints still serving it fail for clients that check "
                  f"revocation: renew it (`certpilot renew {certificate_id}`) if it was still in use.\n", now=now)


def scan_item_failed(session: Session, certificate_id: str, action: str, error: str,
                     now: datetime | None = None) -> NotificationEvent:
    """The scanner could not do one thing for a certificate (the rest of the scan went on); told
    at most once a day per certificate (`operations.scan.report_problem`).

    Args:
        action: what failed, e.g. "launch its renewal", "poll its CA review".
        error: the error's sentence (ids and names only, never key material).
    """
    cert = _cert(session, certificate_id)
    return _event(cert, EventKind.ACTION_NEEDED, f"the scan could not {action} for {cert.common_name}",
                  f"The scan could not {action} for certificate {certificate_id} ({cert.common_name}): {error}\n"
                  "The other certificates were handled; the next scan tries again. If this repeats, look at "
                  "the scan's and the renewal's runs in the Prefect UI.\n", now=now)


def expiry(session: Session, certificate_id: str, days_left: int, threshold: int,
           now: datetime | None = None) -> NotificationEvent:
    """NT-1: a certificate expires in `days_left` days (the notice at `threshold` days)."""
    cert = _cert(session, certificate_id)
    return _event(cert, EventKind.EXPIRING, f"{cert.common_name} expires in {days_left} days",
                  f"Certificate {certificate_id} ({cert.common_name}) expires in {days_left} days "
                  f"(notice at {threshold} days, NT-1). Renew it (certpilot renew {certificate_id}) or let "
                  "automatic renewal do it; an uploaded certificate is replaced by uploading its successor.\n",
                  now=now)


def deployment_failed(cert: Certificate, target: str, diagnosis: str | None = None, *, error: str = "",
                      now: datetime | None = None) -> NotificationEvent:
    """DEP-3: the deployment (or its verification) of `cert` to `target` failed; the old one stays.

    Args:
        cert: the new certificate that was being deployed.
        target: what an operator calls the target, e.g. "nginx at 127.0.0.1:8443".
        diagnosis: the VER-2 diagnosis (code and sentence) explaining the failure.
        error: the deployment's own error message, when there is one.
    """
    expires = f"{cert.not_after:%Y-%m-%d}" if cert.not_after else "unknown"
    lines = [f"The deployment of certificate {cert.common_name} (id {cert.id}) to {target} failed.", "",
             f"Certificate: {cert.common_name}", f"  id:          {cert.id}",
             f"  names:       {', '.join(cert.names)}", f"  serial:      {cert.serial or 'unknown'}",
             f"  fingerprint: {cert.fingerprint_sha256 or 'unknown'}", f"  expires:     {expires}",
             f"Target: {target}"]
    if error:
        lines.append(f"Error: {error}")
    if diagnosis:
        lines.append(f"Diagnosis: {diagnosis}")
    lines += ["", "The previous certificate stays in place until this is fixed (DEP-7)."]
    return _event(cert, EventKind.DEPLOYMENT_FAILED, f"deployment of {cert.common_name} to {target} failed",
                  "\n".join(lines) + "\n", now=now, target=target, diagnosis=diagnosis)


def fleet_finding(session: Session, certificate_id: str, finding: str, endpoint: str, detail: str, *,
                  target: str, now: datetime | None = None) -> NotificationEvent:
    """Fleet probe: an endpoint of `target` serves another certificate than the inventory's (drift),
    a chain that does not verify, or a certificate about to expire; told once per finding.

    Args:
        finding: `core.fleet.Finding` value (drift, broken, expiring, unreachable).
        endpoint: `host:port (SNI name)`.
        detail: the finding's sentence (what is served, what to do).
    """
    cert = _cert(session, certificate_id)
    kind = EventKind.DRIFT if finding == "drift" else EventKind.ENDPOINT_PROBLEM
    what = {"drift": "another certificate is served", "broken": "the served chain does not verify",
            "expiring": "the served certificate expires soon", "unreachable": "an endpoint cannot be probed"}
    return _event(cert, kind, f"{what.get(finding, finding)} for {cert.common_name} at {endpoint}",
                  f"The fleet probe found at {endpoint} (target {target}, certificate {certificate_id}, "
                  f"{cert.common_name}): {detail}.\nThis is told once; the next scan tells again only if "
                  "something else is found.\n", now=now, target=target, diagnosis=f"[{finding}] {detail}")


def send(svc: Services, event: NotificationEvent, *, session: Session | None = None,
         must_deliver: bool = False) -> int:
    """Put `event` in the inbox and send it through every configured channel.

    Args:
        session: the caller's open transaction: the inbox message is written in it (and rolls
            back with the caller's record of the notice).
        must_deliver: raise when every configured channel failed, so the caller rolls back its
            record of the notice and a retry sends it again (NT-1: a notice is sent once).

    Returns:
        How many configured channels delivered.

    Raises:
        TransientError: `must_deliver` and no configured channel delivered (one may on a retry).
        PermanentError: `must_deliver` and every configured channel failed for good.
    """
    failures = svc.notify(event, session=session)
    if must_deliver and svc.notifiers and len(failures) == len(svc.notifiers):
        if not any(is_transient(exc) for exc in failures.values()):
            # Retrying cannot help (a refused configuration, bad credentials): fail at once, so
            # the caller records the undelivered notice instead of retrying for nothing.
            raise PermanentError(f"no notification channel can deliver {event.kind.value} for {event.common_name}: "
                                 + "; ".join(f"{name}: {exc}" for name, exc in failures.items()))
        raise TransientError(f"no notification channel delivered {event.kind.value} for {event.common_name} "
                             f"({', '.join(failures)} failed); retrying")
    return len(svc.notifiers) - len(failures)
