"""Renewal eligibility (EL-1..EL-5) as ordered chains of pure checks (cert-manager `policies` style).

Each check returns None or a `Refusal` that names the certificate, the failed condition (with
its rule ID in `Refusal.rule`), the dates involved (ISO 8601) and what to do instead (EL-5).
`first_refusal` runs a chain and returns its first refusal.

Order within the official chain: permanent refusals (wrong origin or state, expired,
multi-domain, changed specification) come before the only temporary one (not expiring soon yet),
so nobody is told "wait until renewal opens" only to be refused for good on that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from certpilot.core.errors import Reason, Refusal, first_refusal
from certpilot.core.models import Certificate, CertType, Origin, Policy, Spec, Status
from certpilot.core.status import derive_status, renewal_opens


@dataclass(frozen=True)
class RenewalInput:
    """What the eligibility checks read: the certificate, the time asked, the policy, and the
    specification a renewal asks for (None: the certificate's own)."""

    certificate: Certificate
    now: datetime
    policy: Policy
    requested: Spec | None = None

    @property
    def status(self) -> Status:
        """The certificate's derived status at `now` (LC-4)."""
        return derive_status(self.certificate, self.now, self.policy)


def _who(c: Certificate) -> str:
    return f"{c.common_name} ({c.id})"


def _exp(c: Certificate) -> str:
    return c.not_after.isoformat() if c.not_after else "(no expiry date)"


# --- official certificates (EL-1, EL-2) ---

def must_not_be_private_ca(i: RenewalInput) -> Refusal | None:
    """EL-3/EL-4: a private-CA certificate takes the reissue path, not renewal or replacement."""
    c = i.certificate
    if c.origin is not Origin.PRIVATE_CA:
        return None
    return Refusal(Reason.PRIVATE_CA_REISSUE,
                   f"{_who(c)} was issued by the private CA (expires {_exp(c)}); it is not renewed through the "
                   "service: reissue it from the private CA and sync the result into the inventory", "EL-4")


def must_be_issued(i: RenewalInput) -> Refusal | None:
    """EL-1: only an issued official certificate (with an expiry date) can be renewed."""
    c = i.certificate
    if c.state is Status.ISSUED and c.not_after is not None:
        return None
    return Refusal(Reason.NOT_RENEWABLE_STATE,
                   f"{_who(c)} is {c.state.value}, not issued; only an issued certificate can be renewed: "
                   "finish or cancel its application first", "EL-1")


def must_not_be_expired(i: RenewalInput) -> Refusal | None:
    """EL-2: an expired official certificate cannot be renewed."""
    c = i.certificate
    if i.status is not Status.EXPIRED:
        return None
    return Refusal(Reason.EXPIRED_OFFICIAL,
                   f"{_who(c)} expired {_exp(c)}; an expired certificate cannot be renewed: buy a new certificate "
                   "(and run the emergency flow if a site is down)", "EL-2")


def must_not_be_multi_domain(i: RenewalInput) -> Refusal | None:
    """EL-1(b): multi-domain certificates are not renewed."""
    c = i.certificate
    if c.cert_type is not CertType.MULTI:
        return None
    return Refusal(Reason.MULTI_DOMAIN,
                   f"{_who(c)} is a multi-domain certificate (expires {_exp(c)}); multi-domain certificates cannot "
                   "be renewed (EL-1): buy a new certificate, then apply and deploy it", "EL-1")


def must_keep_specification(i: RenewalInput) -> Refusal | None:
    """EL-1(c): a renewal changes no specification (brand, type, validation level)."""
    c = i.certificate
    if i.requested is None or i.requested == c.spec:
        return None
    old, new = c.spec, i.requested
    changed = [f"{label} {getattr(old, f)} → {getattr(new, f)}"
               for f, label in (("brand", "brand"), ("cert_type", "type"), ("level", "validation level"))
               if getattr(old, f) != getattr(new, f)]
    return Refusal(Reason.SPEC_CHANGE,
                   f"{_who(c)} (expires {_exp(c)}): a renewal keeps the specification, but {'; '.join(changed)} "
                   "was asked; renew with the same specification, or buy a new certificate of the new one", "EL-1")


def must_be_expiring_soon(i: RenewalInput) -> Refusal | None:
    """EL-1(a): renewal opens when the certificate is expiring soon (LC-4 window)."""
    c = i.certificate
    if i.status is Status.EXPIRING_SOON or c.not_after is None:
        return None
    opens = renewal_opens(c.not_after, i.policy)
    return Refusal(Reason.NOT_EXPIRING_SOON,
                   f"{_who(c)} expires {_exp(c)}, more than {i.policy.expiry_window_days} days away; renewal opens "
                   f"{opens.isoformat()}: renew then", "EL-1")


OFFICIAL_RENEWAL = (must_not_be_private_ca, must_be_issued, must_not_be_expired, must_not_be_multi_domain,
                    must_keep_specification, must_be_expiring_soon)
"""EL-1, EL-2: the chain for official certificates."""


# --- uploaded certificates (EL-3) ---

def must_be_uploaded_state(i: RenewalInput) -> Refusal | None:
    """EL-3: an uploaded certificate is replaced only from state *uploaded*."""
    c = i.certificate
    if c.state is Status.UPLOADED and c.not_after is not None:
        return None
    return Refusal(Reason.NOT_UPLOADED_STATE,
                   f"{_who(c)} is {c.state.value}, not uploaded; only a certificate in state uploaded can be "
                   "replaced through the service: import it again if it is in use", "EL-3")


def must_be_due(i: RenewalInput) -> Refusal | None:
    """EL-3/EL-4: replacement or reissue is open when expiring soon or expired."""
    c = i.certificate
    if i.status in (Status.EXPIRING_SOON, Status.EXPIRED) or c.not_after is None:
        return None
    opens = renewal_opens(c.not_after, i.policy)
    rule = "EL-4" if c.origin is Origin.PRIVATE_CA else "EL-3"
    what = "reissued" if c.origin is Origin.PRIVATE_CA else "replaced"
    return Refusal(Reason.UPLOADED_NOT_DUE,
                   f"{_who(c)} expires {_exp(c)}, more than {i.policy.expiry_window_days} days away; it can be "
                   f"{what} once expiring soon, from {opens.isoformat()}", rule)


UPLOADED_REPLACEMENT = (must_not_be_private_ca, must_be_uploaded_state, must_be_due)
"""EL-3: the chain for uploaded certificates (replacement is a fresh certificate, VA-3)."""


# --- private-CA certificates (EL-4) ---

def must_be_issued_or_uploaded(i: RenewalInput) -> Refusal | None:
    """EL-4: a private-CA certificate is reissued only while issued or uploaded."""
    c = i.certificate
    if c.state in (Status.ISSUED, Status.UPLOADED) and c.not_after is not None:
        return None
    return Refusal(Reason.NOT_RENEWABLE_STATE,
                   f"{_who(c)} is {c.state.value}; only an issued or uploaded private-CA certificate can be "
                   "reissued", "EL-4")


PRIVATE_CA_REISSUE = (must_be_issued_or_uploaded, must_be_due)
"""EL-4: the chain for private-CA certificates: reissue from the private CA when due."""


CHAINS = {
    Origin.OFFICIAL: OFFICIAL_RENEWAL,
    Origin.UPLOADED: UPLOADED_REPLACEMENT,
    Origin.PRIVATE_CA: PRIVATE_CA_REISSUE,
}
"""The chain for each origin."""


def check_renewal(i: RenewalInput) -> Refusal | None:
    """EL-1..EL-5: may this certificate be renewed (official), replaced (uploaded) or reissued
    (private CA) now? Picks the chain by the certificate's origin and returns its first refusal.

    Returns:
        None when eligible, else the first `Refusal` of the chain (rule ID in `Refusal.rule`).
    """
    return first_refusal(CHAINS[i.certificate.origin], i)
