"""The Issuer Protocol: what certpilot asks of a certificate authority.

An issuer takes an application (names, CSR, contact, validation method) and gives back an
order reference; the reference is recorded before anything else happens, so every later step
(`advance`, `poll`, `fetch_chain`) can be resumed by a new process from the reference alone.
Errors follow certpilot's family: `TransientError` (retry, maybe after `retry_after`) apart
from `PermanentError` (the CA refused; its detail is in the message) and `RefusedError`
(a rule of ours refused before the CA was asked, e.g. a CAA record forbids the CA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from certpilot.core.models import Contact, Level, ValidationMethod


class OrderStatus(StrEnum):
    """A CA order's state, as RFC 8555 names them (the private CA maps onto the same)."""

    PENDING = "pending"
    """Waiting for validation or for the CA's review (OV/EV: days)."""
    READY = "ready"
    """Validated; waiting for the CSR (finalization)."""
    PROCESSING = "processing"
    """The CA is issuing."""
    VALID = "valid"
    """Issued: the chain can be fetched."""
    INVALID = "invalid"
    """Refused or failed: the detail says why (CA-2)."""


@dataclass(frozen=True)
class Application:
    """What is sent to a CA. No key material: the CSR carries only the public key.

    Attributes:
        names: the order's names (normalized), first one the common name.
        csr_pem: the checked CSR (CSR-4).
        method: how domain ownership is proven (DV-1..DV-4).
        level: DV, OV or EV (OV/EV need `contact`, DV-6).
        contact: the person the CA verifies with (DV-5, DV-6).
        certificate_id: certpilot's id of the certificate being applied for (for logs only).
        not_before, not_after: the validity window the plan asks for (VA-1/VA-2/VA-5), or None
            for the CA's default. A CA that honours it signs exactly it (the embedded private CA);
            others sign what they sign, and certpilot records plan vs issued.
        token: the application's idempotency token (the "submitting" marker's): an issuer that
            can find or dedupe an order by it (AWS Private CA's IdempotencyToken, the private
            CA's request) returns the same order for the same token.
        replaces_pem: the certificate this one replaces (its leaf PEM), for ARI's `replaces`
            (RFC 9773) in the new order; "" for a first issuance.
    """

    names: tuple[str, ...]
    csr_pem: bytes
    method: ValidationMethod = ValidationMethod.DNS_AUTO
    level: Level = Level.DV
    contact: Contact | None = None
    certificate_id: str = ""
    not_before: datetime | None = None
    not_after: datetime | None = None
    token: str = ""
    replaces_pem: str = ""


@dataclass(frozen=True)
class PollResult:
    """An order's state and, when it failed or waits on a human, the CA's own words."""

    status: OrderStatus
    detail: str = ""
    retry_after: float | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)
    more_info: bool = False
    """With INVALID: the CA did not refuse outright but needs more information (CA-2): the owner is
    asked for it and resubmits."""

    @property
    def done(self) -> bool:
        """True once nothing more will happen to this order (valid or invalid)."""
        return self.status in (OrderStatus.VALID, OrderStatus.INVALID)


@dataclass(frozen=True)
class IssuedChain:
    """An issued certificate: the leaf and its intermediates (leaf's issuer first), PEM text."""

    leaf_pem: str
    chain_pems: tuple[str, ...]

    @property
    def fullchain_pem(self) -> str:
        """Leaf then intermediates: the bundle a web server serves (DEP-6)."""
        return "".join(p if p.endswith("\n") else p + "\n" for p in (self.leaf_pem, *self.chain_pems))


@runtime_checkable
class Issuer(Protocol):
    """A certificate authority certpilot can apply to.

    An issuer that calls no remote API sets the class attribute `remote_api = False` (the
    embedded private CA): its stages then take no remote-API concurrency slot. Without it an
    issuer counts as remote.
    """

    @property
    def name(self) -> str:
        """A stable identifier of this CA (e.g. the ACME directory URL, or ``private-ca:default``)."""
        ...

    @property
    def publicly_trusted(self) -> bool:
        """Whether browsers trust this CA (VA-5 caps validity only for publicly trusted ones)."""
        ...

    def submit(self, application: Application) -> str:
        """Open an order for `application` and return its reference, before any validation.

        Raises:
            RefusedError: a check of ours refuses first (e.g. CAA forbids the CA, DV-7).
            TransientError / PermanentError: the CA's answer.
        """
        ...

    def advance(self, ref: str, application: Application) -> PollResult:
        """Do whatever the order needs next (answer challenges, finalize) and return its state.

        Re-entrant: safe to call again after a crash; steps already done are skipped.
        """
        ...

    def poll(self, ref: str) -> PollResult:
        """Read the order's state without changing anything."""
        ...

    def fetch_chain(self, ref: str) -> IssuedChain:
        """Download the issued chain of a valid order.

        Raises:
            PermanentError: the order is not valid.
        """
        ...


REVOCATION_REASONS = {
    "unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3, "superseded": 4,
    "cessationOfOperation": 5, "certificateHold": 6, "removeFromCRL": 8, "privilegeWithdrawn": 9,
    "aACompromise": 10,
}
"""RFC 5280 CRLReason codes by name (what `revoke --reason` accepts; ACME sends the code)."""


@runtime_checkable
class Revoking(Protocol):
    """An issuer that can revoke what it issued (ACME `revokeCert`, the private CA's CRL, AWS PCA)."""

    def revoke(self, leaf_pem: str, reason: str) -> None:
        """Revoke the certificate `leaf_pem` for `reason` (a key of `REVOCATION_REASONS`).

        Raises:
            TransientError / PermanentError: the CA's answer.
        """
        ...


@runtime_checkable
class OffersRenewalInfo(Protocol):
    """An issuer that may serve ACME Renewal Information (RFC 9773)."""

    def renewal_window(self, leaf_pem: str):
        """The CA's suggested window for `leaf_pem` and how long to cache it.

        Returns:
            (`core.issuers.RenewalWindow` or None when the CA serves no ARI, seconds until the
            next question: the CA's Retry-After, else six hours).
        """
        ...


@runtime_checkable
class CountsQuota(Protocol):
    """A CA service that keeps the account's certificate quota itself (Alibaba Cloud CAS's
    packages): its count, not a local one, is what PAY-1 pays from and PAY-3 lists."""

    def service_quota(self) -> dict[str, int]:
        """Remaining certificates per specification key (``brand/level/type``), as the service counts them.

        Raises:
            TransientError / PermanentError: the service's answer.
        """
        ...


def split_pem_chain(text: str) -> list[str]:
    """Split concatenated PEM certificates into a list of PEM strings (each ending in a newline)."""
    marker = "-----END CERTIFICATE-----"
    out = []
    for part in text.split(marker):
        start = part.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            out.append(part[start:] + marker + "\n")
    return out
