"""The private CA's signing policy (issue 15): name constraints from its allowed suffixes (openssl
refuses a leaf outside them), a configured CA with no suffixes signs nothing, the root key sealed
offline once the intermediate is made, and a submission killed before its reference was recorded
gets the same reference (and leaf) again, never a second certificate."""

from __future__ import annotations

import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select

from certpilot.adapters.issuers.private_ca import PrivateCa, PrivateCaPolicy, sign_csr
from certpilot.core.errors import Reason, RefusedError
from certpilot.crypto.csr import load_csr
from certpilot.crypto.keys import load_private_key, public_fingerprint
from certpilot.crypto.vault import KeyVault, OfflineKey, VaultError, key_aad
from certpilot.store.ports import SqlPrivateCaStore
from certpilot.store.tables import KeyRow
from certpilot.store.tables_issuance import PrivateCaIssuedRow, PrivateCaRow
from tests.integration.issuance.conftest import NOW
from tests.integration.issuance.test_private_ca import app_for


def make(sessions, vault, *, sink=None, **policy) -> PrivateCa:
    return PrivateCa(SqlPrivateCaStore(sessions), vault, policy=PrivateCaPolicy(**policy), clock=lambda: NOW,
                     ca_name="hardened", offline_sink=sink)


def test_el4_configured_ca_without_suffixes_signs_nothing(sessions, vault):
    ca = make(sessions, vault, demo=False)
    with pytest.raises(RefusedError) as info:
        ca.submit(app_for(["app.corp.test"]))
    assert info.value.reason is Reason.CA_POLICY
    assert "has no allowed_suffixes, so it signs nothing until they are configured" in info.value.message
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(PrivateCaIssuedRow)) == 0


def test_el4_name_constraints_and_root_sealed_offline(sessions, vault, tmp_path):
    """The intermediate carries critical NameConstraints from the suffixes; openssl verifies a leaf
    inside and refuses one outside (signed by hand with the intermediate key); the root key is
    sealed under an offline key the online vault cannot open, handed to the sink."""
    handed = {}
    ca = make(sessions, vault, allowed_suffixes=("corp.test",), demo=False,
              sink=lambda name, key_id, text: handed.update(name=name, key_id=key_id, text=text))
    ref = ca.submit(app_for(["app.corp.test"]))
    inter_pem, root_pem = ca.chain_pems()
    inter = x509.load_pem_x509_certificate(inter_pem.encode())
    nc = inter.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical and nc.value.permitted_subtrees == [x509.DNSName("corp.test")]
    with pytest.raises(RefusedError, match="does not allow app.other.test"):
        ca.submit(app_for(["app.other.test"]))
    # A leaf outside the constraints (as a compromised signer would make) fails path validation.
    with sessions() as s:
        ca_row = s.scalars(select(PrivateCaRow).where(PrivateCaRow.name == "hardened")).one()
        int_sealed, root_row = s.get(KeyRow, ca_row.intermediate_key_id), s.get(KeyRow, ca_row.root_key_id)
        root_provider, root_fp = root_row.provider, root_row.public_fingerprint
    int_key = load_private_key(vault.open(ca._store.get_sealed_key(int_sealed.id),
                                          key_aad(public_fingerprint(inter.public_key()), "ca")))
    outside = sign_csr(load_csr(app_for(["evil.other.test"]).csr_pem), inter, int_key, now=NOW, validity_days=30)
    inside = ca.fetch_chain(ref).leaf_pem
    (tmp_path / "root.pem").write_text(root_pem)
    (tmp_path / "inter.pem").write_text(inter_pem)
    (tmp_path / "in.pem").write_text(inside)
    (tmp_path / "out.pem").write_text(outside.public_bytes(Encoding.PEM).decode())
    at = str(int(NOW.timestamp()) + 60)

    def verify(name):
        return subprocess.run(["openssl", "verify", "-attime", at, "-CAfile", str(tmp_path / "root.pem"),
                               "-untrusted", str(tmp_path / "inter.pem"), str(tmp_path / name)],
                              capture_output=True, text=True)

    assert verify("in.pem").returncode == 0
    refused = verify("out.pem")
    assert refused.returncode != 0 and "permitted subtree violation" in refused.stdout + refused.stderr
    # The root: sealed by the offline provider, not openable online, openable with the handed key.
    assert root_provider == "offline" and handed["name"] == "hardened"
    sealed_root = ca._store.get_sealed_key(ca_row.root_key_id)
    with pytest.raises(VaultError, match="provider 'offline', which is not configured"):
        vault.open(sealed_root, key_aad(root_fp, "ca"))
    offline = KeyVault(OfflineKey.from_base64(handed["text"]))
    assert b"PRIVATE KEY" in offline.open(sealed_root, key_aad(root_fp, "ca"))


def test_el4_resubmitting_the_same_application_returns_the_same_leaf(sessions, vault):
    """The race: the CA kept the leaf, the caller died before recording the reference; the rerun's
    submit finds it (same reference), and no second certificate is signed."""
    ca = make(sessions, vault, allowed_suffixes=("corp.test",), demo=False)
    app = app_for(["again.corp.test"], certificate_id="crt-1")
    first = ca.submit(app)
    assert ca.submit(app) == first
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(PrivateCaIssuedRow)) == 1
    assert ca.submit(app_for(["again.corp.test"], certificate_id="crt-2")) != first
