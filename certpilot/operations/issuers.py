"""Issuers per certificate, revocation and renewal information: the doors (issue 13).

- `issuer_settings` / `set_issuer`: which issuer a certificate is applied to and its ordered
  fallbacks (`certpilot policy ID --issuer NAME --fallback NAME`); a renewal's certificates
  inherit the choice; without one a certificate gets its issuer by origin (`Services.issuer_choice`).
- `configured_issuers`: the issuers configured, what each bills (`certpilot issuers`).
- `revoke`: revoke a certificate at the CA that issued it (ACME `revokeCert`, the private CA and
  its CRL, AWS Private CA), record REVOKED and tell the owner (`certpilot revoke`).
- `renewal_info`: ARI (RFC 9773): the CA's suggested window for a certificate, the due point it
  gives, and whether the renewal is urgent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from certpilot.adapters.issuers.base import REVOCATION_REASONS, OffersRenewalInfo, Revoking
from certpilot.core.errors import BadInputError, Reason, Refusal, RefusedError
from certpilot.core.issuers import (
    ChoiceSource,
    RenewalTiming,
    RenewalWindow,
    ari_due_at,
    is_urgent,
    renewal_due_at,
    unknown_issuer,
    window_fraction,
)
from certpilot.core.models import Status
from certpilot.operations import notices
from certpilot.operations.deployments import targets_of
from certpilot.store import issuer_queries
from certpilot.store.repository import Repository

if TYPE_CHECKING:
    from certpilot.runtime import Services


@dataclass(frozen=True)
class IssuerSettings:
    """The issuer a certificate is applied to, its fallbacks, and where the choice came from."""

    certificate_id: str
    issuer: str
    fallbacks: tuple[str, ...]
    source: ChoiceSource
    paid: bool
    """Whether its renewals are billed (quota, managed credits, payment form)."""


@dataclass(frozen=True)
class ConfiguredIssuer:
    """One configured issuer: its reference, the CA it names, whether it bills."""

    ref: str
    name: str
    paid: bool
    default: bool
    revokes: bool
    renewal_info: bool


def configured_issuers(svc: Services) -> tuple[ConfiguredIssuer, ...]:
    """The configured issuers, the default first."""
    out = [ConfiguredIssuer(ref, getattr(i, "name", ref), bool(getattr(i, "paid", True)), ref == svc.default_issuer,
                            isinstance(i, Revoking), isinstance(i, OffersRenewalInfo))
           for ref, i in svc.issuers.items()]
    return tuple(sorted(out, key=lambda c: (not c.default, c.ref)))


def issuer_settings(svc: Services, certificate_id: str) -> IssuerSettings:
    """The issuer in force for a certificate.

    Raises:
        NotFoundError: no such certificate.
        RefusedError: UNKNOWN_ISSUER: its recorded issuer is no longer configured.
    """
    with svc.session(readonly=True) as s:
        cert = Repository(s).certificate_model(certificate_id)
    choice = svc.issuer_choice(cert)
    return IssuerSettings(certificate_id, choice.name, choice.fallbacks, choice.source,
                          bool(getattr(svc.issuers[choice.name], "paid", True)))


def set_issuer(svc: Services, certificate_id: str, *, issuer: str | None = None,
               fallbacks: list[str] | tuple[str, ...] | None = None, actor: str = "cli") -> IssuerSettings:
    """Name the issuer (and/or the ordered fallbacks) a certificate and its renewals apply to.

    An application whose CA order is already placed keeps it: the choice applies to the next order.

    Args:
        issuer: a configured issuer reference (e.g. ``private-ca``, ``acme/letsencrypt``);
            None keeps the one in force.
        fallbacks: issuers tried in order when it cannot take an order; None keeps the current
            ones, an empty list removes them.

    Raises:
        NotFoundError: no such certificate.
        RefusedError: UNKNOWN_ISSUER: a name that is not configured (nothing written).
    """
    if issuer is None and fallbacks is None:
        return issuer_settings(svc, certificate_id)
    current = issuer_settings(svc, certificate_id)
    name = issuer or current.issuer
    backups = tuple(dict.fromkeys(f for f in (current.fallbacks if fallbacks is None else fallbacks) if f != name))
    refusal = unknown_issuer([name, *backups], list(svc.issuers), certificate_id)
    if refusal is not None:
        raise RefusedError(refusal)
    now = svc.now()
    with svc.session() as s:
        issuer_queries.set_choice(s, certificate_id, name, backups, now=now)
        Repository(s).record_audit("certificate", certificate_id, actor=actor, now=now,
                                   why=f"issuer set to {name}" + (f", fallbacks {', '.join(backups)}" if backups else ""))
    return issuer_settings(svc, certificate_id)


# ---------------------------------------------------------------- revocation


@dataclass(frozen=True)
class RevokeResult:
    """A revocation done: the certificate, the issuer that revoked it, the reason; for a
    private CA, its fresh CRL (PEM, public data)."""

    certificate_id: str
    issuer: str
    reason: str
    serial: str
    already: bool = False
    crl_pem: str = ""
    served_at: tuple[str, ...] = field(default_factory=tuple)
    """Deployment targets that still held the certificate when it was revoked."""


def check_reason(reason: str) -> str:
    """The reason name, checked (RFC 5280 names, e.g. keyCompromise, superseded).

    Raises:
        BadInputError: an unknown reason (names the known ones).
    """
    if reason not in REVOCATION_REASONS:
        raise BadInputError(f"unknown revocation reason {reason!r}; use one of {', '.join(REVOCATION_REASONS)}")
    return reason


def revoke(svc: Services, certificate_id: str, *, reason: str = "unspecified", actor: str = "cli") -> RevokeResult:
    """Revoke a certificate at the CA that issued it, then record it REVOKED and tell the owner.

    Idempotent: a certificate already REVOKED is reported as such without asking the CA again.
    The CA is asked outside any transaction; REVOKED is recorded only after it agreed (a CA that
    answers "already revoked" counts as agreed).

    Raises:
        NotFoundError: no such certificate.
        BadInputError: an unknown reason.
        RefusedError: NOT_REVOCABLE: not issued through certpilot (an imported certificate's CA
            order is not ours), or its issuer cannot revoke.
        TransientError: the CA could not be reached (nothing recorded; run it again).
    """
    check_reason(reason)
    with svc.session(readonly=True) as s:
        repo = Repository(s)
        cert = repo.certificate_model(certificate_id)
        leaf = repo.get_certificate(certificate_id).leaf_pem or ""
        served = tuple(t.id for t in targets_of(s, certificate_id))
        ordered = issuer_queries.ordered_with(s, certificate_id)
    if cert.state is Status.REVOKED:
        return RevokeResult(certificate_id, "", reason, cert.serial or "", already=True, served_at=served)
    if cert.state is not Status.ISSUED or not leaf or ordered is None:
        raise RefusedError(Refusal(Reason.NOT_REVOCABLE,
                                   f"certificate {certificate_id} is {cert.state.value}"
                                   + ("" if ordered else ", imported rather than applied for through certpilot")
                                   + ": only a certificate certpilot applied for can be revoked here; revoke it at "
                                   "the CA that issued it (its own console or client)", "LC-5"))
    issuer = svc.issuer_for(cert)
    ref = svc.issuer_ref(issuer)
    if not isinstance(issuer, Revoking):
        raise RefusedError(Refusal(Reason.NOT_REVOCABLE,
                                   f"issuer {ref} cannot revoke; revoke certificate {certificate_id} (serial "
                                   f"{cert.serial}) in the CA's own console", ""))
    _revoke_at_ca(issuer, leaf, reason)
    crl = issuer.crl_pem().decode() if hasattr(issuer, "crl_pem") else ""
    now = svc.now()
    with svc.session() as s:
        repo = Repository(s)
        if repo.certificate_model(certificate_id).state is not Status.REVOKED:
            repo.set_state(certificate_id, Status.REVOKED, actor=actor, now=now,
                           why=f"revoked at {ref} (reason {reason})")
            notices.send(svc, notices.revoked(s, certificate_id, ref, reason, now=now), session=s)
    return RevokeResult(certificate_id, ref, reason, cert.serial or "", crl_pem=crl, served_at=served)


def _revoke_at_ca(issuer: Revoking, leaf: str, reason: str) -> None:
    """Ask the CA; "already revoked" is success (a rerun after a crash before REVOKED was recorded)."""
    from certpilot.core.errors import PermanentError

    try:
        issuer.revoke(leaf, reason)
    except PermanentError as exc:
        if "alreadyRevoked" not in exc.message:
            raise


# ---------------------------------------------------------------- ARI (RFC 9773)


@dataclass(frozen=True)
class RenewalInfo:
    """What a CA's renewal information says of a certificate, and the due point certpilot uses.

    Attributes:
        window: the CA's suggested window, or None when its issuer serves no ARI.
        due_at: when the certificate is due: inside the CA's window when it gives one (ARI
            overrides the lifetime rule), else `core.issuers.renewal_due_at`.
        urgent: the CA's window is already over (e.g. it is about to revoke): renew now.
        ask_again_at: when to ask the CA again (its Retry-After).
    """

    certificate_id: str
    window: RenewalWindow | None
    due_at: datetime | None
    urgent: bool
    ask_again_at: datetime | None


def renewal_info(svc: Services, certificate_id: str, *, now: datetime | None = None,
                 timing: RenewalTiming | None = None, refresh: bool = True) -> RenewalInfo:
    """The CA's renewal window for a certificate (ARI) and the due point it gives.

    The window is asked of the CA only when the one kept has passed its Retry-After (caching per
    RFC 9773 section 4.3), or was never read; `refresh` False never asks. The point inside the
    window is fixed per certificate (derived from its id), so every scan picks the same moment,
    spread across the window as RFC 9773 section 4.2 asks.

    Raises:
        NotFoundError: no such certificate.
        TransientError: the CA could not be reached.
    """
    now = now or svc.now()
    timing = timing or svc.timing
    with svc.session(readonly=True) as s:
        repo = Repository(s)
        cert = repo.certificate_model(certificate_id)
        leaf = repo.get_certificate(certificate_id).leaf_pem or ""
        kept = issuer_queries.cached_window(s, certificate_id)
        cached = (kept.start, kept.end, kept.explanation_url or "", kept.next_check_at) if kept else None
    lifetime_due = (renewal_due_at(cert.not_before, cert.not_after, timing)
                    if cert.not_before and cert.not_after else None)
    if cached is None or (refresh and now >= cached[3]):
        issuer = svc.issuer_for(cert) if leaf else None
        if issuer is None or not isinstance(issuer, OffersRenewalInfo):
            return RenewalInfo(certificate_id, None, lifetime_due, False, None)
        window, wait = issuer.renewal_window(leaf)
        cached = (window.start if window else None, window.end if window else None,
                  window.explanation_url if window else "", now + timedelta(seconds=wait))
        with svc.session() as s:
            issuer_queries.save_window(s, certificate_id, start=cached[0], end=cached[1], explanation_url=cached[2],
                                       checked_at=now, next_check_at=cached[3])
    start, end, explanation, ask_again = cached
    if start is None or end is None:
        return RenewalInfo(certificate_id, None, lifetime_due, False, ask_again)
    window = RenewalWindow(start, end, explanation)
    return RenewalInfo(certificate_id, window, ari_due_at(window, now, fraction=window_fraction(certificate_id)),
                       is_urgent(window, now), ask_again)


def renewal_info_due(svc: Services, at: datetime | None = None, *, limit: int = 100) -> tuple[str, ...]:
    """The certificates whose CA serves ARI and whose window should be read now (never read, or
    its Retry-After passed): what the scanner refreshes before it decides."""
    refs = [ref for ref, issuer in svc.issuers.items() if isinstance(issuer, OffersRenewalInfo)]
    with svc.session(readonly=True) as s:
        return tuple(issuer_queries.renewal_info_due(s, at or svc.now(), refs, limit=limit))
