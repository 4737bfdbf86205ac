"""Use case: bring an Alibaba Cloud account's certificates into the inventory (`certpilot sync alibaba`).

Every certificate CAS lists (`adapters.alibaba.inventory.CasInventory`) is imported with its
origin (*official*: issued by CAS from a package; *uploaded*: the account's own), brand, level,
names and dates; the cloud resources serving it become one deployment-job target (DEP-2: its
renewal is deployed to them by a CAS deployment job, then probed, VER-1), and an uploaded one
without resources gets an upload target (its replacement is uploaded back to CAS); an official one is
applied to the CAS issuer when one is configured (its renewal goes through CAS, PAY-1 from the
package's quota). A key CAS returns is sealed in the vault like any imported key (never stored
otherwise); none returned: the key is not held (CSR-2). The package quota of every configured
CAS issuer is brought to CAS's own count (PAY-3).

Idempotent: a certificate already in the inventory (same fingerprint) is skipped and only its
missing target recorded; a second sync changes nothing. Each certificate is one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from certpilot.core.bulk import BulkOutcome, BulkReport, BundleReport
from certpilot.core.deployment import TargetKind
from certpilot.core.errors import Reason
from certpilot.core.models import Level, Origin
from certpilot.operations.fleet_sources import _import_with_targets, linked_chain
from certpilot.operations.quota import refresh_from_services
from certpilot.store import issuer_queries

if TYPE_CHECKING:
    from certpilot.adapters.alibaba.inventory import CasCertificate, CasInventory
    from certpilot.runtime import Services


@dataclass(frozen=True)
class SyncReport:
    """What a sync did: the certificates' fates and the quota brought to CAS's count."""

    bulk: BulkReport
    quota: dict[str, int]
    """Remaining certificates per specification key, as CAS counts them (PAY-3)."""
    issuer: str | None
    """The CAS issuer official certificates were applied to, if one is configured."""


def cas_issuer_ref(svc: Services) -> str | None:
    """The configured CAS issuer's reference (``alibaba-cas/NAME``), or None."""
    from certpilot.adapters.issuers.base import CountsQuota

    return next((ref for ref, i in svc.issuers.items() if isinstance(i, CountsQuota)), None)


def sync(svc: Services, inventory: CasInventory, *, connection: str = "default", owner: str | None = None,
         connect_to: str | None = None, actor: str = "cli:sync-alibaba") -> SyncReport:
    """Inventory every certificate of the account (see the module); idempotent.

    Args:
        svc: the services (store, vault, issuers).
        inventory: the account's reader (`runtime.alibaba_inventory(svc, connection)`).
        connection: the connection block's name, recorded on deployment-job targets.
        owner: who hears of expiry (NT-1).
        connect_to: ``host:port`` to probe every resource's domain at (SNI = the domain) instead
            of ``domain:443`` (a private listener, a split-horizon DNS, the emulator).
        actor: who acts, for the audit trail.

    Raises:
        TransientError / PermanentError: CAS could not be read (nothing of the failing page imported).
    """
    issuer = cas_issuer_ref(svc)
    reports = [_one(svc, c, connection, owner, connect_to, issuer, actor) for c in inventory.certificates()]
    quota = refresh_from_services(svc)
    return SyncReport(bulk=BulkReport(source=f"alibaba:{connection}", reports=tuple(reports)), quota=quota,
                      issuer=issuer)


def _endpoints(c: CasCertificate, connect_to: str | None) -> list[tuple[str, int, str | None]]:
    names = sorted({r.domain for r in c.resources if r.domain and not r.domain.startswith("*.")})
    if connect_to:
        host, _, port = connect_to.rpartition(":")
        return [(host or "127.0.0.1", int(port or 443), n) for n in names]
    return [(n, 443, None) for n in names]


def _one(svc: Services, c: CasCertificate, connection: str, owner: str | None, connect_to: str | None,
         issuer: str | None, actor: str) -> BundleReport:
    base = {"files": (), "common_name": c.common_name, "source": f"cas:{c.cert_id}"}
    if not c.certificate_pem:
        return BundleReport(BulkOutcome.REFUSED, reason=Reason.BAD_INPUT.value, rule="UP-3",
                            message=f"CAS certificate {c.cert_id} ({c.status}) has no certificate yet; sync again once "
                                    "it is issued", **base)
    from certpilot.adapters.issuers.base import split_pem_chain

    pems = split_pem_chain(c.certificate_pem)
    chain, note = linked_chain(pems[0], "".join(pems[1:]) or None)
    targets: list[dict[str, Any]] = []
    if c.resources:  # DEP-2: its successor goes to the same resources by a deployment job
        ids = [r.id for r in c.resources]
        targets.append({"kind": TargetKind.ALIBABA_JOB, "name": f"CAS deployment job ({len(ids)} resource(s))",
                        "config": {"resource_ids": ids, "cert_id": c.cert_id, "connection": connection,
                                   "products": sorted({r.product for r in c.resources})},
                        "endpoints": _endpoints(c, connect_to), "match": {"resource_ids": ids}})
    elif c.uploaded:  # kept in CAS by the operator: its successor is uploaded back there
        targets.append({"kind": TargetKind.ALIBABA_JOB, "name": "CAS upload",
                        "config": {"resource_ids": [], "upload_only": True, "cert_id": c.cert_id,
                                   "connection": connection, "verify": False},
                        "endpoints": (), "match": {"upload_only": True}})
    key = c.key() if c.key is not None else None
    report = _import_with_targets(
        svc, cert_pem=pems[0], key_pem=key, chain_pem=chain, origin=Origin.UPLOADED if c.uploaded else Origin.OFFICIAL,
        level=c.level if isinstance(c.level, Level) else Level(c.level), brand=c.brand, owner=owner, actor=actor,
        targets=targets, base=base)
    del key
    if report.outcome is BulkOutcome.IMPORTED and issuer and not c.uploaded and report.certificate_id:
        _apply_to(svc, report.certificate_id, issuer)
    return replace(report, warnings=(*report.warnings, note)) if note else report


def _apply_to(svc: Services, certificate_id: str, issuer: str) -> None:
    """Record that the certificate's renewals go through the CAS issuer (an official CAS
    certificate is renewed from its own package), unless the operator chose otherwise."""
    with svc.session() as s:
        own, _inherited = issuer_queries.recorded_choices(s, certificate_id)
        if own is None:
            issuer_queries.set_choice(s, certificate_id, issuer, (), now=svc.now())

