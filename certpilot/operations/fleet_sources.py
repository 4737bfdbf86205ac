"""Use cases: move a fleet in from where it lives today: AWS ACM, certbot (issue 16).

`import_acm(svc, fleet)` inventories every certificate of an ACM region: names, dates, the ARN
and what uses it; the key is not held (ACM never gives it), and the certificate's deployment
target is its ARN (`aws-acm`: a renewal re-imports into the same ARN, DEP-1, so every load
balancer or distribution using it follows). `import_certbot(svc, config_dir)` imports every
certbot lineage (see `adapters.fleet.certbot`). Each certificate is one transaction (the import,
its key, its targets); a certificate already in the inventory is skipped (and its target
recorded if it was missing), a bad one refused with UP-3's reason; a second run changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from certpilot.core.bulk import BulkOutcome, BulkReport, BundleReport
from certpilot.core.deployment import TargetKind
from certpilot.core.errors import BadInputError, Reason, RefusedError
from certpilot.core.models import Level, Origin, ValidationMethod
from certpilot.core.names import OWN_BRAND
from certpilot.operations import deployments
from certpilot.operations.importing import import_certificate
from certpilot.store.repository import Repository

if TYPE_CHECKING:
    from certpilot.adapters.fleet.acm import AcmCertificate, AcmFleet
    from certpilot.adapters.fleet.certbot import CertbotLineage, NginxSite
    from certpilot.runtime import Services

AMAZON = "Amazon"
"""The brand of ACM-issued certificates (Amazon's CA)."""


def _import_with_targets(svc: Services, *, cert_pem: str | bytes, key_pem: str | bytes | None,
                         chain_pem: str | bytes | None, origin: Origin, level: Level | str, brand: str,
                         owner: str | None, actor: str, targets: list[dict[str, Any]], base: dict[str, Any],
                         updates: dict[str, Any] | None = None, notes: tuple[str, ...] = ()) -> BundleReport:
    """Import one certificate and record its targets in one transaction; the outcome as a report.

    `targets`: ``{"kind", "config", "name", "endpoints", "match"}``; a target of that kind whose
    config holds every item of `match` (e.g. the ARN) is not added again (a rerun, or a skipped
    duplicate's repair). `updates`: fields of the new certificate set in the same transaction
    (`Repository.update_certificate`, e.g. its validation method); `notes` join its warnings.
    """
    try:
        with svc.session() as s:
            try:
                result = import_certificate(s, cert_pem=cert_pem, key_pem=key_pem, chain_pem=chain_pem, origin=origin,
                                            level=level, brand=brand, owner=owner, now=svc.now(), vault=svc.vault,
                                            actor=actor, policy=svc.policy)
            except RefusedError as exc:
                if exc.refusal.reason is not Reason.DUPLICATE:
                    raise
                existing = _existing(s, exc)
                added = _add_targets(s, existing, targets)
                return BundleReport(BulkOutcome.SKIPPED, certificate_id=existing, reason=Reason.DUPLICATE.value,
                                    rule="UP-3", message="already in the inventory (same fingerprint): nothing "
                                    "changed" + (f"; {added} missing target(s) recorded" if added else ""),
                                    warnings=notes, **base)
            _add_targets(s, result.certificate.id, targets)
            if updates:
                Repository(s).update_certificate(result.certificate.id, now=svc.now(), **updates)
    except RefusedError as exc:
        return BundleReport(BulkOutcome.REFUSED, reason=exc.refusal.reason.value, rule=exc.refusal.rule or "UP-3",
                            message=exc.refusal.message, **base)
    except BadInputError as exc:
        return BundleReport(BulkOutcome.REFUSED, reason=(exc.reason or Reason.BAD_INPUT).value, rule="UP-3",
                            message=exc.message, **base)
    return BundleReport(BulkOutcome.IMPORTED, certificate_id=result.certificate.id,
                        warnings=(*(w.message for w in result.warnings), *notes), **base)


def _existing(session: Session, exc: RefusedError) -> str | None:
    """The id of the certificate a DUPLICATE refusal names (its fingerprint is in the message)."""
    import re

    m = re.search(r"sha256 ([0-9a-f]{64})", exc.refusal.message)
    found = Repository(session).find_by_fingerprint(m[1]) if m else None
    return found.id if found else None


def _add_targets(session: Session, certificate_id: str | None, targets: list[dict[str, Any]]) -> int:
    if certificate_id is None:
        return 0
    have = deployments.targets_of(session, certificate_id)
    added = 0
    for t in targets:
        if any(h.kind is t["kind"] and all(h.config.get(k) == v for k, v in t["match"].items()) for h in have):
            continue
        deployments.add_target(session, certificate_id, t["kind"], config=t["config"], name=t["name"],
                               endpoints=t.get("endpoints", ()))
        added += 1
    return added


def import_acm(svc: Services, fleet: AcmFleet, *, level: Level | str = Level.DV, brand: str = OWN_BRAND,
               owner: str | None = None, actor: str = "cli:import-acm") -> BulkReport:
    """Inventory every certificate of an ACM region (see the module); idempotent.

    Args:
        svc: the services (store).
        fleet: the region's reader (`runtime.acm_fleet(svc, region=...)`).
        level: validation level recorded (ACM does not say; DV by default).
        brand: the brand of imported certificates (ACM-issued ones are `Amazon`'s).
        owner: who hears of their expiry (NT-1).

    Raises:
        AcmReadError: ACM could not be listed (nothing imported).
    """
    reports = [_acm_one(svc, c, fleet.region, level, brand, owner, actor) for c in fleet.certificates()]
    return BulkReport(source=f"acm:{fleet.region}", reports=tuple(reports))


def _acm_one(svc: Services, c: AcmCertificate, region: str, level: Level | str, brand: str, owner: str | None,
             actor: str) -> BundleReport:
    base = {"files": (), "common_name": c.domain_name, "source": c.arn}
    if not c.certificate_pem:
        return BundleReport(BulkOutcome.REFUSED, reason=Reason.BAD_INPUT.value, rule="UP-3",
                            message=f"{c.arn} is {c.status.lower()}: ACM holds no certificate for it yet; import it "
                                    "again once it is issued", **base)
    chain, note = linked_chain(c.certificate_pem, c.chain_pem)
    target = {"kind": TargetKind.AWS_ACM, "name": f"ACM {c.arn}",
              "config": {"certificate_arn": c.arn, "region": region, "in_use_by": list(c.in_use_by)},
              "match": {"certificate_arn": c.arn}}
    report = _import_with_targets(
        svc, cert_pem=c.certificate_pem, key_pem=None, chain_pem=chain, origin=Origin.UPLOADED, level=level,
        brand=AMAZON if c.kind == "AMAZON_ISSUED" else brand, owner=owner, actor=actor, targets=[target],
        base=base)
    return replace(report, warnings=(*report.warnings, note)) if note else report


def linked_chain(cert_pem: str | bytes, chain_pem: str | bytes | None) -> tuple[str | None, str | None]:
    """The certificates of `chain_pem` that link up from the certificate by issuer name, in order,
    and a note naming those left out (a chain a source returns with certificates of another
    hierarchy; UP-3 would refuse the whole bundle for them).

    Raises:
        BadInputError(BAD_PEM): the certificate or the chain does not parse.
    """
    from certpilot.crypto.pem import load_certificates, to_pem

    if not chain_pem:
        return None, None
    current = load_certificates(cert_pem, what="the certificate")[0]
    given = load_certificates(chain_pem, what="the chain")
    linked = []
    while (parent := next((c for c in given if c.subject == current.issuer and c not in linked), None)) is not None:
        linked.append(parent)
        if parent.subject == parent.issuer:
            break
        current = parent
    left_out = [c for c in given if c not in linked]
    note = (f"the source's chain held {len(left_out)} certificate(s) that do not link to this certificate "
            f"({', '.join(c.subject.rfc4514_string() for c in left_out)}); they were left out") if left_out else None
    return "".join(to_pem(c) for c in linked) or None, note


# ---------------------------------------------------------------- certbot

_METHODS = {"webroot": ValidationMethod.HTTP_FILE, "standalone": ValidationMethod.HTTP_FILE,
            "nginx": ValidationMethod.HTTP_FILE, "apache": ValidationMethod.HTTP_FILE,
            "manual": ValidationMethod.DNS_MANUAL}


def validation_method(authenticator: str | None) -> ValidationMethod | None:
    """DV-1: the method a certbot authenticator proves ownership with: a DNS plugin (`dns-*`)
    writes TXT records (DV-2), webroot/standalone/nginx/apache serve HTTP-01 files (DV-3),
    manual is a human's record (DV-3); None when certbot's conf does not say."""
    if not authenticator:
        return None
    if authenticator.startswith("dns-") or authenticator.startswith("certbot-dns-"):
        return ValidationMethod.DNS_AUTO
    return _METHODS.get(authenticator)


def import_certbot(svc: Services, config_dir: str | Path, *, nginx_dir: str | Path | None = "/etc/nginx",
                   level: Level | str = Level.DV, owner: str | None = None, actor: str = "cli:import-certbot"
                   ) -> BulkReport:
    """Import every certbot lineage: its current certificate, chain and key (sealed in the vault),
    its validation method (from the authenticator), its issuer (from the ACME server, as its
    brand), its hooks noted, and its nginx sites as targets when an nginx configuration under
    `nginx_dir` serves its files. certbot's files are only read; idempotent.

    Raises:
        BadInputError: `config_dir` is not a certbot configuration directory.
    """
    from certpilot.adapters.fleet.certbot import nginx_sites, read_lineages

    try:
        lineages = read_lineages(config_dir)
    except FileNotFoundError as exc:
        raise BadInputError(str(exc), Reason.BAD_INPUT) from None
    sites = nginx_sites(nginx_dir) if nginx_dir and Path(nginx_dir).is_dir() else []
    reports = [_certbot_one(svc, lin, sites, level=level, owner=owner, actor=actor, nginx_dir=nginx_dir)
               for lin in lineages]
    return BulkReport(source=f"certbot:{config_dir}", reports=tuple(reports))


def _certbot_one(svc: Services, lin: CertbotLineage, sites: list[NginxSite], *, level: Level | str,
                 owner: str | None, actor: str, nginx_dir: str | Path | None) -> BundleReport:
    from certpilot.adapters.fleet.certbot import issuer_name, serves

    base = {"files": tuple(lin.files[k] for k in ("cert", "chain", "privkey")), "common_name": lin.name,
            "source": f"certbot:{lin.name}"}
    if lin.problems:
        return BundleReport(BulkOutcome.REFUSED, reason=Reason.BAD_INPUT.value, rule="UP-3",
                            message="; ".join(lin.problems) + "; fix the lineage (`certbot certificates`) and "
                                                            "import again", **base)
    try:
        cert_pem, chain_pem, key_pem = (Path(lin.files[k]).read_bytes() for k in ("cert", "chain", "privkey"))
    except OSError as exc:
        return BundleReport(BulkOutcome.REFUSED, reason=Reason.BAD_INPUT.value, rule="UP-3",
                            message=f"a file of lineage {lin.name} cannot be read ({exc.strerror}); run the "
                                    "import as a user that may read certbot's directory", **base)
    method = validation_method(lin.authenticator)
    notes = [f"certbot {lin.name}: issuer {issuer_name(lin.server)} ({lin.server or 'certbot default'}), "
             f"authenticator {lin.authenticator or '-'} → validation {method.value if method else 'unchanged'}"]
    notes += [f"certbot hook noted, not run by certpilot: {k} = {v}" for k, v in lin.hooks.items()]
    mine = [site for site in sites if serves(site, lin)]
    targets = [{"kind": TargetKind.NGINX, "name": f"nginx {', '.join(site.server_names) or site.conf}",
                "config": {"files": [{"cert": site.certificate, "key": site.key}]},
                "endpoints": [(n, site.port, n) for n in site.server_names[:1]],
                "match": {"files": [{"cert": site.certificate, "key": site.key}]}} for site in mine]
    if lin.installer == "nginx" and not mine:
        notes.append(f"the renewal conf names the nginx installer, but no server block under {nginx_dir} serves "
                     f"{lin.files['fullchain']}: no target recorded; add one when you know where it is served")
    return _import_with_targets(
        svc, cert_pem=cert_pem, key_pem=key_pem, chain_pem=chain_pem, origin=Origin.UPLOADED, level=level,
        brand=issuer_name(lin.server), owner=owner, actor=actor, targets=targets, base=base,
        updates={"validation_method": method} if method else None, notes=tuple(notes))
