"""Alibaba Cloud SSL Certificates Service (CAS) as an `Issuer`: the seed's own CA service.

Steps, each re-entrant from the CAS order id alone (the order reference is ``cas:<OrderId>``):
  submit   a renewal of a certificate CAS issued (`Application.replaces_pem` names a certificate
           whose CAS order is found by fingerprint) is `RenewCertificateOrderForPackageRequest`
           on that order; anything else is `CreateCertificateForPackageRequest` with the
           package's product code. The CSR is always certpilot's (CSR-1..CSR-3: the key stays
           in certpilot's vault); the contact goes with it (DV-5/DV-6). Before a new request an
           open application of the same product for the same name is looked for and resumed
           (a crash between CAS's answer and certpilot recording it costs no second quota unit).
  advance  `DescribeCertificateState`: ``domain_verify`` → the TXT record CAS asks for is written
           through a DNS provider holding the zone (AliDNS, RFC 2136, Route 53: DV-2), or, with
           none, `ManualActionRequired` shows it to a human (DV-3); the FILE method asks for the
           file through a human (shown in the manual form). ``process`` is the CA's review: PENDING
           with a Retry-After, nothing held (CA-1). ``verify_fail`` is INVALID with CAS's words
           (CA-2). ``certificate`` is VALID.
  poll     the same state, read only.
  fetch    the certificate from the ``certificate`` state; the validation record is removed.
  quota    `DescribePackageState`: the package's remaining certificates (PAY-1/PAY-3).
  cancel   `CancelOrderRequest` / `DeleteCertificateRequest` (PL-7's cancellation of a
           certificate not yet issued: CAS gives the quota unit back).

The SDK client comes in built (`AlibabaConnection.cas()`); nothing here reads settings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from certpilot.adapters.dns.base import normalize_fqdn, provider_for
from certpilot.adapters.dns.manual import ManualActionRequired, ManualRecord
from certpilot.adapters.http01.manual import ManualFile, ManualFileRequired
from certpilot.adapters.issuers.base import Application, IssuedChain, OrderStatus, PollResult, split_pem_chain
from certpilot.core.errors import BadInputError, PermanentError, Reason, Refusal, RefusedError, TransientError
from certpilot.core.models import ValidationMethod

log = logging.getLogger(__name__)

REF_PREFIX = "cas:"
OPEN_STATUSES = ("PAYED", "CHECKING")
"""ListUserCertificateOrder statuses of an application CAS has not issued nor refused yet."""


@dataclass(frozen=True)
class CasProduct:
    """A CAS certificate package: its product code and the specification it sells (PAY-1's key).

    Attributes:
        product_code: CAS's product code (e.g. ``digicert-free-1-free``).
        spec_key: certpilot's specification key ``brand/level/type`` of its certificates.
    """

    product_code: str
    spec_key: str


def ref_of(order_id: int | str) -> str:
    """The order reference certpilot records for a CAS order id."""
    return f"{REF_PREFIX}{order_id}"


def order_id_of(ref: str) -> int:
    """The CAS order id of a reference.

    Raises:
        BadInputError: not a CAS order reference.
    """
    raw = ref.removeprefix(REF_PREFIX)
    if not raw.isdigit():
        raise BadInputError(f"{ref!r} is not a CAS order reference (cas:<OrderId>)")
    return int(raw)


class AlibabaCasIssuer:
    """Alibaba Cloud SSL Certificates Service as an issuer (see the module)."""

    validates_domains = True

    def __init__(self, api: Any, product: CasProduct, *, dns_providers: Sequence[Any] = (),
                 paid: bool = True, publicly_trusted: bool = True, review_retry: float = 60.0,
                 account: str = "") -> None:
        """Args:
            api: the CAS `AlibabaApi` (built from the connection block).
            product: the package applications are made from and whose quota PAY-1 reads.
            dns_providers: providers that write the zones of the names (AliDNS first, usually).
            paid: certificates from the package are billed (quota, credits): the seed's model.
            publicly_trusted: CAS sells publicly trusted certificates (VA-5 caps them).
            review_retry: seconds to wait before asking again while CAS reviews (``process``).
            account: the AccessKey id, to name this issuer (never the secret).
        """
        self._api = api
        self.product = product
        self._providers = list(dns_providers)
        self.paid = paid
        self._public = publicly_trusted
        self.review_retry = review_retry
        self._account = account

    def __repr__(self) -> str:
        return f"AlibabaCasIssuer({self.product.product_code!r}, account={self._account!r})"

    @property
    def name(self) -> str:
        """``alibaba-cas:<product code>``."""
        return f"alibaba-cas:{self.product.product_code}"

    @property
    def publicly_trusted(self) -> bool:
        """Whether browsers trust the package's certificates (DigiCert, GlobalSign… do)."""
        return self._public

    # ------------------------------------------------------------------ quota (PAY-1/PAY-3)
    def service_quota(self) -> dict[str, int]:
        """The package's remaining certificates, by specification key (`DescribePackageState`).

        Raises:
            TransientError / PermanentError: CAS's answer.
        """
        from alibabacloud_cas20200407 import models as m

        body = self._api.call("reading the certificate package's quota", "describe_package_state",
                              m.DescribePackageStateRequest(product_code=self.product.product_code))
        remaining = max(0, int(body.total_count or 0) - int(body.used_count or 0))
        return {self.product.spec_key: remaining}

    # ------------------------------------------------------------------ submit
    def submit(self, application: Application) -> str:
        """Open the CAS application (renewal of the CAS order the replaced certificate came
        from, else a new one from the package); returns ``cas:<OrderId>``.

        Raises:
            RefusedError: CA_POLICY: several names (a package certificate holds one name; a
                multi-domain certificate is bought anew, EL-1).
            TransientError / PermanentError: CAS's answer (quota exhausted, malformed CSR…).
        """
        from alibabacloud_cas20200407 import models as m

        names = application.names
        if len(names) != 1:
            raise RefusedError(Refusal(
                Reason.CA_POLICY, f"CAS package {self.product.product_code} issues single-name certificates and "
                f"{', '.join(names)} has {len(names)} names: buy a multi-domain certificate in CAS and import it",
                "EL-1"))
        csr = application.csr_pem.decode() if isinstance(application.csr_pem, bytes) else application.csr_pem
        resumed = self._open_application(names[0])
        if resumed is not None:
            log.info("CAS application %s for %s found open: resumed, no new request", resumed, names[0])
            return ref_of(resumed)
        previous = self._cas_order_of(application.replaces_pem) if application.replaces_pem else None
        if previous is not None:
            body = self._api.call(f"renewing CAS order {previous}", "renew_certificate_order_for_package_request",
                                  m.RenewCertificateOrderForPackageRequestRequest(order_id=previous, csr=csr))
        else:
            contact = application.contact
            body = self._api.call(
                f"applying for {names[0]} from package {self.product.product_code}",
                "create_certificate_for_package_request",
                m.CreateCertificateForPackageRequestRequest(
                    product_code=self.product.product_code, csr=csr, domain=names[0],
                    validate_type=self._validate_type(application.method),
                    username=contact.name if contact else None, phone=contact.phone if contact else None,
                    email=contact.email if contact else None))
        log.info("CAS order %s opened for %s", body.order_id, names[0])
        return ref_of(body.order_id)

    @staticmethod
    def _validate_type(method: ValidationMethod) -> str:
        return "FILE" if method in (ValidationMethod.HTTP_FILE, ValidationMethod.HTTP_MANUAL) else "DNS"

    def _orders(self, order_type: str, keyword: str) -> list[Any]:
        """Every listed item of `order_type` matching `keyword` (all pages)."""
        from alibabacloud_cas20200407 import models as m

        out: list[Any] = []
        page = 1
        while True:
            body = self._api.call("listing CAS certificates", "list_user_certificate_order",
                                  m.ListUserCertificateOrderRequest(order_type=order_type, keyword=keyword,
                                                                    current_page=page, show_size=50))
            items = body.certificate_order_list or []
            out.extend(items)
            if not items or len(out) >= int(body.total_count or 0):
                return out
            page += 1

    def _cas_order_of(self, leaf_pem: str) -> int | None:
        """The CAS order the certificate `leaf_pem` was issued from, or None (not issued by CAS):
        matched by serial number and by CAS's fingerprints (SHA-1 ``Fingerprint``, SHA-256 ``Sha2``)."""
        from cryptography.hazmat.primitives import hashes

        cert = x509.load_pem_x509_certificate(leaf_pem.encode())
        sha1 = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - CAS names certificates by it
        sha256 = cert.fingerprint(hashes.SHA256()).hex()
        serial = format(cert.serial_number, "x").lower().lstrip("0")
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        keyword = str(cns[0].value) if cns else ""
        for item in self._orders("CERT", keyword):
            same_serial = (item.serial_no or "").lower().lstrip("0") == serial
            prints = {(item.fingerprint or "").replace(":", "").lower(), (item.sha_2 or "").replace(":", "").lower()}
            if same_serial and prints & {sha1, sha256} and item.order_id and not item.upload:
                return int(item.order_id)
        return None

    def _open_application(self, name: str) -> int | None:
        """An application of this package for `name` that CAS has neither issued nor refused."""
        for item in self._orders("CPACK", name):
            if (item.domain or item.common_name) == name and item.product_code in (None, self.product.product_code) \
                    and (item.status or "").upper() in OPEN_STATUSES and item.order_id:
                return int(item.order_id)
        return None

    # ------------------------------------------------------------------ state
    def _state(self, ref: str):
        from alibabacloud_cas20200407 import models as m

        return self._api.call(f"reading CAS order {order_id_of(ref)}", "describe_certificate_state",
                              m.DescribeCertificateStateRequest(order_id=order_id_of(ref)))

    def _result(self, body: Any) -> PollResult:
        kind = (body.type or "").lower()
        if kind == "certificate":
            return PollResult(OrderStatus.VALID)
        if kind == "verify_fail":
            return PollResult(OrderStatus.INVALID, f"CAS refused the application: {body.content or 'verify_fail'}",
                              problems=tuple(p for p in (body.content,) if p))
        if kind == "process":
            return PollResult(OrderStatus.PENDING, "the CA is reviewing the application (CAS state process)",
                              retry_after=self.review_retry)
        if kind == "domain_verify":
            return PollResult(OrderStatus.PENDING, "CAS is checking domain ownership (CAS state domain_verify)",
                              retry_after=5.0)
        if kind == "payed":
            return PollResult(OrderStatus.PENDING, "CAS holds the order, not yet applied for (CAS state payed)",
                              retry_after=5.0)
        raise TransientError(f"CAS order state {body.type!r} is not one certpilot knows; asking again later")

    def poll(self, ref: str) -> PollResult:
        """The order's state (see the module), read only."""
        return self._result(self._state(ref))

    def advance(self, ref: str, application: Application) -> PollResult:
        """Place what ``domain_verify`` asks for (DV-2 through a provider, DV-3 through a
        human), then return the order's state.

        Raises:
            ManualActionRequired / ManualFileRequired: no provider writes the zone (or the
                web root): a human places the record or file shown.
            TransientError / PermanentError: CAS's or the DNS provider's answer.
        """
        body = self._state(ref)
        if (body.type or "").lower() == "domain_verify":
            if (body.validate_type or "DNS").upper() == "FILE":
                self._place_file(body)
            else:
                self._place_record(body)
            body = self._state(ref)
        return self._result(body)

    def _record(self, body: Any) -> tuple[str, str]:
        """(fqdn, value) of the TXT record CAS asks for: RecordDomain is the host record within
        the domain's zone (``_dnsauth``, ``_dnsauth.www``), or a full name."""
        record = normalize_fqdn(body.record_domain or "")
        domain = normalize_fqdn((body.domain or "").removeprefix("*."))
        if not record or not body.record_value:
            raise TransientError("CAS asked for DNS validation without naming the record yet; asking again later")
        if domain and (record == domain or record.endswith("." + domain)):
            return record, body.record_value
        zone = self._zone_of(domain)
        return f"{record}.{zone}" if zone else f"{record}.{domain}", body.record_value

    def _zone_of(self, domain: str) -> str | None:
        provider = provider_for(domain, self._providers)
        return provider.zone_for(domain) if provider is not None else None

    def _place_record(self, body: Any) -> None:
        fqdn, value = self._record(body)
        provider = provider_for(fqdn, self._providers)
        if provider is None or getattr(provider, "needs_human", False):
            raise ManualActionRequired([ManualRecord(fqdn=fqdn, type=(body.record_type or "TXT").upper(), value=value,
                                                     ttl=600)])
        provider.present(fqdn, value)
        log.info("CAS validation record %s placed through %s", fqdn, provider.name)

    def _place_file(self, body: Any) -> None:
        """FILE validation (DV-3): CAS names a URL under ``/.well-known/pki-validation/``; a
        person places it (the web-root responder writes ACME's challenge paths only)."""
        raise ManualFileRequired([CasValidationFile(domain=normalize_fqdn(body.domain or ""), token="cas",
                                                    content=body.content or "", uri=body.uri or "")])

    # ------------------------------------------------------------------ fetch
    def fetch_chain(self, ref: str) -> IssuedChain:
        """The issued certificate and its chain; the validation record is removed (DV-2).

        Raises:
            PermanentError: the order is not issued.
        """
        body = self._state(ref)
        if (body.type or "").lower() != "certificate" or not body.certificate:
            raise PermanentError(f"CAS order {order_id_of(ref)} is {body.type!r}, not issued: nothing to fetch")
        pems = split_pem_chain(body.certificate)
        self._cleanup(normalize_fqdn(body.domain or "").removeprefix("*."))
        return IssuedChain(leaf_pem=pems[0], chain_pems=tuple(p for p in pems[1:]
                                                              if not _self_signed(p)))

    def _cleanup(self, domain: str) -> None:
        """Remove the ``_dnsauth`` TXT values placed for `domain` (all of them: each one is a CAS
        validation token for that name, useless once the name is validated). Never fails the
        collection: a record left is logged for the operator."""
        if not domain:
            return
        fqdn = f"_dnsauth.{domain}"
        provider = provider_for(fqdn, self._providers)
        if provider is None or not hasattr(provider, "values"):
            return
        try:
            for value in provider.values(fqdn):
                provider.cleanup(fqdn, value)
        except (TransientError, PermanentError) as exc:
            log.warning("the CAS validation record %s could not be removed (%s); remove it by hand", fqdn, exc)

    # ------------------------------------------------------------------ cancel (PL-7)
    def cancel(self, ref: str) -> None:
        """Cancel an application CAS has not issued: its quota unit comes back.

        Raises:
            PermanentError: CAS refused (already issued…). TransientError: retry.
        """
        from alibabacloud_cas20200407 import models as m

        order_id = order_id_of(ref)
        self._api.call(f"cancelling CAS order {order_id}", "cancel_order_request",
                       m.CancelOrderRequestRequest(order_id=order_id))


@dataclass(frozen=True)
class CasValidationFile(ManualFile):
    """The file CAS's FILE validation fetches (its URL is CAS's, not ACME's challenge path)."""

    uri: str = ""

    @property
    def path(self) -> str:
        """The URL's path (``/.well-known/pki-validation/fileauth.txt``)."""
        return urlsplit(self.uri).path or "/"

    @property
    def url(self) -> str:
        """Where CAS fetches it."""
        return self.uri


def _self_signed(pem: str) -> bool:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.issuer == cert.subject

