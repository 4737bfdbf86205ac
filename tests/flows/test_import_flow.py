"""The `import` flow (UP-3, CSR-5, issue 15): the key comes from a Secret block, which is deleted
once the key is sealed in the vault; the certificate and its chain are plain parameters."""

from __future__ import annotations

import importlib
import os

import pytest

from certpilot import runtime as rt
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.store.db import ensure_schema

pytestmark = pytest.mark.flows
pki = importlib.import_module("tests.fixtures.import.pki")


def test_csr5_import_flow_deletes_the_secret_block_after_sealing(prefect_harness, tmp_path):
    from prefect.blocks.system import Secret

    from flows.admin import import_certificate

    url = f"sqlite:///{tmp_path / 'import.db'}"
    ensure_schema(url)
    svc = rt.local_services(database_url=url, vault=KeyVault(LocalMasterKey(os.urandom(32))),
                            clock=lambda: pki.NOW)
    case = pki.good(["flow-import.example.com"])
    Secret(value=case.key.decode()).save("import-key-test", overwrite=True)
    with rt.use(svc):
        result = import_certificate(cert_pem=case.cert.decode(), chain_pem=case.chain.decode(),
                                    key_secret_block="import-key-test", origin="uploaded", brand="DigiCert",
                                    owner="ops@example.com")
    assert result.certificate.key_held and result.key_id
    with pytest.raises(ValueError):
        Secret.load("import-key-test")
