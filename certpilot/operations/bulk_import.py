"""Use case: import a folder of PEM files, every bundle found in it (`certpilot import --dir DIR`).

`discover(directory)` reads every file of the folder (recursively), sorts its PEM blocks into
certificates and private keys (`crypto.pem`'s parsers) and assembles bundles: each server
certificate (not a CA) once, whatever number of files hold it, with the private key whose public
key is its own and the intermediates that link it up to a root (by issuer name). Bundles are
references (paths and block positions), so a flow can pass them to tasks without key material.

`import_found(svc, bundle)` imports one bundle through `importing.import_bundle`, in its own
transaction: one bad bundle is refused with UP-3's reason and nothing of it stored, the others
go on; a certificate already in the inventory (same fingerprint) is skipped, so a second run
imports nothing. `import_directory` does both and reports imported / skipped / refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from certpilot.core.bulk import BulkOutcome, BulkReport, BundleReport, FoundBundle, PemRef
from certpilot.core.errors import BadInputError, CertpilotError, Reason, RefusedError
from certpilot.core.models import Level, Origin
from certpilot.core.names import OWN_BRAND
from certpilot.crypto.pem import (
    KEY_LABELS,
    fingerprint,
    load_certificates,
    load_private_key,
    spki_der,
    split_pem,
)

if TYPE_CHECKING:
    from certpilot.runtime import Services

MAX_FILE_BYTES = 1 << 20
"""A file larger than this is no certificate, key or chain: refused unread (bounded time)."""
PEM_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".cert", ".key", ".chain", ".ca-bundle", ".der"})
"""Files read even without a PEM header (so that a DER certificate is refused with its reason)."""
_DER_HINT = "openssl x509 -inform der -in cert.der -out cert.pem"
_MAX_CHAIN = 8
_BATCH = 500
"""Bundles per duplicate pre-check (and per progress call) of `import_directory`."""


@dataclass(frozen=True)
class Discovery:
    """What a folder holds: its bundles, the files refused while reading it, the files ignored."""

    directory: str
    bundles: tuple[FoundBundle, ...]
    refused: tuple[BundleReport, ...]
    ignored: tuple[str, ...]


@dataclass
class _Cert:
    ref: PemRef
    cert: x509.Certificate
    fp: str
    spki: bytes
    ca: bool


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _refused_file(rel: str, exc: CertpilotError) -> BundleReport:
    refusal = getattr(exc, "refusal", None)
    reason = getattr(exc, "reason", None) or (refusal.reason if refusal else Reason.BAD_INPUT)
    return BundleReport(BulkOutcome.REFUSED, (rel,), reason=reason.value, rule="UP-3",
                        message=refusal.message if refusal else exc.message)


def _files(root: Path) -> Iterable[Path]:
    """Every regular file under `root`, in a stable order; symbolic links to files are followed
    (certbot's live/ links into archive/), links to directories are not (no loops)."""
    for here, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(here) / name
            if path.is_file():
                yield path


def discover(directory: str | Path, *, passphrase: bytes | str | None = None) -> Discovery:
    """Read a folder and assemble its bundles (see the module).

    Args:
        directory: the folder (read recursively; nothing in it is changed).
        passphrase: the passphrase of encrypted keys, if they share one.

    Raises:
        BadInputError: the folder does not exist or is not a directory.
    """
    root = Path(directory)
    if not root.is_dir():
        raise BadInputError(f"--dir {directory} is not a directory; give the folder that holds the PEM files",
                            Reason.BAD_INPUT)
    certs: list[_Cert] = []
    keys: dict[bytes, PemRef] = {}
    bad_keys: dict[str, BundleReport] = {}  # by directory: a key there could not be read
    refused: list[BundleReport] = []
    ignored: list[str] = []
    for path in _files(root):
        rel = str(path.relative_to(root))
        problem, held, key_problem = _read_file(path, rel, certs, keys, passphrase)
        if problem is not None:
            refused.append(problem)
            if key_problem:
                bad_keys.setdefault(os.path.dirname(rel), problem)
        elif not held:
            ignored.append(rel)
    bundles, used_keys = _assemble(certs, keys, bad_keys, refused)
    for spki, ref in keys.items():
        if spki not in used_keys:
            refused.append(BundleReport(
                BulkOutcome.REFUSED, (ref.path,), reason=Reason.KEY_MISMATCH.value, rule="UP-3",
                message=f"{ref.path}: no certificate in {directory} belongs to this private key; put its "
                        "certificate beside it, or leave the key out."))
    return Discovery(str(root), tuple(bundles), tuple(refused), tuple(ignored))


def _read_file(path: Path, rel: str, certs: list[_Cert], keys: dict[bytes, PemRef],
               passphrase: bytes | str | None) -> tuple[BundleReport | None, bool, bool]:
    """Add a file's certificates and keys.

    Returns:
        (its refusal or None, whether it held a certificate or key, whether the refusal is about
        a private key: a certificate beside it is then not imported without its key).
    """
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            if path.suffix.lower() in PEM_SUFFIXES:
                return BundleReport(BulkOutcome.REFUSED, (rel,), reason=Reason.BAD_PEM.value, rule="UP-3",
                                    message=f"{rel} is larger than {MAX_FILE_BYTES} bytes: no certificate, key "
                                            "or chain is; it was not read."), False, False
            return None, False, False
        data = path.read_bytes()
    except OSError as exc:
        return BundleReport(BulkOutcome.REFUSED, (rel,), reason=Reason.BAD_INPUT.value, rule="UP-3",
                            message=f"{rel} cannot be read ({exc.strerror}); check its permissions."), False, False
    if b"-----BEGIN" not in data and path.suffix.lower() not in PEM_SUFFIXES:
        return None, False, False
    held = False
    try:
        blocks = split_pem(data, what=rel, der_hint=_DER_HINT)
        for i, block in enumerate(blocks):
            ref = PemRef(rel, i)
            if block.label == "CERTIFICATE":
                cert = load_certificates(block.data, what=f"{rel} (block {i + 1})")[0]
                certs.append(_Cert(ref, cert, fingerprint(cert), spki_der(cert.public_key()), _is_ca(cert)))
                held = True
            elif block.label in KEY_LABELS:
                key, _ = load_private_key(block.data, passphrase=passphrase, what=f"{rel} (a private key)")
                keys.setdefault(spki_der(key.public_key()), ref)
                held = True
        return None, held, False
    except BadInputError as exc:
        return _refused_file(rel, exc), held, b"PRIVATE KEY" in data


def _assemble(certs: list[_Cert], keys: dict[bytes, PemRef], bad_keys: dict[str, BundleReport],
              refused: list[BundleReport]) -> tuple[list[FoundBundle], set[bytes]]:
    """One bundle per distinct server certificate: its key by public key, its chain by issuer."""
    issuers: dict[x509.Name, dict[str, _Copies]] = {}  # subject -> fingerprint -> where its copies are
    leaves: dict[str, list[_Cert]] = {}
    followed: set[tuple[str, int]] = set()
    for c in certs:
        if c.ca:
            issuers.setdefault(c.cert.subject, {}).setdefault(c.fp, _Copies(c)).add(c)
            followed.add((c.ref.path, c.ref.index - 1))
        else:
            leaves.setdefault(c.fp, []).append(c)
    bundles, used = [], set()
    for copies in leaves.values():
        # The copy followed by its chain (a fullchain file) is the best reference, else the first.
        leaf = next((c for c in copies if (c.ref.path, c.ref.index) in followed), copies[0])
        files = tuple(dict.fromkeys(c.ref.path for c in copies))
        key = keys.get(leaf.spki)
        name = _cn(leaf.cert)
        if key is None and (bad := _bad_key_beside(files, bad_keys)) is not None:
            refused.append(BundleReport(
                BulkOutcome.REFUSED, (*files, *bad.files), common_name=name, fingerprint_sha256=leaf.fp,
                reason=bad.reason, rule="UP-3",
                message=f"the private key beside {files[0]} could not be read, so this certificate was not imported "
                        f"without it: {bad.message}"))
            continue
        if key is not None:
            used.add(leaf.spki)
        bundles.append(FoundBundle(leaf=leaf.ref, key=key, chain=_chain(leaf, issuers), files=files,
                                   common_name=name, fingerprint_sha256=leaf.fp))
    return bundles, used


def _bad_key_beside(files: tuple[str, ...], bad_keys: dict[str, BundleReport]) -> BundleReport | None:
    return next((bad_keys[d] for d in (os.path.dirname(f) for f in files) if d in bad_keys), None)


class _Copies:
    """Where one CA certificate was found: its first copy in each file and in each folder."""

    def __init__(self, first: _Cert) -> None:
        self.first = first
        self.by_file: dict[str, _Cert] = {}
        self.by_dir: dict[str, _Cert] = {}

    def add(self, c: _Cert) -> _Copies:
        self.by_file.setdefault(c.ref.path, c)
        self.by_dir.setdefault(os.path.dirname(c.ref.path), c)
        return self

    def nearest(self, path: str) -> _Cert:
        """The copy in `path` itself, else in its folder, else the first found."""
        return self.by_file.get(path) or self.by_dir.get(os.path.dirname(path)) or self.first


def _chain(leaf: _Cert, issuers: dict[x509.Name, dict[str, _Copies]]) -> tuple[PemRef, ...]:
    """The intermediates from the leaf's issuer up (roots left out: clients hold their own),
    preferring the copy in the leaf's own file, then in its folder."""
    chain: list[PemRef] = []
    seen: set[str] = set()
    current = leaf.cert
    for _ in range(_MAX_CHAIN):
        candidates = [(fp, copies) for fp, copies in issuers.get(current.issuer, {}).items() if fp not in seen]
        if not candidates:
            break
        fp, copies = candidates[0]
        parent = copies.nearest(leaf.ref.path)
        if parent.cert.subject == parent.cert.issuer:  # a root
            break
        chain.append(parent.ref)
        seen.add(fp)
        current = parent.cert
    return tuple(chain)


def _cn(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cns:
        return str(cns[0].value)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return names[0] if names else cert.subject.rfc4514_string()


def bundle_pems(root: str | Path, bundle: FoundBundle) -> tuple[bytes, bytes | None, bytes | None]:
    """(certificate, key, chain) PEM of a found bundle, read again from its files.

    Raises:
        BadInputError(BAD_INPUT): a file changed since it was read (a block is gone).
    """
    cache: dict[str, list] = {}

    def block(ref: PemRef) -> bytes:
        if ref.path not in cache:
            data = (Path(root) / ref.path).read_bytes()
            cache[ref.path] = split_pem(data, what=ref.path, der_hint=_DER_HINT)
        blocks = cache[ref.path]
        if ref.index >= len(blocks):
            raise BadInputError(f"{ref.path} changed while it was imported (block {ref.index + 1} is gone); "
                                "run the import again", Reason.BAD_INPUT)
        return blocks[ref.index].data

    chain = b"\n".join(block(r) for r in bundle.chain) or None
    return block(bundle.leaf), block(bundle.key) if bundle.key else None, chain


def import_found(svc: Services, root: str | Path, bundle: FoundBundle, *, origin: Origin | str = Origin.UPLOADED,
                 level: Level | str = Level.DV, brand: str = OWN_BRAND, owner: str | None = None,
                 passphrase: bytes | str | None = None, actor: str = "cli:import-dir",
                 source: str | None = None) -> BundleReport:
    """Import one found bundle in its own transaction (`importing.import_bundle`, UP-3).

    Returns:
        IMPORTED with the new id; SKIPPED with the existing id when the inventory already holds
        this certificate (same fingerprint); REFUSED with UP-3's reason and message (nothing stored).

    Raises:
        CertpilotError: an environment failure (vault, database) that is no fault of the bundle.
    """
    from certpilot.operations.importing import import_bundle

    base = {"files": _files_of(bundle), "common_name": bundle.common_name,
            "fingerprint_sha256": bundle.fingerprint_sha256, "source": source}
    try:
        cert_pem, key_pem, chain_pem = bundle_pems(root, bundle)
        result = import_bundle(svc, cert_pem=cert_pem, key_pem=key_pem, chain_pem=chain_pem, origin=origin,
                               level=level, brand=brand, owner=owner, actor=actor, passphrase=passphrase)
    except RefusedError as exc:
        if exc.refusal.reason is Reason.DUPLICATE:
            return replace(skipped(bundle, known_fingerprints(svc, [bundle]).get(bundle.fingerprint_sha256)),
                           source=source)
        return BundleReport(BulkOutcome.REFUSED, reason=exc.refusal.reason.value, rule=exc.refusal.rule or "UP-3",
                            message=exc.refusal.message, **base)
    except BadInputError as exc:
        return BundleReport(BulkOutcome.REFUSED, reason=(exc.reason or Reason.BAD_INPUT).value, rule="UP-3",
                            message=exc.message, **base)
    except OSError as exc:
        return BundleReport(BulkOutcome.REFUSED, reason=Reason.BAD_INPUT.value, rule="UP-3",
                            message=f"a file of this bundle cannot be read any more ({exc.strerror})", **base)
    return BundleReport(BulkOutcome.IMPORTED, certificate_id=result.certificate.id,
                        warnings=tuple(w.message for w in result.warnings), **base)


def import_directory(svc: Services, directory: str | Path, *, origin: Origin | str = Origin.UPLOADED,
                     level: Level | str = Level.DV, brand: str = OWN_BRAND, owner: str | None = None,
                     passphrase: bytes | str | None = None, actor: str = "cli:import-dir",
                     progress: Callable[[int, int], None] | None = None) -> BulkReport:
    """Import every bundle of a folder, one transaction each (see the module); idempotent.

    Args:
        svc: the services (store, vault: keys are sealed in the one the workers open).
        directory: the folder; its files are only read.
        origin, level, brand, owner: what every certificate of the folder is recorded as.
        passphrase: the passphrase of encrypted keys.
        actor: who imports, for the audit log.
        progress: called with (bundles done, bundles found) after each batch of bundles.

    Raises:
        BadInputError: the folder does not exist.
        CertpilotError: an environment failure (vault, database): the bundles before it stay imported.
    """
    found = discover(directory, passphrase=passphrase)
    reports = list(found.refused)
    done = 0
    for start in range(0, len(found.bundles), _BATCH):
        batch = found.bundles[start:start + _BATCH]
        reports += import_batch(svc, found.directory, batch, origin=origin, level=level, brand=brand, owner=owner,
                                passphrase=passphrase, actor=actor)
        done += len(batch)
        if progress is not None:
            progress(done, len(found.bundles))
    return BulkReport(source=found.directory, reports=tuple(reports), ignored=found.ignored)


def import_batch(svc: Services, root: str | Path, bundles: Iterable[FoundBundle], *,
                 origin: Origin | str = Origin.UPLOADED, level: Level | str = Level.DV, brand: str = OWN_BRAND,
                 owner: str | None = None, passphrase: bytes | str | None = None,
                 actor: str = "cli:import-dir") -> list[BundleReport]:
    """Import found bundles one transaction each (`import_found`); those whose certificate the
    inventory already holds are skipped first, in one query, without reading their files."""
    bundles = list(bundles)
    known = known_fingerprints(svc, bundles)
    return [skipped(b, known[b.fingerprint_sha256]) if b.fingerprint_sha256 in known else
            import_found(svc, root, b, origin=origin, level=level, brand=brand, owner=owner, passphrase=passphrase,
                         actor=actor) for b in bundles]


def known_fingerprints(svc: Services, bundles: Iterable[FoundBundle]) -> dict[str, str]:
    """{fingerprint: certificate id} of the bundles whose certificate the inventory holds already."""
    from certpilot.store.inventory_queries import ids_by_fingerprint

    with svc.session(readonly=True) as s:
        return ids_by_fingerprint(s, (b.fingerprint_sha256 for b in bundles))


def skipped(bundle: FoundBundle, certificate_id: str | None) -> BundleReport:
    """UP-3 DUPLICATE as a bulk outcome: the certificate is in the inventory already; nothing changed."""
    return BundleReport(BulkOutcome.SKIPPED, _files_of(bundle), common_name=bundle.common_name,
                        fingerprint_sha256=bundle.fingerprint_sha256, certificate_id=certificate_id,
                        reason=Reason.DUPLICATE.value, rule="UP-3",
                        message="already in the inventory (same fingerprint): nothing changed")


def _files_of(bundle: FoundBundle) -> tuple[str, ...]:
    return bundle.files + tuple(dict.fromkeys(r.path for r in bundle.chain if r.path not in bundle.files)) + (
        (bundle.key.path,) if bundle.key and bundle.key.path not in bundle.files else ())
