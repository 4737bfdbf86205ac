"""AWS Private CA (`acm-pca`) as an `Issuer`: a managed private CA, no domain validation.

Steps, each re-entrant from the certificate ARN alone:
  submit   `IssueCertificate` with the CSR, the validity and the application's idempotency
           token (a rerun after a crash within AWS's idempotency window gets the same ARN back
           instead of a second certificate); returns the certificate ARN.
  advance / poll   `GetCertificate`: RequestInProgressException means still being issued.
  fetch    leaf + chain from `GetCertificate`.
  revoke   `RevokeCertificate` by serial (the CA's CRL/OCSP publish it).

The boto3 client is passed in (built by the block with its credentials and endpoint), so this
module never reads settings. Throttling and in-progress answers are `TransientError`; refusals
(malformed CSR, CA not active, limits) are `PermanentError` with AWS's message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from cryptography import x509

from certpilot.adapters.issuers.base import (
    REVOCATION_REASONS,
    Application,
    IssuedChain,
    OrderStatus,
    PollResult,
    split_pem_chain,
)
from certpilot.core.errors import BadInputError, PermanentError, Reason, Refusal, RefusedError, TransientError

log = logging.getLogger(__name__)

_TRANSIENT = frozenset({"ThrottlingException", "RequestInProgressException", "ConcurrentModificationException",
                        "ServiceUnavailable", "InternalFailure", "LimitExceededException"})
"""AWS error codes worth asking again later; any other is AWS's refusal."""

_AWS_REASONS = {
    "unspecified": "UNSPECIFIED", "keyCompromise": "KEY_COMPROMISE", "cACompromise": "CERTIFICATE_AUTHORITY_COMPROMISE",
    "affiliationChanged": "AFFILIATION_CHANGED", "superseded": "SUPERSEDED",
    "cessationOfOperation": "CESSATION_OF_OPERATION", "privilegeWithdrawn": "PRIVILEGE_WITHDRAWN",
    "aACompromise": "A_A_COMPROMISE",
}
"""RFC 5280 reason names → AWS Private CA's RevocationReason values."""


class AwsPrivateCa:
    """An AWS Private CA certificate authority as an `Issuer`."""

    def __init__(self, client: Any, ca_arn: str, *, validity_days: int = 90,
                 signing_algorithm: str = "SHA256WITHRSA", template_arn: str | None = None,
                 allowed_suffixes: Sequence[str] = (), paid: bool = False) -> None:
        """Args:
            client: a boto3 ``acm-pca`` client (credentials, region, endpoint set by its builder).
            ca_arn: the certificate authority's ARN.
            validity_days: lifetime of issued certificates.
            signing_algorithm: the CA's signing algorithm (must suit its key: SHA256WITHRSA,
                SHA256WITHECDSA, ...).
            template_arn: a certificate template ARN (default: AWS's end-entity template).
            allowed_suffixes: DNS suffixes this CA may sign (empty: any name).
            paid: whether renewals through it consume quota and credits (the seed's paid model).
        """
        self._client = client
        self.ca_arn = ca_arn
        self.validity_days = validity_days
        self.signing_algorithm = signing_algorithm
        self.template_arn = template_arn
        self.allowed_suffixes = tuple(s.lower().lstrip(".") for s in allowed_suffixes)
        self.paid = paid

    @property
    def name(self) -> str:
        """``aws-pca:<CA ARN>``."""
        return f"aws-pca:{self.ca_arn}"

    @property
    def publicly_trusted(self) -> bool:
        """A private CA: never publicly trusted (VA-5 does not cap it)."""
        return False

    def _call(self, what: str, operation: str, **params: Any) -> dict:
        """One AWS call, its failures mapped to certpilot's error family."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "") or code
            if code in _TRANSIENT:
                raise TransientError(f"{what}: AWS Private CA answered {code}: {message}; retry later") from None
            raise PermanentError(f"{what}: AWS Private CA refused ({code}): {message}", Reason.CA_REJECTED) from None
        except BotoCoreError as exc:
            raise TransientError(f"{what}: cannot reach AWS Private CA ({type(exc).__name__}); retry later") from None

    def _check_names(self, names: Sequence[str]) -> None:
        if not self.allowed_suffixes:
            return
        for name in names:
            bare = name.lower().removeprefix("*.")
            if not any(bare == s or bare.endswith("." + s) for s in self.allowed_suffixes):
                raise RefusedError(Refusal(Reason.CA_POLICY,
                                           f"{name} is outside the names AWS Private CA {self.ca_arn} may sign "
                                           f"({', '.join(self.allowed_suffixes)}); choose another issuer for it "
                                           "(`certpilot policy ID --issuer NAME`)", "EL-4"))

    def submit(self, application: Application) -> str:
        """`IssueCertificate`; returns the certificate ARN (the order reference).

        Raises:
            RefusedError: CA_POLICY: a name outside the allowed suffixes (nothing asked of AWS).
            TransientError / PermanentError: AWS's answer.
        """
        self._check_names(application.names)
        params: dict[str, Any] = {
            "CertificateAuthorityArn": self.ca_arn, "Csr": application.csr_pem,
            "SigningAlgorithm": self.signing_algorithm,
            "Validity": {"Value": self.validity_days, "Type": "DAYS"},
        }
        if application.token:
            params["IdempotencyToken"] = application.token[:36]
        if self.template_arn:
            params["TemplateArn"] = self.template_arn
        arn = self._call("issuing the certificate", "issue_certificate", **params)["CertificateArn"]
        log.info("AWS Private CA certificate %s requested for %s", arn, ", ".join(application.names))
        return arn

    def poll(self, ref: str) -> PollResult:
        """VALID once AWS has issued the certificate, PENDING while it is being issued."""
        try:
            self._call("reading the certificate", "get_certificate", CertificateAuthorityArn=self.ca_arn,
                       CertificateArn=ref)
        except TransientError as exc:
            if "RequestInProgressException" in exc.message:
                return PollResult(OrderStatus.PENDING, "AWS Private CA is issuing the certificate", retry_after=1.0)
            raise
        return PollResult(OrderStatus.VALID)

    def advance(self, ref: str, application: Application) -> PollResult:
        """Nothing to validate: the certificate's state (`poll`)."""
        return self.poll(ref)

    def fetch_chain(self, ref: str) -> IssuedChain:
        """The issued leaf and its chain.

        Raises:
            PermanentError: AWS does not know the certificate.
            TransientError: it is still being issued.
        """
        answer = self._call("reading the certificate", "get_certificate", CertificateAuthorityArn=self.ca_arn,
                            CertificateArn=ref)
        chain = split_pem_chain(answer.get("CertificateChain", "") or "")
        return IssuedChain(leaf_pem=split_pem_chain(answer["Certificate"])[0], chain_pems=tuple(chain))

    def revoke(self, leaf_pem: str, reason: str) -> None:
        """`RevokeCertificate` by serial (hex, as AWS expects it).

        Raises:
            BadInputError: a reason AWS Private CA does not know.
            PermanentError / TransientError: AWS's answer.
        """
        if reason not in _AWS_REASONS:
            known = ", ".join(r for r in REVOCATION_REASONS if r in _AWS_REASONS)
            raise BadInputError(f"AWS Private CA does not revoke for {reason!r}; use one of {known}")
        serial = x509.load_pem_x509_certificate(leaf_pem.encode()).serial_number
        self._call("revoking the certificate", "revoke_certificate", CertificateAuthorityArn=self.ca_arn,
                   CertificateSerial=format(serial, "x"), RevocationReason=_AWS_REASONS[reason])
