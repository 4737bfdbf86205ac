"""AWS Certificate Manager as a fleet to move in: every certificate of a region, read-only.

`AcmFleet(client).certificates()` lists the region's certificates of every key type (ACM's
`ListCertificates` shows RSA-2048 ones only unless asked for the others), describes each (names,
dates, type, status, in-use-by) and fetches the certificate and chain of issued ones. Private keys
are never asked for: ACM does not give an imported certificate's key, and an ACM-issued one stays
in ACM. The client is passed in (a boto3 ACM client); nothing here reads settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certpilot.core.errors import PermanentError

KEY_TYPES = ("RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1")
"""Every key type `ListCertificates` filters on (the default is RSA-2048 only)."""


class AcmReadError(PermanentError):
    """ACM could not be read (credentials, region, endpoint): said with the region and what to check."""


@dataclass(frozen=True)
class AcmCertificate:
    """One ACM certificate as certpilot inventories it (no key: ACM never gives it)."""

    arn: str
    domain_name: str
    names: tuple[str, ...]
    kind: str
    """IMPORTED, AMAZON_ISSUED or PRIVATE."""
    status: str
    """ISSUED, PENDING_VALIDATION, EXPIRED, FAILED, ..."""
    not_before: datetime | None
    not_after: datetime | None
    in_use_by: tuple[str, ...]
    """ARNs of the AWS resources that serve it (load balancers, CloudFront, API Gateway)."""
    certificate_pem: str | None
    """The certificate (PEM) when ACM holds one (issued or imported), else None."""
    chain_pem: str | None


class AcmFleet:
    """The certificates of one ACM region (see the module)."""

    def __init__(self, client: Any, *, region: str) -> None:
        self._acm = client
        self.region = region

    def certificates(self) -> Iterator[AcmCertificate]:
        """Every certificate of the region, in ACM's listing order.

        Raises:
            AcmReadError: ACM refused or could not be reached (the message names the region).
        """
        for summary in self._summaries():
            yield self._describe(summary["CertificateArn"])

    def _summaries(self) -> Iterator[dict[str, Any]]:
        try:
            pages = self._acm.get_paginator("list_certificates").paginate(Includes={"keyTypes": list(KEY_TYPES)})
            for page in pages:
                yield from page.get("CertificateSummaryList", [])
        except Exception as exc:  # noqa: BLE001 - botocore's errors: credentials, endpoint, throttling
            raise AcmReadError(self._why(exc, "list the certificates")) from None

    def _describe(self, arn: str) -> AcmCertificate:
        try:
            d = self._acm.describe_certificate(CertificateArn=arn)["Certificate"]
            pem = chain = None
            if d.get("Status") in ("ISSUED", "EXPIRED", "INACTIVE") or d.get("Type") == "IMPORTED":
                got = self._acm.get_certificate(CertificateArn=arn)
                pem, chain = got.get("Certificate"), got.get("CertificateChain")
        except Exception as exc:  # noqa: BLE001 - see _summaries
            raise AcmReadError(self._why(exc, f"read {arn}")) from None
        return AcmCertificate(
            arn=arn, domain_name=d.get("DomainName", ""), names=tuple(d.get("SubjectAlternativeNames") or ()),
            kind=d.get("Type", ""), status=d.get("Status", ""), not_before=d.get("NotBefore"),
            not_after=d.get("NotAfter"), in_use_by=tuple(d.get("InUseBy") or ()), certificate_pem=pem,
            chain_pem=chain)

    def _why(self, exc: Exception, doing: str) -> str:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
        return (f"could not {doing} in ACM region {self.region} ({code or type(exc).__name__}); check the AWS "
                "credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE), --region and AWS_ENDPOINT_URL")
