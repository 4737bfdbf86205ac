"""Use case: import a certificate issued elsewhere into the inventory (UP-2, UP-3, CSR-5).

`import_bundle(svc, ...)` is the one door: the CLI (`certpilot import`), the import task and the
demo call it (or, inside a transaction of their own, its building block `import_certificate`).
It checks the bundle (`crypto.importer.inspect_bundle`), refuses a certificate already in the
inventory, seals the private key in the services' vault, stores the key and the certificate and
audits the import — inside a savepoint, so any failure raises and leaves nothing stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certpilot.core.errors import BadInputError, Reason, Refusal, RefusedError, Warning_
from certpilot.core.models import (
    DEFAULT_POLICY,
    Certificate,
    Contact,
    Level,
    Origin,
    Policy,
    Spec,
    Status,
    utc,
)
from certpilot.core.names import BRANDS, OWN_BRAND, canonical_level, check_spec, known_brand
from certpilot.crypto.importer import ImportedBundle, inspect_bundle
from certpilot.crypto.vault import KeyVault, SealedKey, key_aad
from certpilot.store.repository import Repository, new_id

if TYPE_CHECKING:
    from certpilot.runtime import Services

_MAX_OWNER = 320  # an address is at most 254 characters (RFC 5321), plus a display name
_OWNER = re.compile(r"^\s*(?:(?P<name>[^<>]*?)\s*<(?P<angle>[^<>@\s]+@[^<>@\s]+)>|(?P<plain>[^<>@\s]+@[^<>@\s]+))\s*$")


@dataclass(frozen=True)
class ImportResult:
    """The stored certificate and what the operator should know about it."""

    certificate: Certificate
    warnings: tuple[Warning_, ...]
    key_id: str | None = None
    """The sealed key's id in the store, when a key was imported."""


def parse_owner(owner: str | None) -> Contact | None:
    """`"ops@example.com"` or `"Ops Team <ops@example.com>"` → Contact; None → None.

    Raises:
        BadInputError(BAD_INPUT): anything else (an owner is reached by email, NT-1).
    """
    if owner is None or not owner.strip():
        return None
    if len(owner) > _MAX_OWNER:
        # Before the pattern: its cost grows with the input (issue 15).
        raise BadInputError(f"the owner is {len(owner)} characters long, more than {_MAX_OWNER}: give one "
                            "email address ('ops@example.com' or 'Ops <ops@example.com>').", Reason.BAD_INPUT)
    m = _OWNER.match(owner)
    if m is None:
        raise BadInputError(
            f"owner {owner!r} is not an email address: give 'ops@example.com' or 'Ops <ops@example.com>' "
            "(expiry notices go there, NT-1).",
            Reason.BAD_INPUT,
        )
    return Contact(name=(m["name"] or "").strip(), email=m["angle"] or m["plain"])


def initial_state(origin: Origin) -> Status:
    """UPLOADED for certificates issued elsewhere (uploaded, private CA), ISSUED for official ones."""
    return Status.ISSUED if origin is Origin.OFFICIAL else Status.UPLOADED


def import_certificate(session: Session, *, cert_pem: bytes | str, key_pem: bytes | str | None = None,
                       chain_pem: bytes | str | None = None, origin: Origin | str, level: Level | str,
                       brand: str, owner: str | None, now: datetime, vault: KeyVault, actor: str = "cli",
                       passphrase: bytes | str | None = None, policy: Policy = DEFAULT_POLICY) -> ImportResult:
    """Check and store an uploaded certificate with its key and chain (UP-3), in `session`.

    The building block of `import_bundle` (which owns its transaction); tests and the demo
    compose it in a transaction of their own.

    Args:
        session: the caller's transaction (`store.db.session_scope()`); not committed here.
        cert_pem, key_pem, chain_pem: the PEM inputs (key and chain optional).
        origin: uploaded, private-ca or official.
        level, brand: the certificate's specification, in any case (UP-2: a brand the service
            offers is stored by its canonical name; an official certificate's brand must be one).
        owner: the owner's email ("ops@example.com" or "Ops <ops@example.com>"), or None.
        now: the time of the import (timezone-aware UTC).
        vault: the key vault the key is sealed in: the one the workers open keys with
            (`Services.vault`); used only when a key is given.
        actor: who imports, for the audit log.
        passphrase: the key's passphrase when it is encrypted.
        policy: limits of the name rules (UP-1).

    Returns:
        The stored certificate (state UPLOADED, or ISSUED for official) and the warnings.

    Raises:
        BadInputError: the bundle fails a check (its `reason` says which, UP-3), or the owner
            is not an email address.
        RefusedError: DUPLICATE (UP-3) when a certificate with the same fingerprint is in the
            inventory; UNKNOWN_BRAND (UP-2) for an official certificate of a brand not offered.
        VaultError: the vault cannot seal the key (master key missing or not 0600).
        Nothing stored changes when any of these is raised.
    """
    now, origin = utc(now), Origin(origin)
    try:
        level = canonical_level(level)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    # UP-2: a brand the service knows is stored by its canonical name whatever its case (the
    # quota of `DigiCert` is what a `digicert` certificate uses, PAY-1); another is kept as given.
    brand = known_brand(brand) or brand
    contact = parse_owner(owner)
    publicly_trusted = origin is not Origin.PRIVATE_CA
    bundle = inspect_bundle(cert_pem, key_pem, chain_pem, now=now, passphrase=passphrase, policy=policy,
                            publicly_trusted=publicly_trusted)
    _check_offered(origin, Spec(brand=brand, level=level, cert_type=bundle.cert_type))
    repo = Repository(session)
    _refuse_duplicate(repo, bundle)
    # Seal before writing anything: a vault problem must not leave half an import behind.
    sealed = vault.seal(bundle.key_pem, key_aad(bundle.public_key_fingerprint)) if bundle.key_pem else None
    cert = _certificate(bundle, origin=origin, level=level, brand=brand, owner=contact)
    key_id = _store(session, repo, cert, bundle, sealed, actor=actor, now=now)
    return ImportResult(certificate=cert, warnings=bundle.warnings, key_id=key_id)


def import_bundle(svc: Services, *, cert_pem: bytes | str, key_pem: bytes | str | None = None,
                  chain_pem: bytes | str | None = None, origin: Origin | str = Origin.UPLOADED,
                  level: Level | str = Level.DV, brand: str = OWN_BRAND, owner: str | None = None,
                  now: datetime | None = None, actor: str = "cli",
                  passphrase: bytes | str | None = None) -> ImportResult:
    """Import a certificate (and its key and chain) into the inventory, in one transaction (UP-3).

    The key is sealed in the services' vault, the one every flow run opens keys with (so a
    certificate imported from the command line deploys from a worker on KMS too).

    Args:
        svc: the services (store, vault, policy, clock).
        cert_pem, key_pem, chain_pem: the PEM inputs (key and chain optional).
        origin, level, brand, owner, actor, passphrase: see `import_certificate`.
        now: the time of the import (default the services' clock).

    Returns:
        The stored certificate, its warnings and the sealed key's id.

    Raises:
        BadInputError, RefusedError, VaultError: see `import_certificate`; nothing is stored.
    """
    with svc.session() as s:
        return import_certificate(s, cert_pem=cert_pem, key_pem=key_pem, chain_pem=chain_pem, origin=origin,
                                  level=level, brand=brand, owner=owner, now=now or svc.now(), vault=svc.vault,
                                  actor=actor, passphrase=passphrase, policy=svc.policy)


def _check_offered(origin: Origin, spec: Spec) -> None:
    """UP-2 for official certificates: the service sells only the brands it offers (and its own).

    Uploaded and private-CA certificates come from elsewhere: their brand is a fact about them,
    not an order, so any brand is kept as given.

    Raises:
        RefusedError(UNKNOWN_BRAND): an official certificate of a brand not offered.
    """
    if origin is not Origin.OFFICIAL:
        return
    refusal = check_spec(spec, brands=(*BRANDS, OWN_BRAND))
    if refusal is not None:
        raise RefusedError(Refusal(refusal.reason, f"an official certificate is one the service sold: "
                                                   f"{refusal.message}; or import it with --origin uploaded",
                                   refusal.rule))


def _certificate(bundle: ImportedBundle, *, origin: Origin, level: Level, brand: str,
                 owner: Contact | None) -> Certificate:
    """The inventory record of a checked bundle (a fresh id; state UPLOADED, or ISSUED if official)."""
    return Certificate(
        id=new_id("crt"), common_name=bundle.common_name, names=list(bundle.names), cert_type=bundle.cert_type,
        origin=origin, level=level, brand=brand, key_algorithm=bundle.key_algorithm,
        not_before=bundle.not_before, not_after=bundle.not_after, serial=bundle.serial,
        fingerprint_sha256=bundle.fingerprint_sha256, state=initial_state(origin), owner=owner,
        key_held=bundle.has_key, publicly_trusted=origin is not Origin.PRIVATE_CA,
    )


def _store(session: Session, repo: Repository, cert: Certificate, bundle: ImportedBundle,
           sealed: SealedKey | None, *, actor: str, now: datetime) -> str | None:
    """Write the sealed key and the certificate (audited) in a savepoint; returns the key's id.

    Raises:
        RefusedError(DUPLICATE): a concurrent import of the same certificate won the unique
            fingerprint; nothing of this one is stored.
    """
    codes = ", ".join(w.code for w in bundle.warnings) or "none"
    try:
        # A savepoint: even a caller that catches the error and commits stores nothing of it.
        with session.begin_nested():
            key_id = (repo.put_key(sealed, bundle.key_algorithm, bundle.public_key_fingerprint, now=now)
                      if sealed is not None else None)
            repo.add_certificate(
                cert, leaf_pem=bundle.leaf_pem, chain_pem="".join(bundle.chain_pems) or None, key_id=key_id,
                actor=actor, now=now,
                why=f"imported ({cert.origin.value}, sha256 {bundle.fingerprint_sha256}, "
                    f"key {'held' if key_id else 'not held'}; warnings: {codes})",
            )
    except IntegrityError:
        _refuse_duplicate(repo, bundle)
        raise
    return key_id


def _refuse_duplicate(repo: Repository, bundle: ImportedBundle) -> None:
    """UP-3: refuse a certificate whose fingerprint is already in the inventory (DUPLICATE)."""
    existing = repo.find_by_fingerprint(bundle.fingerprint_sha256)
    if existing is not None:
        raise RefusedError(Refusal(
            Reason.DUPLICATE,
            f"this certificate (sha256 {bundle.fingerprint_sha256}) is already in the inventory as "
            f"certificate {existing.id} ({existing.common_name}); use that one (`certpilot show {existing.id}`), "
            "or import a different certificate.",
            rule="UP-3",
        ))
