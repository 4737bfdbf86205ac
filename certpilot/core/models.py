"""The domain's data: certificates, orders, ledger entries, contacts, policy.

Pure data (pydantic v2), no I/O. Time is always timezone-aware UTC. Every other module of
`certpilot.core` decides over these types; the store maps them to rows, the adapters act on them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Status(StrEnum):
    """One status for every certificate.

    Lifecycle states (stored, moved only along LC-5) and derived statuses (LC-4: computed from
    dates at the time asked, never stored).
    """

    # --- lifecycle (stored) ---
    NOT_ACTIVATED = "not_activated"
    """A later certificate of a multi-year plan, waiting its turn (PL-3)."""
    PENDING_APPLICATION = "pending_application"
    """Issued to the account, not yet requested from the CA."""
    UNDER_REVIEW = "under_review"
    """Requested from the CA; validation and review in progress."""
    ISSUED = "issued"
    """The CA issued it (official or private-CA issuance through certpilot)."""
    UPLOADED = "uploaded"
    """Issued elsewhere and imported into the inventory."""
    REJECTED = "rejected"
    """The CA refused the application."""
    CANCELLED = "cancelled"
    """A not-activated certificate cancelled by its owner (PL-7)."""
    REVOKED = "revoked"
    """Revoked by its CA."""
    # --- derived (never stored) ---
    VALID = "valid"
    """Issued or uploaded, more than the expiry window left."""
    EXPIRING_SOON = "expiring_soon"
    """Issued or uploaded, at most the expiry window left (LC-4)."""
    EXPIRED = "expired"
    """Issued or uploaded, `not_after` has passed (LC-4)."""


LIFECYCLE_STATES = frozenset(
    {
        Status.NOT_ACTIVATED,
        Status.PENDING_APPLICATION,
        Status.UNDER_REVIEW,
        Status.ISSUED,
        Status.UPLOADED,
        Status.REJECTED,
        Status.CANCELLED,
        Status.REVOKED,
    }
)


class CertType(StrEnum):
    """UP-1 certificate types."""

    SINGLE = "single"
    WILDCARD = "wildcard"
    MULTI = "multi"


class Origin(StrEnum):
    """Where a certificate came from (seed terms: 公式証明書 / アップロード / PCA)."""

    OFFICIAL = "official"
    UPLOADED = "uploaded"
    PRIVATE_CA = "private-ca"


class Level(StrEnum):
    """Validation level (UP-2)."""

    DV = "DV"
    OV = "OV"
    EV = "EV"


class KeyAlgorithm(StrEnum):
    """Key algorithms certpilot generates and accepts."""

    RSA2048 = "RSA-2048"
    RSA3072 = "RSA-3072"
    RSA4096 = "RSA-4096"
    EC_P256 = "EC-P256"
    EC_P384 = "EC-P384"


class ValidationMethod(StrEnum):
    """How domain ownership is proven (DV-1..DV-4)."""

    DNS_AUTO = "dns-auto"
    """The system writes the TXT record through a configured DNS provider (DV-2)."""
    DNS_MANUAL = "dns-manual"
    """A human adds the TXT record; the system waits until it is visible (DV-3)."""
    HTTP_FILE = "http-file"
    """A file under /.well-known/acme-challenge/ written by the system's webroot responder (DV-3);
    never for wildcards (DV-4)."""
    HTTP_MANUAL = "http-manual"
    """A person places the file on the web server (DV-3, NT-2); never for wildcards (DV-4)."""
    DELEGATED = "delegated"
    """_acme-challenge CNAME'd to a zone the system writes (validation-free authorization)."""


class OrderKind(StrEnum):
    """Why an order exists; PL-4's managed-start threshold depends on it."""

    RENEWAL = "renewal"
    PURCHASE = "purchase"
    EMERGENCY = "emergency"


class CsrMode(StrEnum):
    """CSR-1..CSR-3."""

    SYSTEM = "system"
    MANUAL = "manual"
    REUSE = "reuse"


class OrderState(StrEnum):
    """An order's own state (stage 1 of LC-3)."""

    AWAITING_PAYMENT = "awaiting_payment"
    """Recorded; a shortfall waits for approval of the charge."""
    PAID = "paid"
    """Paid from quota/credits and any approved charge; certificates created."""
    DECLINED = "declined"
    """The shortfall's payment was declined; nothing consumed."""
    CANCELLED = "cancelled"
    """Closed by its owner before it was paid (`certpilot order cancel`); nothing consumed."""
    EXPIRED = "expired"
    """Left awaiting payment longer than `Policy.order_expiry_days`; nothing consumed. Derived at
    the time asked (`core.payment.order_state_at`), so listings are right without a job; it can no
    longer be paid, and `certpilot order cancel` records it as cancelled."""


class LedgerKind(StrEnum):
    """What a ledger entry moves (PAY-3, PAY-4)."""

    QUOTA = "quota"
    """Certificate quota of one specification (delta +N purchased, -1 consumed)."""
    MANAGED = "managed"
    """Managed-service credits (delta +N purchased, -1 consumed)."""
    CHARGE = "charge"
    """Money charged for a shortfall (amount in units; informational, no balance)."""


UTC_ = UTC


def utc(dt: datetime) -> datetime:
    """Return `dt` as timezone-aware UTC; refuse naive datetimes (they are bugs)."""
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt.isoformat()}: certpilot works in timezone-aware UTC")
    return dt.astimezone(UTC)


def iso_z(dt: datetime) -> str:
    """An aware instant as ISO 8601 UTC ending in ``Z`` (``2025-09-10T00:00:00Z``): machine output,
    artifacts, and the `--at` values the refusals suggest."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Spec(BaseModel):
    """A certificate's specification: what EL-1(c) forbids changing and PAY-1 matches quota by."""

    model_config = ConfigDict(frozen=True)

    brand: str
    level: Level
    cert_type: CertType

    @property
    def key(self) -> str:
        """Stable string used as the ledger's specification key, e.g. ``DigiCert/DV/single``."""
        return f"{self.brand}/{self.level.value}/{self.cert_type.value}"

    @classmethod
    def from_key(cls, key: str) -> Spec:
        """Parse `brand/level/type`; raises ValueError on another shape."""
        brand, level, cert_type = key.split("/")
        return cls(brand=brand, level=Level(level), cert_type=CertType(cert_type))


class Contact(BaseModel):
    """A person the CA may call (DV-6) and who hears of expiry (NT-1)."""

    model_config = ConfigDict(frozen=True)

    name: str = ""
    email: str
    phone: str = ""


class Certificate(BaseModel):
    """One certificate of the inventory (issued, uploaded or planned)."""

    id: str
    common_name: str
    names: list[str]
    cert_type: CertType
    origin: Origin
    level: Level = Level.DV
    brand: str = "certpilot"
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256
    not_before: datetime | None = None
    not_after: datetime | None = None
    serial: str | None = None
    fingerprint_sha256: str | None = None
    parent_id: str | None = None
    order_id: str | None = None
    plan_index: int = 0
    state: Status
    validation_method: ValidationMethod = ValidationMethod.DNS_AUTO
    owner: Contact | None = None
    temporary: bool = False
    key_held: bool = True
    publicly_trusted: bool = True
    planned_not_before: datetime | None = None
    """The window asked of the CA when it was submitted (None before): plan vs issued (VA-5)."""
    planned_not_after: datetime | None = None

    @field_validator("not_before", "not_after", "planned_not_before", "planned_not_after")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return utc(v) if v is not None else None

    @property
    def spec(self) -> Spec:
        """The certificate's specification."""
        return Spec(brand=self.brand, level=self.level, cert_type=self.cert_type)


class PlannedCertificate(BaseModel):
    """One certificate a plan will produce, with its expected validity window."""

    index: int
    state: Status
    not_before: datetime
    not_after: datetime
    reissue: bool = False
    """True for the extra certificates VA-5 adds when the CA/B cap cuts coverage short."""

    @property
    def days(self) -> int:
        """Validity in whole days."""
        return (self.not_after - self.not_before) // timedelta(days=1)


class PaymentLine(BaseModel):
    """One line of an order's bill (PAY-1, PAY-2)."""

    kind: LedgerKind
    spec_key: str | None = None
    needed: int
    from_balance: int
    shortfall: int
    unit_price: int = 0
    description: str = ""


class Order(BaseModel):
    """A renewal, purchase or emergency order (stage 1 of LC-3)."""

    id: str
    kind: OrderKind
    certificate_id: str | None
    spec: Spec
    years: int = Field(ge=1, le=3)
    csr_mode: CsrMode = CsrMode.SYSTEM
    managed_services: int = 0
    managed_fee: bool = False
    planned: list[PlannedCertificate] = []
    payment: list[PaymentLine] = []
    state: OrderState = OrderState.AWAITING_PAYMENT
    created_at: datetime
    names: list[str] = []
    """What a purchase buys (its certificates' names, first = common name); empty for a renewal,
    whose certificates take the original's names."""
    owner: Contact | None = None
    """A purchase's owner (DV-6, NT-1), given to its certificates."""
    coverage_not_after: datetime | None = None
    """The end of the coverage term the order bought (VA-5): its certificates are started until it
    is covered, whatever the CA signs. None for orders placed before it was kept (then the last
    planned certificate's end)."""


class LedgerEntry(BaseModel):
    """One append-only movement of quota, credit or money (PAY-4)."""

    id: str
    kind: LedgerKind
    spec_key: str | None
    delta: int
    order_id: str | None
    idempotency_key: str
    created_at: datetime
    note: str = ""
    amount: int = 0
    """Money in units for CHARGE entries (informational; balances sum `delta` only)."""


class Balances(BaseModel):
    """PAY-3: remaining quota per specification and remaining managed-service credits."""

    quota: dict[str, int] = {}
    managed: int = 0

    def quota_for(self, spec: Spec) -> int:
        """Remaining quota of one specification (0 when none was ever bought)."""
        return self.quota.get(spec.key, 0)


class Policy(BaseModel):
    """The tunable numbers of the rules; defaults are the seed's."""

    model_config = ConfigDict(frozen=True)

    expiry_window_days: int = 60
    """LC-4: expiring soon at or under this many days left."""
    standard_validity_days: int = 365
    """VA-1: a year of validity."""
    carry_over_cap_days: int = 30
    """VA-1/VA-2: at most this much remaining validity carries over."""
    managed_start_days: dict[OrderKind, int] = {
        OrderKind.RENEWAL: 30,
        OrderKind.PURCHASE: 15,
        OrderKind.EMERGENCY: 30,
    }
    """PL-4: threshold of remaining validity that starts the next certificate, per order kind."""
    managed_fee_threshold_days: int = 30
    """PAY-2: renewing with more than this left adds the managed-service fee."""
    auto_renew_start_days: int = 30
    """PL-1/PAY-2: automatic renewal starts when this many days are left (default 30: the
    managed-service fee of an earlier renewal is avoided, the seed's FAQ). A certificate may start
    earlier by its own policy (`certpilot policy ID --start-days N`), paying that fee."""
    max_names_multi: int = 5
    """UP-1: multi-domain certificates hold at most this many names."""
    notice_days: tuple[int, ...] = (30, 14, 7, 3, 1)
    """NT-1: expiry notices are sent at these days before expiry, once each."""
    quota_price: int = 100
    """Price of one certificate quota when a shortfall is charged (units)."""
    managed_price: int = 20
    """Price of one managed-service credit when a shortfall is charged (units)."""
    order_expiry_days: int = 30
    """An order left awaiting payment this many days expires (`core.payment.order_state_at`)."""

    @property
    def expiry_window(self) -> timedelta:
        """LC-4's window as a timedelta."""
        return timedelta(days=self.expiry_window_days)


DEFAULT_POLICY = Policy()
