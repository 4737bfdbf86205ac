"""Renewal eligibility (EL-1..EL-5) as ordered chains of pure checks (cert-manager `policies` style).

Each check returns None or a `Refusal` that names the certificate, the failed condition (with
its rule ID in `Refusal.rule`), the dates involved (ISO 8601) and what to do instead (EL-5).
`first_refusal` runs a chain and returns its first refusal.

Order within the official chain: permanent refusals (wrong origin or state, expired,
multi-domain, changed specification) come before the only temporary one (not expiring soon yet),
so nobody is told "wait until renewal opens" only to be refused for good on that day.

Every refusal says what to do instead as a command that exists, with the real ids and names
filled in and written between backticks (`certpilot buy --name shop.example.com …`), so that an
operator can copy it and a test can parse it (`buy_command`, `next_step`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime

from certpilot.core.errors import Reason, Refusal, first_refusal
from certpilot.core.models import Certificate, CertType, Origin, Policy, Spec, Status, iso_z
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


def buy_command(c: Certificate, spec: Spec | None = None, years: int = 1) -> str:
    """The `certpilot buy` command that buys a new certificate for `c`'s names, of `spec`
    (default `c`'s own specification; the type follows from the names, UP-1)."""
    spec = spec or c.spec
    names = " ".join(f"--name {shlex.quote(n)}" for n in c.names)
    return f"certpilot buy {names} --level {spec.level.value} --brand {shlex.quote(spec.brand)} --years {years}"


_BOUGHT = ("; `buy` prints the new certificate's id, and `apply` with that id submits it (validation, "
           "CA review, then deployment where the old one is deployed)")
"""What follows a purchase, said once: the new id is only known once `buy` printed it."""


def next_step(c: Certificate) -> str:
    """The command that moves a certificate of a renewal or purchase on from its stored state
    (LC-5), as the views and the refusals suggest it: submit a pending or rejected application,
    follow a review, cancel a not-activated certificate, look at anything else."""
    if c.state in (Status.PENDING_APPLICATION, Status.REJECTED):
        return f"certpilot apply {c.id}"
    if c.state is Status.NOT_ACTIVATED:
        return f"certpilot cancel {c.id}"
    return f"certpilot show {c.id}"


_NEXT_WHY = {
    Status.PENDING_APPLICATION: "submit its application",
    Status.REJECTED: "fix what the CA asked and submit it again",
    Status.NOT_ACTIVATED: "it starts by itself at its managed start (PL-4); if it is not wanted, cancel it",
    Status.UNDER_REVIEW: "the CA is reviewing it and the scanner follows the review (CA-2); follow it",
}


# --- official certificates (EL-1, EL-2) ---

def must_not_be_private_ca(i: RenewalInput) -> Refusal | None:
    """EL-3/EL-4: a private-CA certificate takes the reissue path, not renewal or replacement."""
    c = i.certificate
    if c.origin is not Origin.PRIVATE_CA:
        return None
    return Refusal(Reason.PRIVATE_CA_REISSUE,
                   f"{_who(c)} was issued by the private CA (expires {_exp(c)}); it is not renewed through the "
                   "service but reissued from the private CA, which `renew` does for a certificate "
                   f"imported with --origin private-ca: see its record with `certpilot show {c.id}`", "EL-4")


def must_be_issued(i: RenewalInput) -> Refusal | None:
    """EL-1: only an issued official certificate (with an expiry date) can be renewed."""
    c = i.certificate
    if c.state is Status.ISSUED and c.not_after is not None:
        return None
    why = _NEXT_WHY.get(c.state, "see where it stands")
    return Refusal(Reason.NOT_RENEWABLE_STATE,
                   f"{_who(c)} is {c.state.value}, not issued; only an issued certificate can be renewed: "
                   f"{why}: `{next_step(c)}`", "EL-1")


def must_not_be_expired(i: RenewalInput) -> Refusal | None:
    """EL-2: an expired official certificate cannot be renewed."""
    c = i.certificate
    if i.status is not Status.EXPIRED:
        return None
    return Refusal(Reason.EXPIRED_OFFICIAL,
                   f"{_who(c)} expired {_exp(c)}; an expired certificate cannot be renewed: buy a new certificate "
                   f"with `{buy_command(c)}`{_BOUGHT}; if a site is down now, `certpilot emergency {c.id}` "
                   "deploys a temporary DV certificate first (EM-1)", "EL-2")


def must_not_be_multi_domain(i: RenewalInput) -> Refusal | None:
    """EL-1(b): multi-domain certificates are not renewed."""
    c = i.certificate
    if c.cert_type is not CertType.MULTI:
        return None
    return Refusal(Reason.MULTI_DOMAIN,
                   f"{_who(c)} is a multi-domain certificate (expires {_exp(c)}); multi-domain certificates cannot "
                   f"be renewed (EL-1): buy a new certificate with `{buy_command(c)}`{_BOUGHT}", "EL-1")


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
                   f"was asked; renew with the same specification (`certpilot renew {c.id} --dry-run` shows the "
                   f"plan), or buy a new certificate of the new one with `{buy_command(c, new)}`{_BOUGHT}", "EL-1")


def must_be_expiring_soon(i: RenewalInput) -> Refusal | None:
    """EL-1(a): renewal opens when the certificate is expiring soon (LC-4 window)."""
    c = i.certificate
    if i.status is Status.EXPIRING_SOON or c.not_after is None:
        return None
    opens = renewal_opens(c.not_after, i.policy)
    return Refusal(Reason.NOT_EXPIRING_SOON,
                   f"{_who(c)} expires {_exp(c)}, more than {i.policy.expiry_window_days} days away; renewal opens "
                   f"{opens.isoformat()}: renew then (preview it now with `certpilot renew {c.id} --dry-run --at "
                   f"{iso_z(opens)}`), or let the scanner renew it when due: `certpilot policy {c.id} --auto-renew`",
                   "EL-1")


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
                   f"replaced through the service: {_NEXT_WHY.get(c.state, 'see where it stands')}: "
                   f"`{next_step(c)}`", "EL-3")


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
                   f"{what} once expiring soon, from {opens.isoformat()} (preview it now with `certpilot renew "
                   f"{c.id} --dry-run --at {iso_z(opens)}`), or let the scanner do it when due: "
                   f"`certpilot policy {c.id} --auto-renew`", rule)


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
                   f"reissued: {_NEXT_WHY.get(c.state, 'see where it stands')}: `{next_step(c)}`", "EL-4")


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
