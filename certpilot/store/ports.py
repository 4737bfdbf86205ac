"""The store's side of the adapters' ports: where the ACME account, the private CA and the inbox
keep their own state.

The same goes for the sealed private key of a certificate (`SqlCertificateKeys`), read for the key
opener the runtime builds.

The adapters declare what they need as Protocols (`adapters/issuers/acme.AcmeAccountStore`,
`adapters/issuers/private_ca.PrivateCaStore`, `adapters/notify/inbox.InboxStore`) and never import
the store; the composition root (`certpilot/runtime.py`) builds these implementations and hands
them over. Each implementation takes a factory of transactional sessions (e.g.
`Services.session`, or `lambda: nullcontext(session)` to write in a caller's open transaction)
and each method is one transaction. Only sealed key blobs pass through here (CSR-5): the
adapters seal and open keys with the vault; the store never sees a private key.

The inbox's reading side (`messages`, `mark_read`) is here too, as session-level building blocks
of `certpilot.operations.inbox`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certpilot.core.deployment import key_refusal
from certpilot.core.errors import RefusedError
from certpilot.store.repository import Repository
from certpilot.store.tables import KeyRow
from certpilot.store.tables_issuance import (
    AcmeAccountRow,
    PrivateCaIssuedRow,
    PrivateCaRevocationRow,
    PrivateCaRow,
)
from certpilot.store.tables_pipeline import MessageRow

SessionFactory = Callable[[], AbstractContextManager[Session]]
"""A factory of transactional sessions: commit when the block ends, roll back on error."""

SealInto = Callable[[Repository], Any]
"""A callback an adapter passes to seal its freshly generated key(s) through `Repository.put_key`
inside the store's transaction (e.g. `crypto.keys.store_key(..., repo=keys)`)."""


class _SealedKeys:
    """The read half of `crypto.keys._KeyStore`: the sealed blob of a key, one transaction."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def get_sealed_key(self, key_id: str):
        """The sealed key stored under `key_id` (opened by the adapter's vault, never here).

        Raises:
            NotFoundError: no key has this id.
        """
        with self._sessions() as s:
            return Repository(s).get_sealed_key(key_id)


# --- certificate keys -----------------------------------------------------------------------------

@dataclass(frozen=True)
class HeldKey:
    """A certificate's private key as stored: sealed, with what binds it (no key material).

    Attributes:
        sealed: the sealed key (a `certpilot.crypto.vault.SealedKey`; its repr shows sizes only).
        public_fingerprint: the key pair's public fingerprint (the vault's associated data).
    """

    sealed: Any
    public_fingerprint: str


class SqlCertificateKeys:
    """The sealed private keys of certificates (CSR-5: opened by the vault, never here).

    Args:
        sessions: a factory of transactional sessions on the store (a read-only one suits).
    """

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def sealed_key_of(self, certificate_id: str) -> HeldKey:
        """The sealed key of `certificate_id` and its public fingerprint, read in one transaction.

        Raises:
            NotFoundError: no such certificate (or its key row is gone).
            RefusedError: the certificate has no stored key (`core.deployment.key_refusal`:
                KEY_NOT_HELD, CSR-2; NOT_DEPLOYABLE when it is not issued yet).
        """
        with self._sessions() as s:
            repo = Repository(s)
            row = repo.get_certificate(certificate_id)
            if not row.key_id:
                raise RefusedError(key_refusal(repo.certificate_model(certificate_id)))
            _alg, fingerprint = repo.key_info(row.key_id)
            return HeldKey(repo.get_sealed_key(row.key_id), fingerprint)


# --- ACME account ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class AcmeAccount:
    """The ACME account kept for one directory (no key material: the key is referenced by id).

    Attributes:
        key_id: the sealed account key's id in `keys`.
        public_fingerprint: the account key's public fingerprint (binds the vault's associated data).
        account_url: the account's URL at the CA; "" until the registration is recorded.
    """

    key_id: str
    public_fingerprint: str
    account_url: str


class SqlAcmeAccountStore(_SealedKeys):
    """`AcmeAccountStore` on table `acme_accounts` (one account per directory URL).

    Args:
        sessions: a factory of transactional sessions on the store.
    """

    def load(self, directory_url: str) -> AcmeAccount | None:
        """The account recorded for `directory_url`, or None."""
        with self._sessions() as s:
            found = s.execute(
                select(AcmeAccountRow.key_id, KeyRow.public_fingerprint, AcmeAccountRow.account_url)
                .join(KeyRow, KeyRow.id == AcmeAccountRow.key_id)
                .where(AcmeAccountRow.directory_url == directory_url)).first()
            return AcmeAccount(found.key_id, found.public_fingerprint, found.account_url) if found else None

    def create(self, directory_url: str, *, contact: str | None, seal_key: SealInto) -> bool:
        """Record a not-yet-registered account whose key `seal_key` seals, in one transaction.

        Args:
            directory_url: the CA's directory.
            contact: the account's contact email.
            seal_key: called with the transaction's `Repository`; seals the account key into it
                and returns its key id.
        Returns:
            False when another process recorded an account for the directory first (nothing of
            this call is kept: use `load`).
        """
        try:
            with self._sessions() as s:
                key_id = seal_key(Repository(s))
                s.add(AcmeAccountRow(id=str(uuid.uuid4()), directory_url=directory_url, account_url="",
                                     key_id=key_id, contact=contact))
        except IntegrityError:
            return False
        return True

    def set_account_url(self, directory_url: str, account_url: str) -> None:
        """Record the account URL the CA answered the registration with."""
        with self._sessions() as s:
            s.execute(update(AcmeAccountRow).where(AcmeAccountRow.directory_url == directory_url)
                      .values(account_url=account_url))


# --- private CA -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PrivateCaState:
    """A private CA's certificates and its keys' ids (public material only)."""

    id: str
    name: str
    root_pem: str
    root_key_id: str
    intermediate_pem: str
    intermediate_key_id: str


@dataclass(frozen=True)
class IssuedRequest:
    """A request to the private CA and its signed certificate (`ref` is the order reference)."""

    ref: str
    serial: str
    names: tuple[str, ...]
    cert_pem: str
    submitted_at: datetime
    ready_at: datetime


def _ca_state(row: PrivateCaRow) -> PrivateCaState:
    return PrivateCaState(row.id, row.name, row.root_pem, row.root_key_id, row.intermediate_pem,
                          row.intermediate_key_id)


class SqlPrivateCaStore(_SealedKeys):
    """`PrivateCaStore` on tables `private_ca`, `private_ca_issued`, `private_ca_revocations`.

    Args:
        sessions: a factory of transactional sessions on the store.
    """

    def ensure(self, name: str, create: SealInto) -> PrivateCaState:
        """The CA called `name`, created on first use, exactly once even under concurrency.

        Args:
            name: which private CA.
            create: called only when the CA does not exist yet, with the transaction's
                `Repository`: seals the root and intermediate keys into it and returns their
                material (attributes `root_pem`, `root_key_id`, `intermediate_pem`,
                `intermediate_key_id`, `created_at`).
        """
        with self._sessions() as s:
            row = s.scalars(select(PrivateCaRow).where(PrivateCaRow.name == name)).first()
            if row is None:
                try:
                    with s.begin_nested():
                        made = create(Repository(s))
                        row = PrivateCaRow(id=str(uuid.uuid4()), name=name, root_pem=made.root_pem,
                                           root_key_id=made.root_key_id, intermediate_pem=made.intermediate_pem,
                                           intermediate_key_id=made.intermediate_key_id, crl_number=0,
                                           created_at=made.created_at)
                        s.add(row)
                        s.flush()
                except IntegrityError:
                    # Another process created it first (unique name): its keys and ours rolled back
                    # with the savepoint, so use theirs.
                    row = s.scalars(select(PrivateCaRow).where(PrivateCaRow.name == name)).one()
            return _ca_state(row)

    def record_issued(self, ca_id: str, *, ref: str, serial: str, names: list[str], cert_pem: str,
                      submitted_at: datetime, ready_at: datetime) -> None:
        """Keep a signed certificate under its order reference until it is fetched."""
        with self._sessions() as s:
            s.add(PrivateCaIssuedRow(ref=ref, ca_id=ca_id, serial=serial, names=list(names), cert_pem=cert_pem,
                                     submitted_at=submitted_at, ready_at=ready_at))

    def issued(self, ref: str) -> IssuedRequest | None:
        """The request with order reference `ref`, or None."""
        with self._sessions() as s:
            row = s.get(PrivateCaIssuedRow, ref)
            if row is None:
                return None
            return IssuedRequest(row.ref, row.serial, tuple(row.names), row.cert_pem, row.submitted_at,
                                 row.ready_at)

    def revoke(self, ca_id: str, serial: str, *, at: datetime, reason: str) -> bool:
        """Revoke the certificate with hex `serial` (idempotent: a second call changes nothing).

        Returns:
            False when no certificate with that serial was ever issued (nothing recorded).
        """
        with self._sessions() as s:
            if s.scalars(select(PrivateCaIssuedRow.ref).where(PrivateCaIssuedRow.serial == serial)).first() is None:
                return False
            if s.get(PrivateCaRevocationRow, serial) is None:
                s.add(PrivateCaRevocationRow(serial=serial, ca_id=ca_id, revoked_at=at, reason=reason))
            return True

    def next_crl(self, ca_id: str) -> tuple[int, list[tuple[str, datetime]]]:
        """Take the CA's next CRL number and read its revocations, in one transaction.

        Returns:
            `(crl_number, [(hex serial, revoked_at), ...])`.
        """
        with self._sessions() as s:
            row = s.get(PrivateCaRow, ca_id)
            row.crl_number += 1
            revoked = s.execute(select(PrivateCaRevocationRow.serial, PrivateCaRevocationRow.revoked_at)
                                .where(PrivateCaRevocationRow.ca_id == ca_id)).all()
            return row.crl_number, [(r.serial, r.revoked_at) for r in revoked]


# --- inbox ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    """One in-product message (DEP-3, NT-1, NT-2)."""

    id: int
    at: datetime
    kind: str
    certificate_id: str
    common_name: str
    subject: str
    body: str
    read: bool


class SqlInboxStore:
    """`InboxStore` on table `messages`.

    Args:
        sessions: a factory of transactional sessions; `lambda: nullcontext(session)` writes the
            message in a caller's open transaction (committed or rolled back with it).
    """

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def add(self, *, at: datetime, kind: str, certificate_id: str, common_name: str, subject: str,
            body: str) -> None:
        """Store one unread message."""
        with self._sessions() as s:
            s.add(MessageRow(at=at, kind=kind, certificate_id=certificate_id, common_name=common_name,
                             subject=subject, body=body, read=False))


def messages(session: Session, *, unread_only: bool = True, limit: int = 100) -> list[Message]:
    """The newest messages first (only unread ones by default), at most `limit`."""
    stmt = select(MessageRow).order_by(MessageRow.at.desc(), MessageRow.id.desc()).limit(limit)
    if unread_only:
        stmt = stmt.where(MessageRow.read.is_(False))
    return [Message(r.id, r.at, r.kind, r.certificate_id, r.common_name, r.subject, r.body, r.read)
            for r in session.scalars(stmt)]


def mark_read(session: Session, ids: list[int]) -> int:
    """Mark messages read; returns how many changed (already read ones do not count)."""
    if not ids:
        return 0
    return session.execute(update(MessageRow).where(MessageRow.id.in_(ids), MessageRow.read.is_(False))
                           .values(read=True)).rowcount
