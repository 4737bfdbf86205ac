"""An OV certificate due in 20 days and a private CA that reviews OV applications for five days of a
clock the test moves (CA-1, CA-2, DV-5, DV-6): shared by the review tests of a run that may not
suspend (test_pipeline_review) and of one that suspends (test_renewal_suspend)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from certpilot import runtime as rt
from certpilot.adapters.issuers.private_ca import PrivateCa, PrivateCaPolicy
from certpilot.core.models import CertType, Level, Origin, Spec
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import orders
from certpilot.operations.importing import import_certificate
from certpilot.store.db import ensure_schema, session_scope
from certpilot.store.ports import SqlPrivateCaStore
from tests.clock import Clock
from tests.servers.certs import make_ca, make_leaf


@dataclass
class OvSite:
    """What `ov_site` made: the certificate's id, the store's URL, the services and their clock."""

    cid: str
    db_url: str
    svc: Any
    clock: Clock


def ov_site(tmp_path: Path, *, name: str, quota: int, notifiers: list | None = None) -> OvSite:
    """A GlobalSign OV certificate for ov.example.test due in 20 days (no contact phone: the CA needs
    one, DV-6), `quota` OV certificates bought, and an "ov-ca" private CA reviewing for five days.

    Args:
        name: the store's file name (and the test CA's) within `tmp_path`.
        quota: OV single-domain certificates added to the quota.
        notifiers: the services' notifiers (none by default).
    """
    db_url = f"sqlite:///{tmp_path / (name + '.db')}"
    ensure_schema(db_url)
    clock = Clock()
    now = clock()
    leaf = make_leaf(make_ca(f"{name} CA"), ["ov.example.test"], not_before=now - timedelta(days=345),
                     not_after=now + timedelta(days=20))
    vault = KeyVault(LocalMasterKey(os.urandom(32)))
    with session_scope(db_url) as s:
        cid = import_certificate(s, cert_pem=leaf.cert_pem, key_pem=leaf.key_pem, chain_pem=b"".join(leaf.chain_pems),
                                 origin=Origin.OFFICIAL, level=Level.OV, brand="GlobalSign", owner="ops@example.test",
                                 now=now, vault=vault).certificate.id
        orders.add_quota(s, Spec(brand="GlobalSign", level=Level.OV, cert_type=CertType.SINGLE), quota, now=now)
    ca = PrivateCa(SqlPrivateCaStore(partial(session_scope, db_url)), vault, clock=clock,
                   policy=PrivateCaPolicy(review_delay=timedelta(days=5), validity_days=200))
    svc = rt.local_services(database_url=db_url, vault=vault, issuers={"ov-ca": ca}, clock=clock,
                            notifiers=list(notifiers or []))
    svc.poll_seconds = 0.5
    return OvSite(cid, db_url, svc, clock)
