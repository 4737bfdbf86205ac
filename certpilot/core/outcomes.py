"""What the pipeline's use cases report: typed, frozen outcomes the flows branch on (LC-3).

Pure data. The use cases in `certpilot.operations` return these; the Prefect tasks hand them to
the flows unchanged, and the flows decide with `match`/`is` on their enums, never on strings.
Normal outcomes are values here, not exceptions: an order waiting for its payment, a DNS record
a human must add, an application under the CA's review. None of them carries key material
(CSR-5): certificates, keys and orders are named by id and fingerprint only.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from certpilot.core.deployment import DeploymentOutcome
from certpilot.core.models import Level, OrderState, Origin, Status


class _Outcome(BaseModel):
    model_config = ConfigDict(frozen=True)


# ---------------------------------------------------------------- where a renewal run starts


class EntryStage(StrEnum):
    """Where a `renewal` run starts for a certificate, from its database state (re-entrancy)."""

    PAYMENT = "payment"
    """An active certificate: place (or find again) its renewal order, pay it, then work on the
    order's first certificate."""
    APPLICATION = "application"
    """A certificate of an order (pending, under review, rejected): key and CSR, validation, the
    CA's review, then deploy."""
    DEPLOYMENT = "deployment"
    """Issued, not yet serving everywhere its predecessor served (DEP-1): deploy and verify."""


class RenewalEntry(_Outcome):
    """A certificate as a `renewal` run first sees it: its name, state and the stage to start at."""

    certificate_id: str
    common_name: str
    state: Status
    stage: EntryStage


# ---------------------------------------------------------------- stage 1: order and payment


class RenewalStep(_Outcome):
    """Where a renewal order stands after it was placed or its payment answered (PAY-1, PAY-4).

    Attributes:
        certificate_id: the certificate being renewed.
        order_id: the order (found again by its idempotency key on a rerun).
        state: AWAITING_PAYMENT (the payment form is next), PAID, DECLINED or CANCELLED.
        certificate_ids: the order's new certificates by plan index (none until paid).
        shortfall: the charge (money units) waiting for approval; 0 unless awaiting payment.
        message: what to approve and how, when the order awaits payment (SHORTFALL_NOT_APPROVED).
        managed_fee: the order carries PAY-2's managed service.
        submit_first_now: the first certificate is applied for now (PL-1), not at its managed
            start (PAY-2, PL-4).
    """

    certificate_id: str | None
    order_id: str
    state: OrderState
    certificate_ids: tuple[str, ...] = ()
    shortfall: int = 0
    message: str = ""
    managed_fee: bool = False
    submit_first_now: bool = False

    @property
    def awaiting_payment(self) -> bool:
        """True while the order waits for its shortfall to be approved or declined (PAY-1)."""
        return self.state is OrderState.AWAITING_PAYMENT

    @property
    def first_to_apply(self) -> str | None:
        """The certificate to apply for now: the first of a paid order when PL-1 says now."""
        if self.state is OrderState.PAID and self.submit_first_now and self.certificate_ids:
            return self.certificate_ids[0]
        return None


# ---------------------------------------------------------------- stage 2: key, CSR, CA


class ApplicationState(StrEnum):
    """How far a certificate's CA application got (its `ca_applications` row)."""

    NOT_STARTED = "not_started"
    """No key or CSR yet (no row)."""
    CSR_READY = "csr_ready"
    """Key (if held) and CSR exist; nothing sent to a CA yet."""
    ORDERED = "ordered"
    """The CA order exists (its reference recorded); validation or review in progress."""
    VALID = "valid"
    """The CA issued; the chain can be collected."""
    COLLECTED = "collected"
    """The chain is stored on the certificate (state ISSUED)."""
    REJECTED = "rejected"
    """The CA refused (CA-2): fix and resubmit."""


class ApplicationStatus(_Outcome):
    """Where a certificate stands for stage 2: lifecycle state, application, what it still needs.

    Attributes:
        certificate_id: the certificate.
        state: its lifecycle state (LC-5).
        application: how far its CA application got.
        needs_contact: OV/EV without a complete contact for the CA's verification (DV-5, DV-6).
        key_held: certpilot holds its key (CSR-2).
        common_name, level, origin, temporary: what an operator sees on a form.
        fingerprint: the certificate's SHA-256 fingerprint once issued.
        last_error: the CA's last answer when it rejected the application (CA-2).
        attempt: which application of the certificate this is (1, then 2 after a rejection and
            a resubmission, CA-2): the human steps of one attempt are asked and told once.
    """

    certificate_id: str
    state: Status
    application: ApplicationState
    needs_contact: bool
    key_held: bool
    common_name: str
    level: Level
    origin: Origin
    temporary: bool = False
    fingerprint: str | None = None
    last_error: str | None = None
    attempt: int = 1

    @property
    def asks_contact(self) -> bool:
        """DV-6: the application is pending and the CA's contact must be asked for first."""
        return self.state is Status.PENDING_APPLICATION and self.needs_contact

    @property
    def needs_key(self) -> bool:
        """CSR-1: pending with no key and CSR yet."""
        return self.state is Status.PENDING_APPLICATION and self.application is ApplicationState.NOT_STARTED

    @property
    def needs_submission(self) -> bool:
        """CA-1: pending or under review and not collected yet: submit, or resume the CA order."""
        return (self.state in (Status.PENDING_APPLICATION, Status.UNDER_REVIEW)
                and self.application is not ApplicationState.COLLECTED)


class KeyAndCsrMade(_Outcome):
    """The key and CSR of a certificate (CSR-1..CSR-5): ids and fingerprints, never the key."""

    certificate_id: str
    key_id: str | None
    public_fingerprint: str
    key_held: bool
    warnings: tuple[str, ...] = ()


class DnsRecord(_Outcome):
    """A DNS record a human must add (or remove) at their DNS host (DV-3), as data.

    Attributes:
        fqdn: the record name, lower-case, no trailing dot (``_acme-challenge.www.example.com``).
        type: the record type (``TXT``).
        value: the record's value, unquoted.
        ttl: the TTL suggested.
        action: ``add`` or ``remove``.
        zone_line: the record as one zone-file line, for showing.
        instruction: a sentence for the operator, for showing.
    """

    fqdn: str
    type: str
    value: str
    ttl: int
    action: str = "add"
    zone_line: str
    instruction: str


class SubmitKind(StrEnum):
    """What submitting (or resuming) a CA application led to (CA-1, DV-3, CA-2)."""

    UNDER_REVIEW = "under_review"
    """Placed at the CA; validation, finalization or the CA's review goes on (follow it)."""
    ISSUED = "issued"
    """Issued and collected: the certificate is ISSUED."""
    REJECTED = "rejected"
    """The CA refused: the certificate is REJECTED (CA-2)."""
    MANUAL_DNS = "manual_dns"
    """A human must add DNS records first (DV-3): `records` says which; then submit again."""
    MANUAL_FILE = "manual_file"
    """A human must place HTTP-01 files first (DV-3): `files` says which; then submit again."""
    RETRY_LATER = "retry_later"
    """The CA asked not to be asked before `retry_at` (Retry-After): the application waits, the
    scanner resumes it then; no worker sleeps through it."""


class FileToPlace(_Outcome):
    """An HTTP-01 file a person must place on the web server (DV-3), as data.

    Attributes:
        url: where the CA fetches it.
        path: its path under the site's root (``/.well-known/acme-challenge/TOKEN``).
        content: exactly what it must contain.
        instruction: a sentence for the operator.
    """

    url: str
    path: str
    content: str
    instruction: str


class SubmitOutcome(_Outcome):
    """The outcome of one submission of a certificate's application.

    Attributes:
        certificate_id: the certificate.
        kind: what happened.
        order_ref: the CA order's reference ("" before one was placed).
        detail: the CA's detail (its reason, for a rejection).
        resumed: an order placed by an earlier run was resumed.
        records: for MANUAL_DNS, the records to add; empty otherwise.
        files: for MANUAL_FILE, the files to place; empty otherwise.
        retry_at: for RETRY_LATER, when the CA may be asked again.
        issuer: the configured issuer the order went to (a fallback's name when one took it).
    """

    certificate_id: str
    kind: SubmitKind
    order_ref: str = ""
    detail: str = ""
    resumed: bool = False
    records: tuple[DnsRecord, ...] = ()
    files: tuple[FileToPlace, ...] = ()
    retry_at: datetime | None = None
    issuer: str = ""


class ReviewOutcome(_Outcome):
    """A CA review followed (CA-2): the certificate's lifecycle state after the poll(s).

    `polled` is False when the certificate was not under review (nothing was asked of the CA);
    `attempt` is the application's attempt (see `ApplicationStatus.attempt`), so a run that
    waits out a long review waits once per attempt.
    """

    certificate_id: str
    state: Status
    detail: str = ""
    polled: bool = False
    attempt: int = 1


# ---------------------------------------------------------------- emergency (EM-1..EM-3)


class FollowUp(_Outcome):
    """EM-2: the purchase of the original specification that replaces the temporary certificate.

    `state` is None (and `message` says why) when no order could be recorded.
    """

    order_id: str | None
    state: OrderState | None
    message: str = ""


class EmergencyPlaced(_Outcome):
    """EM-1/EM-2: the temporary DV certificate of an expired one, its order and the follow-up.

    `created` is False when a rerun found them again.
    """

    certificate_id: str
    temporary_certificate_id: str
    order_id: str | None
    created: bool
    follow_up: FollowUp | None = None


# ---------------------------------------------------------------- what the flows return


class DeployRun(_Outcome):
    """What the deploy stage did: one `core.deployment.DeploymentOutcome` per managed deployment
    task of the certificate (DEP-2)."""

    certificate_id: str
    results: tuple[DeploymentOutcome, ...] = ()

    @property
    def failed(self) -> tuple[DeploymentOutcome, ...]:
        """The tasks that did not end with the new certificate in place (verified, or on a target
        marked not verifiable: see `unverified`)."""
        return tuple(r for r in self.results if not r.deployed)

    @property
    def unverified(self) -> tuple[DeploymentOutcome, ...]:
        """The tasks deployed to targets marked not verifiable (VER-1: never shown as verified)."""
        return tuple(r for r in self.results if r.state.value == "unverified")


class VerifyOutcome(_Outcome):
    """The verify stage's proof (VER-1): every endpoint of every target the certificate is now
    deployed to, probed for its fingerprint.

    Attributes:
        certificate_id: the certificate.
        served: the endpoints that serve it (``host:port (sni)``).
        failures: the endpoints that do not, each with what it serves instead.
    """

    certificate_id: str
    served: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no endpoint serves anything else (none recorded counts as proven)."""
        return not self.failures


class RenewalRun(_Outcome):
    """What a `renewal` run ended with.

    Attributes:
        certificate_id: the certificate the run was started for.
        order: the renewal order's step, when the run started from an active certificate.
        worked_on: the certificate the run applied for and deployed (the order's first, or
            `certificate_id` itself); None when the run ended at the payment stage.
        state: that certificate's lifecycle state at the end (UNDER_REVIEW: the scanner follows
            the CA's review).
        deploy: the deploy stage's outcome, once issued.
        verify: the final proof that every endpoint serves it.
        message: a sentence for the operator on how the run ended.
    """

    certificate_id: str
    order: RenewalStep | None = None
    worked_on: str | None = None
    state: Status | None = None
    deploy: DeployRun | None = None
    verify: VerifyOutcome | None = None
    message: str = ""


class EmergencyRun(EmergencyPlaced):
    """What an `emergency` run did (EM-1..EM-3).

    Attributes:
        state: the temporary certificate's lifecycle state after the CA stages.
        targets: where the old certificate was deployed (EM-3), as ``kind:name``.
        deploy: the deployment of the temporary certificate, once issued.
        verify: the final proof that every endpoint serves it.
    """

    state: Status
    targets: tuple[str, ...] = ()
    deploy: DeployRun | None = None
    verify: VerifyOutcome | None = None
