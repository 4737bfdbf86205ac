"""Use case: import a certificate issued elsewhere into the inventory (UP-3, CSR-5).

One function shared by the CLI (`certpilot import`) and the import task. It checks the bundle
(`crypto.importer.inspect_bundle`), refuses a certificate already in the inventory, seals the
private key in the vault, stores the key and the certificate and audits the import — all in the
caller's transaction, inside a savepoint, so any failure raises and leaves nothing stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certpilot.core.errors import BadInputError, Reason, Refusal, RefusedError, Warning_
from certpilot.core.models import DEFAULT_POLICY, Certificate, Contact, Level, Origin, Policy, Status, utc
from certpilot.crypto.importer import ImportedBundle, inspect_bundle
from certpilot.crypto.vault import KeyVault, default_vault, key_aad
from certpilot.store.repository import Repository, new_id

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
                       brand: str, owner: str | None, now: datetime, actor: str = "cli",
                       vault: KeyVault | None = None, passphrase: bytes | str | None = None,
                       policy: Policy = DEFAULT_POLICY) -> ImportResult:
    """Check and store an uploaded certificate with its key and chain (UP-3).

    Args:
        session: the caller's transaction (`store.db.session_scope()`); not committed here.
        cert_pem, key_pem, chain_pem: the PEM inputs (key and chain optional).
        origin: uploaded, private-ca or official.
        level, brand: the certificate's specification (UP-2).
        owner: the owner's email ("ops@example.com" or "Ops <ops@example.com>"), or None.
        now: the time of the import (timezone-aware UTC).
        actor: who imports, for the audit log.
        vault: the key vault; default `default_vault()` (only used when a key is given).
        passphrase: the key's passphrase when it is encrypted.
        policy: limits of the name rules (UP-1).

    Returns:
        The stored certificate (state UPLOADED, or ISSUED for official) and the warnings.

    Raises:
        BadInputError: the bundle fails a check (its `reason` says which, UP-3), or the owner
            is not an email address.
        RefusedError(DUPLICATE): a certificate with the same fingerprint is in the inventory.
        VaultError: the vault cannot seal the key (master key missing or not 0600).
        Nothing stored changes when any of these is raised.
    """
    now = utc(now)
    origin, level = Origin(origin), Level(level)
    contact = parse_owner(owner)
    publicly_trusted = origin is not Origin.PRIVATE_CA
    bundle = inspect_bundle(cert_pem, key_pem, chain_pem, now=now, passphrase=passphrase, policy=policy,
                            publicly_trusted=publicly_trusted)
    repo = Repository(session)
    _refuse_duplicate(repo, bundle)
    sealed = None
    if bundle.key_pem is not None:
        # Seal before writing anything: a vault problem must not leave half an import behind.
        sealed = (vault or default_vault()).seal(bundle.key_pem, key_aad(bundle.public_key_fingerprint))

    cert = Certificate(
        id=new_id("crt"),
        common_name=bundle.common_name,
        names=list(bundle.names),
        cert_type=bundle.cert_type,
        origin=origin,
        level=level,
        brand=brand,
        key_algorithm=bundle.key_algorithm,
        not_before=bundle.not_before,
        not_after=bundle.not_after,
        serial=bundle.serial,
        fingerprint_sha256=bundle.fingerprint_sha256,
        state=initial_state(origin),
        owner=contact,
        key_held=bundle.has_key,
        publicly_trusted=publicly_trusted,
    )
    codes = ", ".join(w.code for w in bundle.warnings) or "none"
    try:
        # A savepoint: even a caller that catches the error and commits stores nothing of it.
        with session.begin_nested():
            key_id = (repo.put_key(sealed, bundle.key_algorithm, bundle.public_key_fingerprint, now=now)
                      if sealed is not None else None)
            repo.add_certificate(
                cert,
                leaf_pem=bundle.leaf_pem,
                chain_pem="".join(bundle.chain_pems) or None,
                key_id=key_id,
                actor=actor,
                why=f"imported ({origin.value}, sha256 {bundle.fingerprint_sha256}, "
                    f"key {'held' if key_id else 'not held'}; warnings: {codes})",
                now=now,
            )
    except IntegrityError:
        # A concurrent import of the same certificate won the unique fingerprint.
        _refuse_duplicate(repo, bundle)
        raise
    return ImportResult(certificate=cert, warnings=bundle.warnings, key_id=key_id)


def _refuse_duplicate(repo: Repository, bundle: ImportedBundle) -> None:
    existing = repo.find_by_fingerprint(bundle.fingerprint_sha256)
    if existing is not None:
        raise RefusedError(Refusal(
            Reason.DUPLICATE,
            f"this certificate (sha256 {bundle.fingerprint_sha256}) is already in the inventory as "
            f"certificate {existing.id} ({existing.common_name}); use that one, or import a different certificate.",
            rule="UP-3",
        ))
