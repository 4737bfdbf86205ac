"""The certificates of an Alibaba Cloud account (CAS), read-only, as certpilot inventories them.

`CasInventory(api).certificates()` lists every certificate of the account
(`ListUserCertificateOrder` with OrderType ``CERT``: issued by CAS and uploaded), reads each one's
PEM and details (`GetUserCertificateDetail`), and the cloud resources that serve it
(`ListCloudResources`: load balancers, CDN, WAF… that a deployment job can move to its
successor, DEP-2). A private key CAS returns (an uploaded certificate's, a CAS-generated one)
is handed over behind an opener, never as a field: the caller seals it in the vault or drops it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from certpilot.core.models import Level

BRANDS = {"digicert": "DigiCert", "globalsign": "GlobalSign", "geotrust": "GeoTrust", "vtrus": "vTrus",
          "cfca": "CFCA", "wosign": "WoSign", "rapidssl": "RapidSSL", "alibaba": "Alibaba Cloud",
          "aliyun": "Alibaba Cloud"}
"""CAS's RootBrand values (lower-case) → certpilot's brand names (UP-2)."""


@dataclass(frozen=True)
class CloudResource:
    """A cloud resource serving a certificate: what a deployment job targets."""

    id: int
    product: str
    """SLB, ALB, CDN, WAF, …"""
    domain: str
    instance_id: str
    region: str
    port: int | None


@dataclass(frozen=True)
class CasCertificate:
    """One certificate of the account (no key material: see `key`).

    Attributes:
        cert_id: CAS's certificate id.
        order_id: the CAS order it was issued from (None for an uploaded one).
        uploaded: uploaded by the account (origin *uploaded*) rather than issued by CAS (*official*).
        brand, level: the specification (UP-2) as CAS reports it.
        names: the certificate's names (SANs).
        status: CAS's status (ISSUED, WILLEXPIRED, EXPIRED, …).
        product_code: the package it came from (official ones).
        certificate_pem: leaf and chain as CAS holds them.
        resources: the cloud resources serving it.
        key: `() -> key PEM` when CAS returned a private key, else None.
    """

    cert_id: int
    order_id: int | None
    uploaded: bool
    brand: str
    level: Level
    names: tuple[str, ...]
    common_name: str
    status: str
    product_code: str | None
    not_before: datetime | None
    not_after: datetime | None
    certificate_pem: str
    resources: tuple[CloudResource, ...] = ()
    key: Callable[[], str] | None = field(default=None, repr=False, compare=False)


def _ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None


def brand_of(root_brand: str | None, issuer: str | None = None) -> str:
    """certpilot's brand name for CAS's RootBrand (or the issuer's name when it says nothing)."""
    for raw in (root_brand, issuer):
        text = (raw or "").lower()
        for token, brand in BRANDS.items():
            if token in text:
                return brand
    return (root_brand or "").strip() or "Alibaba Cloud"


def level_of(cert_type: str | None) -> Level:
    """DV/OV/EV from CAS's CertType (DV unless it says OV or EV)."""
    text = (cert_type or "").upper()
    return Level.EV if "EV" in text else Level.OV if "OV" in text else Level.DV


class CasInventory:
    """The account's certificates (see the module)."""

    def __init__(self, api: Any, *, page_size: int = 50) -> None:
        """Args:
            api: the CAS `AlibabaApi`.
            page_size: items asked per page.
        """
        self._api = api
        self.page_size = page_size

    def certificates(self) -> Iterator[CasCertificate]:
        """Every certificate of the account, in CAS's listing order, each with the resources serving it.

        Raises:
            TransientError / PermanentError: CAS's answer (the AccessKey's permissions…).
        """
        from alibabacloud_cas20200407 import models as m

        serving = self.resources_by_certificate()  # one listing for the account, not one per certificate
        page, seen = 1, 0
        while True:
            body = self._api.call("listing the account's certificates", "list_user_certificate_order",
                                  m.ListUserCertificateOrderRequest(order_type="CERT", current_page=page,
                                                                    show_size=self.page_size))
            items = body.certificate_order_list or []
            for item in items:
                yield self._detail(item, serving.get(int(item.certificate_id), ()))
            seen += len(items)
            if not items or seen >= int(body.total_count or 0):
                return
            page += 1

    def _detail(self, item: Any, resources: tuple[CloudResource, ...]) -> CasCertificate:
        from alibabacloud_cas20200407 import models as m

        cert_id = int(item.certificate_id)
        d = self._api.call(f"reading certificate {cert_id}", "get_user_certificate_detail",
                           m.GetUserCertificateDetailRequest(cert_id=cert_id, cert_filter=False))
        sans = d.sans or item.sans or item.domain or ""
        names = tuple(dict.fromkeys(n.strip().lower() for n in sans.split(",") if n.strip()))
        uploaded = bool(item.upload) or (d.buy_in_aliyun is False) or (item.source_type or "").lower() == "upload"
        key_pem = d.key or ""
        return CasCertificate(
            cert_id=cert_id, order_id=int(item.order_id) if item.order_id and not uploaded else None,
            uploaded=uploaded, brand=brand_of(item.root_brand, d.issuer or item.issuer),
            level=level_of(item.cert_type), names=names, common_name=(d.common or item.common_name or "").lower(),
            status=item.status or "", product_code=item.product_code,
            not_before=_ms(d.not_before or item.cert_start_time), not_after=_ms(d.not_after or item.cert_end_time),
            certificate_pem=d.cert or "", resources=resources, key=(lambda: key_pem) if key_pem else None)

    def resources_by_certificate(self) -> dict[int, tuple[CloudResource, ...]]:
        """The account's cloud resources (`ListCloudResources`, paged), by the CertId each serves."""
        from alibabacloud_cas20200407 import models as m

        out: dict[int, list[CloudResource]] = {}
        page, seen = 1, 0
        while True:
            body = self._api.call("listing the account's cloud resources", "list_cloud_resources",
                                  m.ListCloudResourcesRequest(current_page=page, show_size=self.page_size))
            data = body.data or []
            for r in data:
                if r.cert_id is None:
                    continue
                out.setdefault(int(r.cert_id), []).append(CloudResource(
                    id=int(r.id), product=r.cloud_product or "", domain=(r.domain or "").lower(),
                    instance_id=r.instance_id or "", region=r.region_id or r.cloud_region or "",
                    port=int(r.listener_port) if r.listener_port else None))
            seen += len(data)
            if not data or seen >= int(body.total or 0):
                return {cert_id: tuple(rs) for cert_id, rs in out.items()}
            page += 1
