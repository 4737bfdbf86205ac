"""The store's one door: rows in, core models out, every state change audited.

`Repository(session)` works inside the caller's transaction (`db.session_scope()`); it never
commits. Reads return `certpilot.core.models` objects (or ORM rows where a caller needs to
update fields); the scanner gets plain tuples (`status_rows`).

Concurrency (PAY-4, PL-8): state changes are compare-and-set updates
(``UPDATE ... WHERE state = :expected``), so of two concurrent writers exactly one wins; ledger
entries are inserted with ``ON CONFLICT DO NOTHING`` on a unique idempotency key derived
deterministically from the order (`core.payment.ledger_key`, re-exported here), so a retried or
concurrent payment writes one set of entries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from certpilot.core.errors import IllegalTransitionError, NotFoundError, PermanentError
from certpilot.core.lifecycle import transition
from certpilot.core.models import (
    Balances,
    Certificate,
    CertType,
    Contact,
    CsrMode,
    KeyAlgorithm,
    LedgerEntry,
    LedgerKind,
    Level,
    Order,
    OrderKind,
    OrderState,
    Origin,
    PaymentLine,
    PlannedCertificate,
    Spec,
    Status,
    ValidationMethod,
)
from certpilot.core.payment import balances_from
from certpilot.core.payment import (
    ledger_key as ledger_key,  # re-exported: the key builders live in core (PAY-4)
)
from certpilot.store.base import utcnow
from certpilot.store.tables import AuditRow, CertificateRow, KeyRow, LedgerRow, OrderRow

LEDGER_LOCK_ID = 0x6C6564676572  # "ledger": PostgreSQL advisory lock serialising payments

StatusRow = tuple[str, str, str, str, str, datetime | None, str | None, int, str | None]
"""(id, common_name, state, origin, cert_type, not_after, order_id, plan_index, parent_id)."""

_CERT_UPDATABLE = frozenset(
    {
        "common_name", "names", "cert_type", "level", "brand", "key_algorithm", "not_before",
        "not_after", "serial", "fingerprint_sha256", "validation_method", "temporary", "key_held",
        "publicly_trusted", "key_id", "leaf_pem", "chain_pem", "owner", "planned_not_before",
        "planned_not_after",
    }
)


def new_id(prefix: str | None = None) -> str:
    """A fresh random identifier: ``crt-3f9c0a1b2d4e5f60`` with a prefix naming what it is
    (64 random bits: no collision in any realistic inventory), a UUID4 string without one."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}" if prefix else str(uuid.uuid4())


@dataclass(frozen=True)
class PaymentOutcome:
    """Result of `Repository.pay_order_atomically`.

    `paid_now` is True for the one caller whose compare-and-set moved the order to PAID; a
    concurrent or retried caller gets False and the entries the winner wrote.
    """

    order: Order
    entries: list[LedgerEntry]
    paid_now: bool


@dataclass(frozen=True)
class AuditRecord:
    """One audit-log line."""

    id: int
    at: datetime
    actor: str
    entity_type: str
    entity_id: str
    from_state: str | None
    to_state: str | None
    why: str


def _v(value: Any) -> Any:
    """Enum members are stored as their plain string value."""
    return value.value if hasattr(value, "value") else value


def certificate_from_row(row: CertificateRow) -> Certificate:
    """Map a certificates row to the core model."""
    owner = (
        Contact(name=row.owner_name or "", email=row.owner_email, phone=row.owner_phone or "")
        if row.owner_email
        else None
    )
    return Certificate(
        id=row.id,
        common_name=row.common_name,
        names=list(row.names),
        cert_type=CertType(row.cert_type),
        origin=Origin(row.origin),
        level=Level(row.level),
        brand=row.brand,
        key_algorithm=KeyAlgorithm(row.key_algorithm),
        not_before=row.not_before,
        not_after=row.not_after,
        serial=row.serial,
        fingerprint_sha256=row.fingerprint_sha256,
        parent_id=row.parent_id,
        order_id=row.order_id,
        plan_index=row.plan_index,
        state=Status(row.state),
        validation_method=ValidationMethod(row.validation_method),
        owner=owner,
        temporary=row.temporary,
        key_held=row.key_held,
        publicly_trusted=row.publicly_trusted,
        planned_not_before=row.planned_not_before,
        planned_not_after=row.planned_not_after,
    )


def order_from_row(row: OrderRow) -> Order:
    """Map an orders row to the core model."""
    return Order(
        id=row.id,
        kind=OrderKind(row.kind),
        certificate_id=row.certificate_id,
        spec=Spec(brand=row.brand, level=Level(row.level), cert_type=CertType(row.cert_type)),
        years=row.years,
        csr_mode=CsrMode(row.csr_mode),
        managed_services=row.managed_services,
        managed_fee=row.managed_fee,
        planned=[PlannedCertificate.model_validate(p) for p in row.planned],
        payment=[PaymentLine.model_validate(p) for p in row.payment],
        state=OrderState(row.state),
        created_at=row.created_at,
        names=list(row.names or []),
        owner=(Contact(name=row.owner_name or "", email=row.owner_email, phone=row.owner_phone or "")
               if row.owner_email else None),
        coverage_not_after=row.coverage_not_after,
    )


def _ledger_from_row(row: Any) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        kind=LedgerKind(row.kind),
        spec_key=row.spec_key,
        delta=row.delta,
        amount=row.amount,
        order_id=row.order_id,
        idempotency_key=row.idempotency_key,
        created_at=row.created_at,
        note=row.note,
    )


class Repository:
    """Data access for the foundation tables, inside the caller's transaction."""

    def __init__(self, session: Session):
        self.session = session

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.session.get_bind().dialect.name

    # ------------------------------------------------------------------ certificates
    def add_certificate(
        self,
        cert: Certificate,
        *,
        leaf_pem: str | None = None,
        chain_pem: str | None = None,
        key_id: str | None = None,
        actor: str = "system",
        why: str = "created",
        now: datetime | None = None,
    ) -> CertificateRow:
        """Insert a certificate (its lineage via `cert.parent_id`, LC-2) and audit its creation.

        Args:
            cert: the core model; `cert.id` is kept (use `new_id()` for a fresh one).
            leaf_pem, chain_pem: the PEM text of the certificate and its chain, when known.
            key_id: the sealed key (`put_key`) of this certificate, when the system holds it.
            actor, why, now: recorded in the audit log (to_state = the initial state).

        Raises:
            sqlalchemy.exc.IntegrityError: duplicate id or fingerprint, unknown parent/order/key.
        """
        now = now or utcnow()
        owner = cert.owner
        row = CertificateRow(
            id=cert.id,
            common_name=cert.common_name,
            names=list(cert.names),
            cert_type=_v(cert.cert_type),
            origin=_v(cert.origin),
            level=_v(cert.level),
            brand=cert.brand,
            key_algorithm=_v(cert.key_algorithm),
            not_before=cert.not_before,
            not_after=cert.not_after,
            serial=cert.serial,
            fingerprint_sha256=cert.fingerprint_sha256,
            parent_id=cert.parent_id,
            order_id=cert.order_id,
            plan_index=cert.plan_index,
            state=_v(cert.state),
            validation_method=_v(cert.validation_method),
            owner_email=owner.email if owner else None,
            owner_name=owner.name if owner else None,
            owner_phone=owner.phone if owner else None,
            temporary=cert.temporary,
            key_held=cert.key_held,
            publicly_trusted=cert.publicly_trusted,
            planned_not_before=cert.planned_not_before,
            planned_not_after=cert.planned_not_after,
            key_id=key_id,
            leaf_pem=leaf_pem,
            chain_pem=chain_pem,
            created_at=now,
            updated_at=now,
        )
        self.session.add(row)
        # Flush now: a child added next in the same transaction needs its parent's row
        # (PostgreSQL checks foreign keys per statement).
        self.session.flush()
        self.record_audit("certificate", cert.id, actor=actor, why=why, now=now,
                          to_state=_v(cert.state))
        return row

    def find_certificate(self, cert_id: str) -> CertificateRow | None:
        """The certificate's row, or None."""
        return self.session.get(CertificateRow, cert_id)

    def get_certificate(self, cert_id: str) -> CertificateRow:
        """The certificate's row.

        Raises:
            NotFoundError: no certificate has this id.
        """
        row = self.session.get(CertificateRow, cert_id)
        if row is None:
            raise NotFoundError(
                f"no certificate with id {cert_id}; list the inventory with `certpilot list` for valid ids"
            )
        return row

    def certificate_model(self, cert_id: str) -> Certificate:
        """The certificate as a core model. Raises `NotFoundError`."""
        return certificate_from_row(self.get_certificate(cert_id))

    def children(self, cert_id: str) -> list[Certificate]:
        """Certificates whose parent is `cert_id` (LC-2 lineage), by plan index then creation."""
        rows = self.session.scalars(
            select(CertificateRow)
            .where(CertificateRow.parent_id == cert_id)
            .order_by(CertificateRow.plan_index, CertificateRow.created_at, CertificateRow.id)
        )
        return [certificate_from_row(r) for r in rows]

    def parent(self, cert_id: str) -> Certificate | None:
        """The certificate `cert_id` renews (LC-2), or None for an original. Raises `NotFoundError`."""
        row = self.get_certificate(cert_id)
        return self.certificate_model(row.parent_id) if row.parent_id else None

    def find_by_fingerprint(self, fingerprint_sha256: str) -> Certificate | None:
        """The certificate with this SHA-256 fingerprint (hex, lower, no colons), or None."""
        row = self.session.scalars(
            select(CertificateRow).where(
                CertificateRow.fingerprint_sha256 == fingerprint_sha256.lower().replace(":", "")
            )
        ).first()
        return certificate_from_row(row) if row else None

    def certificates_for_order(self, order_id: str) -> list[Certificate]:
        """The certificates an order created, by plan index."""
        rows = self.session.scalars(
            select(CertificateRow)
            .where(CertificateRow.order_id == order_id)
            .order_by(CertificateRow.plan_index, CertificateRow.id)
        )
        return [certificate_from_row(r) for r in rows]

    def update_certificate(self, cert_id: str, *, now: datetime | None = None, **fields: Any) -> Certificate:
        """Change non-state fields of a certificate (dates, serial, PEMs, key, owner, ...).

        The state moves only through `set_state` (LC-5); `id`, `parent_id`, `order_id` and
        `origin` never change.

        Raises:
            NotFoundError: no such certificate.
            PermanentError: a field that may not be changed this way.
        """
        bad = sorted(set(fields) - _CERT_UPDATABLE)
        if bad:
            raise PermanentError(
                f"update_certificate cannot change {', '.join(bad)}; use set_state for the state, "
                "and create a new certificate for another identity or lineage"
            )
        row = self.get_certificate(cert_id)
        for name, value in fields.items():
            if name == "owner":
                row.owner_email = value.email if value else None
                row.owner_name = value.name if value else None
                row.owner_phone = value.phone if value else None
            elif name == "names":
                row.names = list(value)
            else:
                setattr(row, name, _v(value))
        row.updated_at = now or utcnow()
        self.session.flush()
        return certificate_from_row(row)

    def set_state(self, cert_id: str, to: Status, *, actor: str, why: str, now: datetime) -> Certificate:
        """Move a certificate along the lifecycle (LC-5) and audit it, in the caller's transaction.

        The move is checked by `certpilot.core.lifecycle.transition` and written as a
        compare-and-set on the state read, so a concurrent mover cannot be overwritten (PL-8).

        Raises:
            NotFoundError: no such certificate.
            IllegalTransitionError: LC-5 does not allow the move, or the state changed meanwhile;
                nothing is changed.
        """
        row = self.get_certificate(cert_id)
        frm = Status(row.state)
        new = transition(frm, Status(to))
        result = self.session.execute(
            update(CertificateRow)
            .where(CertificateRow.id == cert_id, CertificateRow.state == frm.value)
            .values(state=new.value, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            current = self.session.scalar(select(CertificateRow.state).where(CertificateRow.id == cert_id))
            raise IllegalTransitionError(
                f"certificate {cert_id} moved from {frm.value} to {current} while this change to "
                f"{new.value} was being made; read it again and decide on its current state"
            )
        self.record_audit("certificate", cert_id, actor=actor, why=why, now=now,
                          from_state=frm.value, to_state=new.value)
        self.session.refresh(row)
        return certificate_from_row(row)

    # ------------------------------------------------------------------ audit
    def record_audit(
        self,
        entity_type: str,
        entity_id: str,
        *,
        actor: str,
        why: str,
        now: datetime,
        from_state: str | None = None,
        to_state: str | None = None,
    ) -> None:
        """Append an audit line (import, order placed, payment, deployment, ...)."""
        self.session.add(
            AuditRow(at=now, actor=actor, entity_type=entity_type, entity_id=entity_id,
                     from_state=_v(from_state), to_state=_v(to_state), why=why)
        )
        self.session.flush()

    def audit(self, entity_id: str) -> list[AuditRecord]:
        """The audit trail of one entity, oldest first."""
        rows = self.session.scalars(
            select(AuditRow).where(AuditRow.entity_id == entity_id).order_by(AuditRow.id)
        )
        return [
            AuditRecord(id=r.id, at=r.at, actor=r.actor, entity_type=r.entity_type,
                        entity_id=r.entity_id, from_state=r.from_state, to_state=r.to_state, why=r.why)
            for r in rows
        ]

    # ------------------------------------------------------------------ orders
    def add_order(
        self,
        order: Order,
        *,
        idempotency_key: str | None = None,
        actor: str = "system",
        why: str = "order placed",
        now: datetime | None = None,
    ) -> Order:
        """Insert an order and audit it; with `idempotency_key`, a repeat returns the first order.

        Raises:
            sqlalchemy.exc.IntegrityError: duplicate id or unknown certificate.
        """
        now = now or utcnow()
        values = {
            "id": order.id,
            "kind": _v(order.kind),
            "certificate_id": order.certificate_id,
            "spec_key": order.spec.key,
            "brand": order.spec.brand,
            "level": _v(order.spec.level),
            "cert_type": _v(order.spec.cert_type),
            "years": order.years,
            "csr_mode": _v(order.csr_mode),
            "managed_services": order.managed_services,
            "managed_fee": order.managed_fee,
            "state": _v(order.state),
            "payment": [p.model_dump(mode="json") for p in order.payment],
            "planned": [p.model_dump(mode="json") for p in order.planned],
            "idempotency_key": idempotency_key,
            "created_at": order.created_at,
            "updated_at": now,
            "names": list(order.names) or None,
            "owner_email": order.owner.email if order.owner else None,
            "owner_name": order.owner.name if order.owner else None,
            "owner_phone": order.owner.phone if order.owner else None,
            "coverage_not_after": order.coverage_not_after,
        }
        self.session.flush()
        if idempotency_key is None:
            self.session.add(OrderRow(**values))
            self.session.flush()
            inserted = True
        else:
            # RETURNING tells whether this call inserted (rowcount is unreliable across drivers).
            table = OrderRow.__table__
            inserted = self.session.execute(
                self._insert(table).values(**values)
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
                .returning(table.c.id)
            ).first() is not None
        if not inserted:
            existing = self.session.scalars(
                select(OrderRow).where(OrderRow.idempotency_key == idempotency_key)
            ).one()
            return order_from_row(existing)
        self.record_audit("order", order.id, actor=actor, why=why, now=now, to_state=_v(order.state))
        return self.get_order(order.id)

    def get_order(self, order_id: str) -> Order:
        """The order as a core model.

        Raises:
            NotFoundError: no order has this id.
        """
        row = self.session.get(OrderRow, order_id, populate_existing=True)
        if row is None:
            raise NotFoundError(f"no order with id {order_id}; `certpilot orders` lists the orders and their ids")
        return order_from_row(row)

    def set_order_plan(self, order_id: str, *, coverage_not_after: datetime | None = None,
                       planned: list[PlannedCertificate] | None = None, now: datetime | None = None) -> Order:
        """Record what a plan became once its certificates were issued (VA-5): the coverage term's
        end (a purchase's is anchored at its first issuance) and the planned certificates (a
        certificate added when the CA signed less than planned). The order's state is untouched.

        Raises:
            NotFoundError: no such order.
        """
        row = self.session.get(OrderRow, order_id)
        if row is None:
            raise NotFoundError(f"no order with id {order_id}; `certpilot orders` lists the orders and their ids")
        if coverage_not_after is not None:
            row.coverage_not_after = coverage_not_after
        if planned is not None:
            row.planned = [p.model_dump(mode="json") for p in planned]
        row.updated_at = now or utcnow()
        self.session.flush()
        return order_from_row(row)

    def order_csr(self, order_id: str) -> str | None:
        """The manual CSR (PEM text) kept on an order (CSR-2), or None."""
        row = self.session.get(OrderRow, order_id)
        return row.csr_pem if row is not None else None

    def set_order_csr(self, order_id: str, csr_pem: str | None) -> None:
        """Keep a manual CSR (PEM text; public data, no key) on an order for its application (CSR-2)."""
        row = self.session.get(OrderRow, order_id)
        if row is None:
            raise NotFoundError(f"no order with id {order_id}; `certpilot orders` lists the orders and their ids")
        row.csr_pem = csr_pem
        self.session.flush()

    def orders_for_certificate(self, cert_id: str) -> list[Order]:
        """Orders placed for (renewing) a certificate, oldest first."""
        rows = self.session.scalars(
            select(OrderRow).where(OrderRow.certificate_id == cert_id).order_by(OrderRow.created_at)
        )
        return [order_from_row(r) for r in rows]

    def claim_order_state(
        self,
        order_id: str,
        frm: OrderState,
        to: OrderState,
        *,
        actor: str,
        why: str,
        now: datetime,
        payment: Sequence[PaymentLine] | None = None,
        planned: Sequence[PlannedCertificate] | None = None,
    ) -> bool:
        """Compare-and-set an order's state ``frm -> to``; audit it when this caller won.

        Returns True when this call moved the order (exactly one of concurrent callers), False
        when the order was not in `frm` (someone else moved it first). `payment` replaces the
        order's bill in the same statement, `planned` its plan (a purchase re-planned when paid).

        Raises:
            NotFoundError: no such order.
        """
        self.session.flush()
        values: dict[str, Any] = {"state": _v(to), "updated_at": now}
        if payment is not None:
            values["payment"] = [p.model_dump(mode="json") for p in payment]
        if planned is not None:
            values["planned"] = [p.model_dump(mode="json") for p in planned]
        result = self.session.execute(
            update(OrderRow)
            .where(OrderRow.id == order_id, OrderRow.state == _v(frm))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            self.get_order(order_id)  # NotFoundError when it does not exist
            return False
        self.record_audit("order", order_id, actor=actor, why=why, now=now,
                          from_state=_v(frm), to_state=_v(to))
        return True

    def set_order_state(
        self, order_id: str, to: OrderState, *, expected: OrderState, actor: str, why: str, now: datetime
    ) -> Order:
        """Move an order from `expected` to `to` (audited), or refuse.

        Raises:
            NotFoundError: no such order.
            IllegalTransitionError: the order is not in `expected`; nothing changed.
        """
        if not self.claim_order_state(order_id, expected, to, actor=actor, why=why, now=now):
            current = self.get_order(order_id).state
            raise IllegalTransitionError(
                f"order {order_id} is {current.value}, not {_v(expected)}: it cannot move to "
                f"{_v(to)}; read it again and act on its current state"
            )
        return self.get_order(order_id)

    def pay_order_atomically(
        self,
        order_id: str,
        entries: Sequence[LedgerEntry],
        *,
        actor: str,
        why: str,
        now: datetime,
        payment: Sequence[PaymentLine] | None = None,
        planned: Sequence[PlannedCertificate] | None = None,
    ) -> PaymentOutcome:
        """Mark an order paid and write its ledger entries exactly once (PAY-4).

        The order moves AWAITING_PAYMENT -> PAID by compare-and-set (the second of two
        concurrent payers waits for the first's row lock, then finds it paid); only the winner
        appends `entries`, whose idempotency keys should come from `ledger_key(order_id, kind, i)`
        so that even a payer that bypasses this method cannot duplicate them.

        Returns:
            `PaymentOutcome(order, entries, paid_now)`; a loser or a retry gets `paid_now=False`
            and the entries already in the ledger for the order.

        Raises:
            NotFoundError: no such order.
            IllegalTransitionError: the order is declined or cancelled; nothing changed.
        """
        if self.claim_order_state(order_id, OrderState.AWAITING_PAYMENT, OrderState.PAID,
                                  actor=actor, why=why, now=now, payment=payment, planned=planned):
            written = self.append_ledger(entries)
            return PaymentOutcome(self.get_order(order_id), written, True)
        order = self.get_order(order_id)
        if order.state is not OrderState.PAID:
            raise IllegalTransitionError(
                f"order {order_id} is {order.state.value}: only an order awaiting payment can be "
                "paid; place a new order"
            )
        return PaymentOutcome(order, self.ledger_for_order(order_id), False)

    # ------------------------------------------------------------------ ledger
    def lock_ledger(self) -> None:
        """Serialise balance-reading writers until this transaction ends.

        Call before reading `balances()` to price an order, so two orders cannot both spend
        the last quota. PostgreSQL: a transaction-scoped advisory lock. SQLite: nothing to do,
        every write transaction already holds the database write lock (BEGIN IMMEDIATE).
        """
        if self.dialect == "postgresql":
            self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LEDGER_LOCK_ID})

    def append_ledger(self, entries: Iterable[LedgerEntry]) -> list[LedgerEntry]:
        """Append entries, idempotent by `idempotency_key` (PAY-4); returns what the ledger holds.

        An entry whose key exists is not written again (``INSERT ... ON CONFLICT DO NOTHING``;
        under concurrency the second inserter waits for the first and then skips), and the
        stored entry is returned in its place, in input order.

        Raises:
            PermanentError: an entry was neither inserted nor found (its id clashes with
                another entry's).
        """
        entries = list(entries)
        if not entries:
            return []
        self.session.flush()
        # Sorted by key: concurrent inserters take the unique-index locks in the same order
        # (no deadlock on PostgreSQL).
        values = [
            {
                "id": e.id,
                "kind": _v(e.kind),
                "spec_key": e.spec_key,
                "delta": e.delta,
                "amount": e.amount,
                "order_id": e.order_id,
                "idempotency_key": e.idempotency_key,
                "created_at": e.created_at,
                "note": e.note,
            }
            for e in sorted(entries, key=lambda e: e.idempotency_key)
        ]
        self.session.execute(self._insert(LedgerRow.__table__).values(values).on_conflict_do_nothing())
        keys = [e.idempotency_key for e in entries]
        table = LedgerRow.__table__
        stored = {
            r.idempotency_key: _ledger_from_row(r)
            for r in self.session.execute(select(table).where(table.c.idempotency_key.in_(keys)))
        }
        missing = [k for k in keys if k not in stored]
        if missing:
            raise PermanentError(
                f"ledger entries {', '.join(missing)} were neither written nor found: their ids "
                "clash with other entries; give each entry a fresh id"
            )
        return [stored[k] for k in keys]

    def ledger_for_order(self, order_id: str) -> list[LedgerEntry]:
        """The ledger entries tied to an order, by idempotency key."""
        table = LedgerRow.__table__
        rows = self.session.execute(
            select(table).where(table.c.order_id == order_id).order_by(table.c.idempotency_key)
        )
        return [_ledger_from_row(r) for r in rows]

    def ledger_entry(self, idempotency_key: str) -> LedgerEntry | None:
        """The ledger entry written under `idempotency_key`, or None (one lookup by its unique index)."""
        table = LedgerRow.__table__
        row = self.session.execute(select(table).where(table.c.idempotency_key == idempotency_key)).first()
        return _ledger_from_row(row) if row is not None else None

    def ledger(self) -> list[LedgerEntry]:
        """Every ledger entry, oldest first."""
        table = LedgerRow.__table__
        rows = self.session.execute(select(table).order_by(table.c.created_at, table.c.idempotency_key))
        return [_ledger_from_row(r) for r in rows]

    def balances(self) -> Balances:
        """PAY-3: remaining quota per specification and managed credits.

        The database sums the deltas per (kind, specification); `core.payment.balances_from`
        folds those sums into balances (the one definition of what moves a balance).
        """
        table = LedgerRow.__table__
        rows = self.session.execute(
            select(table.c.kind, table.c.spec_key, func.sum(table.c.delta)).group_by(table.c.kind, table.c.spec_key)
        )
        return balances_from((kind, spec_key, int(total)) for kind, spec_key, total in rows)

    # ------------------------------------------------------------------ keys
    def put_key(
        self, sealed: Any, algorithm: KeyAlgorithm | str, public_fingerprint: str, *, now: datetime | None = None
    ) -> str:
        """Store a sealed key (a `certpilot.crypto.vault.SealedKey`) and return its new id.

        Only the ciphertext, nonce and wrapped DEK are stored (CSR-5): never plaintext.
        """
        key_id = new_id("key")
        self.session.add(
            KeyRow(
                id=key_id,
                algorithm=_v(algorithm),
                public_fingerprint=public_fingerprint,
                ciphertext=bytes(sealed.ciphertext),
                nonce=bytes(sealed.nonce),
                wrapped_dek=bytes(sealed.wrapped_dek),
                provider=sealed.provider,
                created_at=now or utcnow(),
            )
        )
        self.session.flush()
        return key_id

    def get_sealed_key(self, key_id: str):
        """The sealed key stored under `key_id` (a `certpilot.crypto.vault.SealedKey`).

        Raises:
            NotFoundError: no key has this id.
        """
        from certpilot.crypto.vault import SealedKey

        row = self.session.get(KeyRow, key_id)
        if row is None:
            raise NotFoundError(f"no stored key with id {key_id}; the certificate's key is not held")
        return SealedKey(ciphertext=row.ciphertext, nonce=row.nonce, wrapped_dek=row.wrapped_dek,
                         provider=row.provider)

    def key_info(self, key_id: str) -> tuple[str, str]:
        """(algorithm, public_fingerprint) of a stored key. Raises `NotFoundError`."""
        row = self.session.get(KeyRow, key_id)
        if row is None:
            raise NotFoundError(f"no stored key with id {key_id}; the certificate's key is not held")
        return row.algorithm, row.public_fingerprint

    # ------------------------------------------------------------------ scanner
    def status_rows(
        self, *, states: Iterable[Status] | None = None, not_after_before: datetime | None = None
    ) -> list[StatusRow]:
        """Plain tuples for the scanner, one Core query, no ORM objects (100k rows).

        Each row: (id, common_name, state, origin, cert_type, not_after, order_id, plan_index,
        parent_id), ordered by not_after (NULLs last) then id.

        Args:
            states: only these lifecycle states.
            not_after_before: only certificates expiring before this instant.
        """
        t = CertificateRow.__table__
        stmt = select(t.c.id, t.c.common_name, t.c.state, t.c.origin, t.c.cert_type, t.c.not_after,
                      t.c.order_id, t.c.plan_index, t.c.parent_id)
        if states is not None:
            stmt = stmt.where(t.c.state.in_([_v(s) for s in states]))
        if not_after_before is not None:
            stmt = stmt.where(t.c.not_after < not_after_before)
        stmt = stmt.order_by(t.c.not_after.is_(None), t.c.not_after, t.c.id)
        return [tuple(r) for r in self.session.execute(stmt)]

    # ------------------------------------------------------------------ helpers
    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT (both support ON CONFLICT DO NOTHING)."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)
