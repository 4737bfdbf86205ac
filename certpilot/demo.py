"""The demo: a small, real inventory to look at (`certpilot up`, `certpilot demo`, `make run`).

`config/demo_inventory.toml` describes certificates relative to "now". `load_demo` makes a demo
CA with `cryptography`, signs one real certificate per entry, and imports each through
`operations.importing.import_certificate`, exactly as an operator's upload would be (keys sealed
in the vault). The CA's own key is sealed in the vault too and only its id and certificate are
kept under ``$CERTPILOT_HOME/demo-ca.json``, so a later load reuses it. Loading is idempotent: a
certificate whose names and origin are already in the inventory is skipped, and the demo quota is
ledger entries with fixed idempotency keys.

`run_demo` loads the demo, then returns the inventory with derived statuses and a renewal preview
of a due certificate (`certpilot demo` prints it; `certpilot up` runs it before serving). Both
run it with the `Services` they built (`certpilot.runtime`): the demo's keys are sealed in that
vault, the one the flow runs renewing and deploying them open keys with.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certpilot.core.models import CertType, KeyAlgorithm, Level, Origin, Spec

DEMO_FILE = "demo_inventory.toml"
CA_FILE = "demo-ca.json"
CA_AAD = b"certpilot-demo-ca"


@dataclass(frozen=True)
class DemoCertificate:
    """One entry of the demo inventory file."""

    label: str
    names: list[str]
    origin: Origin
    level: Level
    brand: str
    key_algorithm: KeyAlgorithm
    not_before_days_ago: int
    not_after_in_days: int
    owner: str | None


@dataclass(frozen=True)
class DemoInventory:
    """The parsed demo file: CA settings, certificates, quota and managed credits."""

    ca_common_name: str
    ca_valid_days: int
    certificates: list[DemoCertificate]
    quota: list[tuple[Spec, int]]
    managed: int


@dataclass
class DemoLoad:
    """What one load did: ids imported now, ids already present, ledger entries written."""

    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    """Ids of the demo certificates found already in the inventory."""

    @property
    def ids(self) -> list[str]:
        """Every demo certificate's id: found present, then imported now."""
        return [*self.present, *self.imported]


def read_demo_inventory(path: Path) -> DemoInventory:
    """Parse the demo inventory TOML at `path`.

    Raises:
        BadInputError: the file is missing or an entry is malformed (names the entry).
    """
    from certpilot.core.errors import BadInputError

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadInputError(f"cannot read the demo inventory {path}: {exc}; restore config/{DEMO_FILE}") from exc
    certs = []
    for i, entry in enumerate(data.get("certificate", [])):
        try:
            certs.append(
                DemoCertificate(
                    label=str(entry.get("label", f"cert{i}")),
                    names=[str(n) for n in entry["names"]],
                    origin=Origin(entry.get("origin", "official")),
                    level=Level(entry.get("level", "DV")),
                    brand=str(entry.get("brand", "DigiCert")),
                    key_algorithm=KeyAlgorithm(entry.get("key_algorithm", "EC-P256")),
                    not_before_days_ago=int(entry["not_before_days_ago"]),
                    not_after_in_days=int(entry["not_after_in_days"]),
                    owner=entry.get("owner"),
                )
            )
        except (KeyError, ValueError) as exc:
            raise BadInputError(f"demo certificate #{i + 1} in {path} is malformed ({exc}); fix that entry") from exc
    quota = [
        (Spec(brand=q["brand"], level=Level(q["level"]), cert_type=CertType(q.get("type", "single"))), int(q["count"]))
        for q in data.get("quota", [])
    ]
    ca = data.get("ca", {})
    return DemoInventory(
        ca_common_name=str(ca.get("common_name", "certpilot demo CA")),
        ca_valid_days=int(ca.get("valid_days", 3650)),
        certificates=certs,
        quota=quota,
        managed=int(data.get("managed", {}).get("count", 0)),
    )


def _private_key(alg: KeyAlgorithm):
    if alg is KeyAlgorithm.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if alg is KeyAlgorithm.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    bits = {KeyAlgorithm.RSA2048: 2048, KeyAlgorithm.RSA3072: 3072, KeyAlgorithm.RSA4096: 4096}[alg]
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(common_name: str, now: datetime, valid_days: int):
    """A self-signed demo CA: returns ``(private_key, certificate)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certpilot demo")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=800))
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_leaf(ca_key, ca_cert, names: list[str], not_before: datetime, not_after: datetime,
               alg: KeyAlgorithm = KeyAlgorithm.EC_P256):
    """Sign a leaf certificate for `names` with the demo CA: returns ``(private_key, certificate)``.

    The first name is the common name; all names are in the subjectAltName.
    """
    key = _private_key(alg)
    cn = names[0]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def demo_ca_pem(home: Path) -> bytes | None:
    """The demo CA's certificate (PEM) a previous load recorded under `home`, or None: what the
    demo sites' probes trust besides certpilot's private CA."""
    try:
        return json.loads((home / CA_FILE).read_text())["cert_pem"].encode()
    except (OSError, ValueError, KeyError):
        return None


def _load_or_make_ca(session, home: Path, inv: DemoInventory, now: datetime, vault):
    """The demo CA: reopened from the vault when a previous load sealed it, else made and sealed."""
    from certpilot.store.repository import Repository

    repo = Repository(session)
    meta_path = home / CA_FILE
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        try:
            key_pem = vault.open(repo.get_sealed_key(meta["key_id"]), CA_AAD)
            return (serialization.load_pem_private_key(key_pem, None),
                    x509.load_pem_x509_certificate(meta["cert_pem"].encode()))
        except Exception:  # noqa: BLE001 - another database or master key: make a new CA
            pass
    key, cert = make_ca(inv.ca_common_name, now, inv.ca_valid_days)
    sealed = vault.seal(_key_pem(key), CA_AAD)
    from certpilot.crypto.pem import public_key_fingerprint

    key_id = repo.put_key(sealed, KeyAlgorithm.EC_P256, public_key_fingerprint(cert.public_key()))
    home.mkdir(parents=True, exist_ok=True)
    meta = {"key_id": key_id, "cert_pem": cert.public_bytes(serialization.Encoding.PEM).decode()}
    # The file holds no secret (the key stays sealed in the database), but it is ours alone.
    fd = os.open(meta_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh)
    return key, cert


def _present(session, inv: DemoInventory) -> dict[tuple[tuple[str, ...], str], str]:
    """{(sorted names, origin): id} of the demo's top-level certificates already in the inventory,
    looked up by their names (start-up reads the demo's rows, not the whole inventory)."""
    from certpilot.store.inventory_queries import top_level_named

    found = top_level_named(session, [n for c in inv.certificates for n in c.names])
    return {(tuple(sorted(names)), origin): cid for cid, names, origin in found}


def load_demo(session, *, now: datetime, home: Path, config_dir: Path, vault) -> DemoLoad:
    """Load the demo inventory and demo quota into the store (idempotent).

    Args:
        session: an open store session (the caller commits).
        now: the moment the relative dates of the demo file are anchored to (aware UTC).
        home: ``$CERTPILOT_HOME``, where the demo CA's metadata is kept.
        config_dir: directory holding ``demo_inventory.toml``.
        vault: the key vault of the services the demo runs with (`Services.vault`): the demo's
            keys are sealed where the flow runs that renew and deploy them open keys.

    Raises:
        BadInputError: the demo file is malformed.
    """
    from certpilot.operations.importing import import_certificate
    from certpilot.operations.orders import add_managed, add_quota

    inv = read_demo_inventory(config_dir / DEMO_FILE)
    result = DemoLoad()
    present = _present(session, inv)
    todo = [c for c in inv.certificates if (tuple(sorted(c.names)), c.origin.value) not in present]
    result.skipped = [c.label for c in inv.certificates if c not in todo]
    result.present = [present[(tuple(sorted(c.names)), c.origin.value)] for c in inv.certificates if c not in todo]
    if todo:
        ca_key, ca_cert = _load_or_make_ca(session, home, inv, now, vault)
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        # X.509 times have whole seconds: round `now` up, so "20 days" shows as 20 days left at `now`.
        anchor = now.replace(microsecond=0) + timedelta(seconds=1 if now.microsecond else 0)
        for c in todo:
            key, cert = issue_leaf(ca_key, ca_cert, c.names, anchor - timedelta(days=c.not_before_days_ago),
                                   anchor + timedelta(days=c.not_after_in_days), c.key_algorithm)
            imported = import_certificate(
                session, cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key),
                chain_pem=ca_pem, origin=c.origin, level=c.level, brand=c.brand, owner=c.owner,
                now=now, actor="demo", vault=vault,
            )
            result.imported.append(imported.certificate.id)
            result.warnings.extend(f"{c.label}: {w.message}" for w in imported.warnings)
    for spec, count in inv.quota:
        add_quota(session, spec, count, now=now, idempotency_key=f"demo:quota:{spec.key}")
    if inv.managed:
        add_managed(session, inv.managed, now=now, idempotency_key="demo:managed")
    return result


def pick_due(views: list[Any]) -> Any | None:
    """The demo's showcase: the first official certificate that is due and renewable by its type."""
    from certpilot.core.models import Status

    for v in views:
        if v.origin is Origin.OFFICIAL and v.status is Status.EXPIRING_SOON and v.cert_type is not CertType.MULTI:
            return v
    return None


@dataclass
class DemoReport:
    """What `run_demo` found: the load, the inventory views and the preview of a due certificate."""

    load: DemoLoad
    inventory: list[Any]
    preview: Any | None
    balances: Any
    at: datetime | None = None
    """The time the demo was anchored to and the statuses derived at."""


def run_demo(svc, *, now: datetime | None = None, settings=None, years: int = 1) -> DemoReport:
    """Load the demo into the services' inventory, then list it and preview a renewal.

    Args:
        svc: the `certpilot.runtime.Services` to run with (their store, vault, policy, clock):
            what `certpilot demo` and `certpilot up` built.
        now: the time the demo is anchored to and statuses are derived at (aware UTC);
            default the services' clock.
        settings: `certpilot.settings.Settings` (home and config directory); default the
            process settings.
        years: plan length for the preview (1, 2 or 3).

    Returns:
        A `DemoReport`; the CLI prints it as tables or JSON.
    """
    from certpilot.operations import inventory, orders
    from certpilot.settings import get_settings

    now = now or svc.now()
    settings = settings or get_settings()
    with svc.session() as session:
        load = load_demo(session, now=now, home=settings.home, config_dir=settings.config_dir, vault=svc.vault)
    with svc.session(readonly=True) as session:
        # The demo's certificates and their renewals, read by id: as fast on a full inventory.
        views = inventory.views_of(session, load.ids, now=now, policy=svc.policy)
    due = pick_due(views)
    preview = orders.preview(svc, due.id, years=years, now=now) if due else None
    return DemoReport(load=load, inventory=views, preview=preview, balances=orders.quota(svc), at=now)
