"""One error hierarchy and one refusal type for the whole product.

A `Refusal` is a rule's answer, not an exception: a `Reason` plus a sentence for an operator
saying what failed and what to do instead (EL-5). Exceptions carry a refusal when a use case
must stop. `TransientError` is the family tasks retry; everything else is permanent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar


class Reason(StrEnum):
    """Why something was refused. Each member's docstring says what it means."""

    # --- eligibility (EL) ---
    NOT_EXPIRING_SOON = "NotExpiringSoon"
    """More than the expiry window is left: renewal is not open yet (EL-1a)."""
    EXPIRED_OFFICIAL = "ExpiredOfficial"
    """An expired official certificate cannot be renewed; buy a new one (EL-2)."""
    MULTI_DOMAIN = "MultiDomain"
    """Multi-domain certificates are not renewed: a new purchase replaces them (EL-1b)."""
    SPEC_CHANGE = "SpecChange"
    """Renewal may not change brand, type or validation level (EL-1c)."""
    NOT_UPLOADED_STATE = "NotUploadedState"
    """An uploaded certificate must be in state *uploaded* to be replaced (EL-3)."""
    UPLOADED_NOT_DUE = "UploadedNotDue"
    """An uploaded certificate is replaced only when expiring soon or expired (EL-3)."""
    PRIVATE_CA_REISSUE = "PrivateCaReissue"
    """Private-CA certificates are reissued from the private CA, not renewed (EL-3/EL-4)."""
    NOT_RENEWABLE_STATE = "NotRenewableState"
    """Only issued or uploaded certificates can be renewed."""
    ALREADY_RENEWED = "AlreadyRenewed"
    """A renewal order already exists for this certificate."""
    # --- lifecycle (LC) ---
    ILLEGAL_TRANSITION = "IllegalTransition"
    """The lifecycle does not allow this move (LC-5)."""
    # --- plans (PL) ---
    INVALID_YEARS = "InvalidYears"
    """Plans are 1, 2 or 3 years (PL-1, PL-2)."""
    NOT_CANCELLABLE = "NotCancellable"
    """Only not-activated certificates can be cancelled (PL-7)."""
    MANAGED_NOT_DUE = "ManagedNotDue"
    """The current certificate is above the managed-start threshold (PL-4)."""
    NO_MANAGED_CREDIT = "NoManagedCredit"
    """The order holds no managed service for this certificate (PL-4)."""
    DNS_NOT_WRITABLE = "DnsNotWritable"
    """No DNS provider holds the zone and no delegation exists: cannot start by itself (PL-5)."""
    APPLICATION_INVALID = "ApplicationInvalid"
    """The application data is incomplete or invalid: cannot start by itself (PL-5)."""
    # --- payment (PAY) ---
    SHORTFALL_NOT_APPROVED = "ShortfallNotApproved"
    """The order needs a charge for its shortfall and it was not approved (PAY-1)."""
    PAYMENT_DECLINED = "PaymentDeclined"
    """The payment of the shortfall was declined."""
    ORDER_PAID = "OrderPaid"
    """The order is paid and its certificates exist: it can no longer be declined or cancelled."""
    ORDER_CLOSED = "OrderClosed"
    """The order was declined, cancelled or expired: it can no longer be paid; order again."""
    NOTHING_TO_REMOVE = "NothingToRemove"
    """`quota remove` of a quota or credit whose balance is 0 (PAY-3)."""
    NOT_ENOUGH_QUOTA = "NotEnoughQuota"
    """`quota remove` of more than remains: a balance never goes below zero (PAY-3)."""
    # --- names (UP-1) ---
    INVALID_NAME = "InvalidName"
    """A name is not a valid DNS name or public IPv4 address."""
    PRIVATE_IP = "PrivateIp"
    """A non-public IP address cannot be in a publicly trusted certificate."""
    WILDCARD_DEPTH = "WildcardDepth"
    """A wildcard covers exactly one label: `*.example.com`, not `*.*.example.com`."""
    TOO_MANY_NAMES = "TooManyNames"
    """Multi-domain certificates hold at most 5 names."""
    WILDCARD_IN_MULTI = "WildcardInMulti"
    """Multi-domain certificates hold no wildcards."""
    TYPE_MISMATCH = "TypeMismatch"
    """The names do not fit the certificate type."""
    NO_NAMES = "NoNames"
    """A certificate needs at least one name."""
    UNKNOWN_BRAND = "UnknownBrand"
    """The brand is not one the service offers (UP-2)."""
    # --- import (UP-3) ---
    BAD_PEM = "BadPem"
    """The input is not the PEM object expected."""
    KEY_MISMATCH = "KeyMismatch"
    """The private key does not belong to the certificate."""
    BAD_CHAIN = "BadChain"
    """The chain does not link up from the leaf."""
    WEAK_KEY = "WeakKey"
    """The key is too small or of an unsupported algorithm."""
    ENCRYPTED_KEY = "EncryptedKey"
    """The key is encrypted and no passphrase was given."""
    NO_SAN = "NoSan"
    """The certificate has no subjectAltName extension."""
    DUPLICATE = "Duplicate"
    """This certificate (same fingerprint) is already in the inventory."""
    INPUT_TOO_LARGE = "InputTooLarge"
    """An input exceeds a limit (size, certificates, chain length, names): refused unread."""
    KEY_IN_PARAMETER = "KeyInParameter"
    """Private key material was given where no key belongs (a flow parameter, a name)."""
    # --- keys and CSRs (CSR) ---
    CSR_INVALID = "CsrInvalid"
    """The CSR's signature does not verify."""
    CSR_NAMES = "CsrNames"
    """The CSR's names differ from the order's."""
    CSR_ALGORITHM = "CsrAlgorithm"
    """The CSR's key algorithm differs from the original certificate's (CSR-2)."""
    KEY_NOT_HELD = "KeyNotHeld"
    """The system does not hold the key (manual CSR): no deployment to managed targets (CSR-2)."""
    # --- validation (DV) ---
    WILDCARD_FILE_VALIDATION = "WildcardFileValidation"
    """Wildcard names cannot be validated by file (DV-4)."""
    CAA_FORBIDS = "CaaForbids"
    """A CAA record does not allow the CA (DV-7)."""
    RECORD_NOT_VISIBLE = "RecordNotVisible"
    """The validation record is not visible at the authoritative servers yet (DV-7)."""
    CONTACT_REQUIRED = "ContactRequired"
    """OV and EV need a contact (name, email, phone) for the CA's verification (DV-6)."""
    # --- CA ---
    CA_REJECTED = "CaRejected"
    """The CA refused the application (CA-2)."""
    CA_POLICY = "CaPolicy"
    """The private CA's policy does not allow a requested name (EL-4)."""
    UNKNOWN_ISSUER = "UnknownIssuer"
    """A certificate names an issuer that is not configured (issue 13: issuers per certificate)."""
    RETRY_LATER = "RetryLater"
    """The CA asked not to be asked again before a time (Retry-After): the application waits."""
    NOT_REVOCABLE = "NotRevocable"
    """The certificate cannot be revoked (not issued by certpilot, or already revoked)."""
    # --- general ---
    NOT_FOUND = "NotFound"
    """No such object."""
    BAD_INPUT = "BadInput"
    """The input could not be used."""
    # --- deployment (DEP) ---
    NOT_DEPLOYABLE = "NotDeployable"
    """The certificate is not issued (or has no certificate PEM): there is nothing to deploy yet."""
    DEPLOYMENT_IN_PROGRESS = "DeploymentInProgress"
    """Another run is deploying this certificate to this target right now."""
    # --- verification (VER) ---
    NOT_SERVED = "NotServed"
    """The endpoint does not serve the new certificate (VER-1); the diagnosis says why (VER-2)."""
    CHAIN_INCOMPLETE = "ChainIncomplete"
    """The endpoint serves the new certificate without every intermediate (DEP-6)."""

    # configuration
    MISSING_CONFIGURATION = "MissingConfiguration"
    """A Prefect block the services are built from does not exist: create it (`certpilot setup`
    or `certpilot up`), or name an existing one."""


@dataclass(frozen=True)
class Refusal:
    """A rule's refusal: which condition failed and what to do instead (EL-5)."""

    reason: Reason
    message: str
    rule: str = ""

    def __str__(self) -> str:
        return f"[{self.reason.value}] {self.message}"


@dataclass(frozen=True)
class Warning_:
    """Something allowed but worth telling (an expired import, a key not rotated)."""

    code: str
    message: str


class CertpilotError(Exception):
    """Root of certpilot's errors."""

    exit_code = 1

    def __init__(self, message: str, reason: Reason | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason


class RefusedError(CertpilotError):
    """A rule refused the operation (CLI exit code 3)."""

    exit_code = 3

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.message, refusal.reason)
        self.refusal = refusal

    def __str__(self) -> str:
        return str(self.refusal)


class BadInputError(CertpilotError):
    """The input cannot be used; nothing stored changed (CLI exit code 4)."""

    exit_code = 4

    def __init__(self, message: str, reason: Reason = Reason.BAD_INPUT):
        super().__init__(message, reason)

    def __str__(self) -> str:
        return f"[{self.reason.value}] {self.message}" if self.reason else self.message


class NotFoundError(BadInputError):
    """No such object (CLI exit code 4)."""

    def __init__(self, message: str):
        super().__init__(message, Reason.NOT_FOUND)


class IllegalTransitionError(CertpilotError):
    """A lifecycle move LC-5 does not allow."""

    exit_code = 3

    def __init__(self, message: str):
        super().__init__(message, Reason.ILLEGAL_TRANSITION)


class TransientError(CertpilotError):
    """A failure worth retrying (network, rate limit, bad nonce, lock contention)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(CertpilotError):
    """A failure that a retry will not fix (the CA refused, bad configuration)."""


class MissingBlockError(PermanentError):
    """A block the configuration needs does not exist; the message names it and what to do."""

    def __init__(self, message: str):
        super().__init__(message, Reason.MISSING_CONFIGURATION)


T = TypeVar("T")
Check = Callable[[T], Refusal | None]


def first_refusal(chain: Iterable[Check[T]], subject: T) -> Refusal | None:
    """Run an ordered chain of pure checks; return the first refusal, or None when all pass."""
    for check in chain:
        refusal = check(subject)
        if refusal is not None:
            return refusal
    return None


def is_transient(exc: BaseException) -> bool:
    """True for errors a task should retry: the `TransientError` family (network, rate limit,
    lock contention). The one definition of what is retried: the tasks' retry condition
    (`tasks.common.only_transient`) asks here; everything else is permanent."""
    return isinstance(exc, TransientError)
