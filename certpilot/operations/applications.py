"""Stage 2 of a renewal (LC-3): key and CSR, submission to the CA, review wait, collection.

The session-level building blocks of stage 2; the Services-level doors the tasks call are in
`operations.pipeline`. Each works on the caller's session and is re-entrant from the database:
table `ca_applications` (one row per certificate) says how far the application got. The CA order
reference is committed before any challenge is answered, so a crash and a rerun resume the same
CA order instead of opening a second one.

Keys: a generated key goes straight into the vault; these functions return key ids and
fingerprints, never key material (CSR-5).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select
from sqlalchemy.orm import Session

from certpilot.adapters.issuers.base import Application, Issuer, OrderStatus, PollResult
from certpilot.core.errors import (
    BadInputError,
    PermanentError,
    Reason,
    Refusal,
    RefusedError,
    Warning_,
)
from certpilot.core.lifecycle import may_apply
from certpilot.core.models import Contact, CsrMode, KeyAlgorithm, Level, Status, ValidationMethod
from certpilot.core.outcomes import ApplicationState, ApplicationStatus
from certpilot.core.validation import contact_refusal
from certpilot.crypto.csr import build_csr, canonical_name, check_csr, csr_public_fingerprint
from certpilot.crypto.keys import generate_key, open_key, public_fingerprint, store_key
from certpilot.store.repository import Repository
from certpilot.store.tables import CertificateRow
from certpilot.store.tables_issuance import CaApplicationRow

KEY_NOT_ROTATED = "key-not-rotated"
KEY_NOT_HELD = "key-not-held"


@dataclass(frozen=True)
class KeyAndCsr:
    """What `create_key_and_csr` made: ids and fingerprints only (CSR-5)."""

    certificate_id: str
    key_id: str | None
    public_fingerprint: str
    mode: CsrMode
    key_held: bool
    warnings: tuple[Warning_, ...] = ()


@dataclass(frozen=True)
class SubmitResult:
    """Where an application stands after `submit`: the CA order reference and its state."""

    certificate_id: str
    order_ref: str
    status: OrderStatus
    detail: str = ""
    resumed: bool = False
    warnings: tuple[Warning_, ...] = field(default_factory=tuple)


def _application_row(session: Session, certificate_id: str) -> CaApplicationRow | None:
    return session.scalars(select(CaApplicationRow).where(CaApplicationRow.certificate_id == certificate_id)).first()


def _require_application(session: Session, certificate_id: str) -> CaApplicationRow:
    row = _application_row(session, certificate_id)
    if row is None:
        raise BadInputError(f"certificate {certificate_id} has no CSR yet; create its key and CSR first "
                            "(create_key_and_csr).", Reason.NOT_FOUND)
    return row


def _original(repo: Repository, cert: CertificateRow) -> CertificateRow:
    """The certificate this one renews (its parent), else itself (a fresh purchase)."""
    return repo.get_certificate(cert.parent_id) if cert.parent_id else cert


def create_key_and_csr(session: Session, certificate_id: str, mode: CsrMode = CsrMode.SYSTEM, *,
                       vault, now: datetime, csr_pem: bytes | None = None,
                       actor: str = "system") -> KeyAndCsr:
    """Make the certificate's key (or take the supplied CSR) and its CSR, checked (CSR-1..CSR-5).

    Args:
        session: the caller's transaction.
        certificate_id: the new certificate (its parent is the original for CSR-1's algorithm).
        mode: SYSTEM (new key, same algorithm as the original: CSR-1), MANUAL (the supplied
            `csr_pem`, CSR-2), REUSE (the original's key, flagged: CSR-3).
        vault: the `KeyVault` keys are sealed into.
        now: the time recorded.
        csr_pem: the user's CSR for MANUAL.
        actor: who asks, for the audit log.

    Returns:
        `KeyAndCsr` with the key id and public fingerprint; idempotent (an existing CSR is returned).

    Raises:
        RefusedError: CSR_INVALID / CSR_NAMES / CSR_ALGORITHM for a CSR that fails its check
            (CSR-2, CSR-4); KEY_NOT_HELD for REUSE when the original's key is not held.
        BadInputError: MANUAL without a CSR.
    """
    repo = Repository(session)
    cert = repo.get_certificate(certificate_id)
    existing = _application_row(session, certificate_id)
    if existing is not None:
        return KeyAndCsr(certificate_id, cert.key_id, csr_public_fingerprint(existing.csr_pem.encode()),
                         CsrMode(existing.csr_mode), cert.key_held,
                         tuple(_warning(code) for code in existing.warnings))
    original = _original(repo, cert)
    alg = KeyAlgorithm(original.key_algorithm)
    names = list(cert.names)
    mode = CsrMode(mode)
    warnings: list[Warning_] = []
    key_id: str | None
    if mode is CsrMode.MANUAL:
        if not csr_pem:
            raise BadInputError("a manual CSR application needs the CSR (PEM); supply it, or let certpilot "
                                "generate the key (system mode).", Reason.BAD_INPUT)
        csr = csr_pem
        key_id, key_held = None, False
        warnings.append(_warning(KEY_NOT_HELD))
    elif mode is CsrMode.REUSE:
        if not original.key_id:
            raise RefusedError(Refusal(Reason.KEY_NOT_HELD,
                                       f"the original certificate {original.id} has no key held by certpilot, so it "
                                       "cannot be reused; generate a new key (system mode) or supply a CSR.", "CSR-3"))
        _alg, fp = repo.key_info(original.key_id)
        key = open_key(original.key_id, fp, vault=vault, repo=repo)
        csr = build_csr(key, names)
        del key
        key_id, key_held = original.key_id, True
        warnings.append(_warning(KEY_NOT_ROTATED))
    else:
        key = generate_key(alg)
        key_id, _fp = store_key(key, vault=vault, repo=repo)
        csr = build_csr(key, names)
        del key
        key_held = True
    # CSR-4: every CSR, the system's too, is checked before anything is sent.
    refusal = check_csr(csr, names, alg)
    if refusal is not None:
        raise RefusedError(refusal)
    fp = csr_public_fingerprint(csr)
    repo.update_certificate(certificate_id, now=now, key_id=key_id, key_held=key_held, key_algorithm=alg)
    session.add(CaApplicationRow(id=str(uuid.uuid4()), certificate_id=certificate_id, issuer=None,
                                 csr_mode=mode.value, csr_pem=csr.decode(), order_url=None,
                                 state=ApplicationState.CSR_READY.value, attempts=0, last_error=None,
                                 warnings=[w.code for w in warnings], created_at=now, updated_at=now))
    repo.record_audit("certificate", certificate_id, actor=actor, now=now,
                      why=f"key and CSR created ({mode.value}; key {fp[:16]}…"
                          + (f"; {', '.join(w.code for w in warnings)}" if warnings else "") + ")")
    session.flush()
    return KeyAndCsr(certificate_id, key_id, fp, mode, key_held, tuple(warnings))


def _warning(code: str) -> Warning_:
    if code == KEY_NOT_ROTATED:
        return Warning_(KEY_NOT_ROTATED, "the original key is reused: this does not follow key-rotation "
                                         "practice and some compliance regimes forbid it (CSR-3).")
    if code == KEY_NOT_HELD:
        return Warning_(KEY_NOT_HELD, "key not held: cannot deploy to managed targets; the certificate must "
                                      "be installed by hand with your own key (CSR-2).")
    return Warning_(code, code)


def _application(cert: CertificateRow, row: CaApplicationRow) -> Application:
    contact = None
    if cert.owner_email:
        contact = Contact(name=cert.owner_name or "", email=cert.owner_email, phone=cert.owner_phone or "")
    return Application(names=tuple(cert.names), csr_pem=row.csr_pem.encode(),
                       method=ValidationMethod(cert.validation_method), level=Level(cert.level),
                       contact=contact, certificate_id=cert.id)


def submit(session: Session, certificate_id: str, issuer: Issuer, *, now: datetime,
           actor: str = "system", drive: bool = True) -> SubmitResult:
    """Submit the application to the CA, or resume the order already placed; drive it forward.

    The caller's session is committed before every call to the CA (no transaction is held
    across network I/O), and the order reference is committed before any challenge is answered:
    a crash after that point and a rerun resume the same order. Then, with `drive`, the
    issuer's `advance` validates and finalizes; a VALID result is collected (state ISSUED),
    an INVALID one marks the certificate REJECTED with the CA's detail in the audit (CA-2).
    A PENDING result (an OV/EV review) leaves it UNDER_REVIEW: the scanner calls `refresh`.

    Raises:
        RefusedError: CONTACT_REQUIRED (DV-6), or the issuer's own refusals (DV-4, DV-7) —
            nothing was placed at the CA.
        TransientError: retry later; the rerun resumes the same order.
    """
    repo = Repository(session)
    cert = repo.get_certificate(certificate_id)
    row = _require_application(session, certificate_id)
    app = _application(cert, row)
    warnings = tuple(_warning(c) for c in row.warnings)
    if row.state in (ApplicationState.COLLECTED,):
        return SubmitResult(certificate_id, row.order_url or "", OrderStatus.VALID, resumed=True, warnings=warnings)
    if row.state == ApplicationState.REJECTED:
        return SubmitResult(certificate_id, row.order_url or "", OrderStatus.INVALID, row.last_error or "",
                            resumed=True, warnings=warnings)
    resumed = row.order_url is not None
    if not resumed:
        refusal = contact_refusal(Level(cert.level), app.contact)
        if refusal is not None:
            raise RefusedError(refusal)
        # No transaction is held across a call to the CA (SQLite writers would queue behind it).
        session.commit()
        ref = issuer.submit(app)
        session.refresh(row)
        if row.order_url is not None:
            # A concurrent run recorded its order first: follow that one, ours is left unused.
            resumed = True
        else:
            row.order_url, row.issuer, row.state = ref, issuer.name, ApplicationState.ORDERED.value
            row.attempts += 1
            row.updated_at = now
            if Status(cert.state) is Status.PENDING_APPLICATION:
                repo.set_state(certificate_id, Status.UNDER_REVIEW, actor=actor, now=now,
                               why=f"submitted to {issuer.name}: order {ref}")
        # Committed before any challenge is answered: a rerun resumes this order (re-entrancy).
        session.commit()
    ref = row.order_url
    if not drive:
        return SubmitResult(certificate_id, ref, OrderStatus.PENDING, resumed=resumed, warnings=warnings)
    session.commit()
    try:
        result = issuer.advance(ref, app)
    except PermanentError as exc:
        result = PollResult(OrderStatus.INVALID, exc.message)
    return _settle(session, certificate_id, issuer, row, result, now=now, actor=actor, resumed=resumed,
                   warnings=warnings)


def _settle(session: Session, certificate_id: str, issuer: Issuer, row: CaApplicationRow, result: PollResult, *,
            now: datetime, actor: str, resumed: bool, warnings: tuple[Warning_, ...]) -> SubmitResult:
    repo = Repository(session)
    row.updated_at = now
    if result.status is OrderStatus.INVALID:
        row.state, row.last_error = ApplicationState.REJECTED.value, result.detail
        repo.set_state(certificate_id, Status.REJECTED, actor=actor, now=now,
                       why=f"the CA rejected the application: {result.detail}")
    elif result.status is OrderStatus.VALID:
        row.state = ApplicationState.VALID.value
        collect(session, certificate_id, issuer, now=now, actor=actor)
    session.flush()
    return SubmitResult(certificate_id, row.order_url or "", result.status, result.detail, resumed, warnings)


def refresh(session: Session, certificate_id: str, issuer: Issuer, *, now: datetime,
            actor: str = "scanner") -> SubmitResult:
    """Look at an application under review without holding a process (DV-5, CA-2).

    Polls the CA once: still pending → nothing changes; valid → collected (ISSUED); invalid →
    REJECTED with the CA's detail.
    """
    row = _require_application(session, certificate_id)
    if row.order_url is None:
        raise BadInputError(f"certificate {certificate_id} was not submitted yet; submit it first.",
                            Reason.NOT_FOUND)
    warnings = tuple(_warning(c) for c in row.warnings)
    if row.state in (ApplicationState.COLLECTED, ApplicationState.REJECTED):
        status = OrderStatus.VALID if row.state == ApplicationState.COLLECTED else OrderStatus.INVALID
        return SubmitResult(certificate_id, row.order_url, status, row.last_error or "", True, warnings)
    session.commit()  # no transaction across the CA call
    result = issuer.poll(row.order_url)
    if result.status in (OrderStatus.PENDING, OrderStatus.READY, OrderStatus.PROCESSING):
        return SubmitResult(certificate_id, row.order_url, result.status, result.detail, True, warnings)
    return _settle(session, certificate_id, issuer, row, result, now=now, actor=actor, resumed=True,
                   warnings=warnings)


def collect(session: Session, certificate_id: str, issuer: Issuer, *, now: datetime, actor: str = "system"):
    """Store the issued leaf and chain on the certificate and move it UNDER_REVIEW → ISSUED.

    Checks that the leaf carries the CSR's public key and exactly the certificate's names.
    Idempotent: a certificate already collected is returned unchanged.

    Returns:
        The certificate (core model).
    Raises:
        PermanentError: the CA's certificate does not match the application.
    """
    repo = Repository(session)
    row = _require_application(session, certificate_id)
    cert = repo.get_certificate(certificate_id)
    if row.state == ApplicationState.COLLECTED:
        return repo.certificate_model(certificate_id)
    session.commit()  # no transaction across the CA call
    chain = issuer.fetch_chain(row.order_url)
    leaf = x509.load_pem_x509_certificate(chain.leaf_pem.encode())
    if public_fingerprint(leaf.public_key()) != csr_public_fingerprint(row.csr_pem.encode()):
        raise PermanentError(f"the certificate {issuer.name} returned for {certificate_id} does not carry the "
                             "CSR's public key; do not deploy it, and resubmit the application.")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    got = {canonical_name(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    want = {canonical_name(n) for n in cert.names}
    if got != want:
        raise PermanentError(f"the certificate {issuer.name} returned for {certificate_id} names "
                             f"{', '.join(sorted(got))}, not {', '.join(sorted(want))}; resubmit the application.")
    repo.update_certificate(
        certificate_id, now=now, leaf_pem=chain.leaf_pem, chain_pem="".join(chain.chain_pems),
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(), serial=format(leaf.serial_number, "x"),
        not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
        publicly_trusted=issuer.publicly_trusted)
    model = repo.set_state(certificate_id, Status.ISSUED, actor=actor, now=now,
                           why=f"issued by {issuer.name} (serial {format(leaf.serial_number, 'x')})")
    row.state, row.updated_at = ApplicationState.COLLECTED.value, now
    session.flush()
    return model


def application_state(session: Session, certificate_id: str) -> dict | None:
    """The application's record as plain data (state, order reference, attempts, last error), or None."""
    row = _application_row(session, certificate_id)
    if row is None:
        return None
    return {"state": row.state, "order_ref": row.order_url, "issuer": row.issuer, "attempts": row.attempts,
            "last_error": row.last_error, "csr_mode": row.csr_mode, "warnings": list(row.warnings)}


def status(session: Session, certificate_id: str) -> ApplicationStatus:
    """Where a certificate stands for stage 2: its state, its application, what it still needs.

    Raises:
        NotFoundError: no such certificate.
        RefusedError: `apply` has nothing to do for it (not activated yet: PL-4; cancelled,
            revoked or uploaded: LC-5), with what to do instead.
    """
    cert = Repository(session).certificate_model(certificate_id)
    refusal = may_apply(cert.state)
    if refusal is not None:
        raise RefusedError(refusal)
    row = _application_row(session, certificate_id)
    return ApplicationStatus(
        certificate_id=cert.id, state=cert.state,
        application=ApplicationState(row.state) if row is not None else ApplicationState.NOT_STARTED,
        needs_contact=contact_refusal(cert.level, cert.owner) is not None, key_held=cert.key_held,
        common_name=cert.common_name, level=cert.level, origin=cert.origin, temporary=cert.temporary,
        fingerprint=cert.fingerprint_sha256, last_error=row.last_error if row is not None else None)


def resubmit(session: Session, certificate_id: str, *, now: datetime, actor: str = "system") -> None:
    """CA-2: after a rejection, the owner fixed what the CA asked for: start the application over.

    The certificate goes back REJECTED → PENDING_APPLICATION (LC-5) and its application record
    is cleared, so the next `apply` makes a new key and CSR and places a new CA order; the old
    order and the CA's reason stay in the audit log.

    Raises:
        IllegalTransitionError: the certificate is not REJECTED.
    """
    repo = Repository(session)
    row = _application_row(session, certificate_id)
    repo.set_state(certificate_id, Status.PENDING_APPLICATION, actor=actor, now=now,
                   why="resubmitted after the CA's rejection (CA-2)"
                       + (f"; previous order {row.order_url}: {row.last_error or 'no detail'}" if row else ""))
    if row is not None:
        session.delete(row)
        session.flush()
