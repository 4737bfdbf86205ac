"""One vault for the command line and the workers (issue 8): with a KMS `certpilot-key-vault` block,
`certpilot import` seals the key under KMS, and a flow run's task — building its services from the
same blocks — opens it. Without a `certpilot-config` block a run refuses to start, naming it.

Runs against the session's Prefect test server (PREFECT_API_URL points at it, as an operator's
shell would) and moto's KMS. The key is compared by its public half only; it is never printed.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.flows


@pytest.fixture
def fresh_runtime():
    """No services installed or cached: `runtime.services()` builds from the blocks, as on a worker."""
    from certpilot import runtime as rt

    assert rt._override is None
    rt._cached = None
    yield rt
    rt._cached = None


@pytest.fixture
def api_url(prefect_harness, monkeypatch) -> str:
    """PREFECT_API_URL of the session's test server, set in the environment like an operator's."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    monkeypatch.setenv("PREFECT_API_URL", url)
    return url


@pytest.fixture
def kms_blocks(api_url, moto_server):
    """`certpilot-key-vault/default` on a fresh moto KMS key, `certpilot-config/default` and the
    private CA it names; deleted afterwards (the Prefect server is shared by the session)."""
    from prefect_aws import AwsClientParameters, AwsCredentials
    from pydantic import SecretStr

    import blocks as b

    b.register_all()
    key_id = moto_server.client("kms").create_key(Description="certpilot test vault")["KeyMetadata"]["KeyId"]
    credentials = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key=SecretStr("testing"),
                                 region_name=moto_server.region,
                                 aws_client_parameters=AwsClientParameters(endpoint_url=moto_server.endpoint_url))
    saved = [(b.KeyVaultBlock, b.KeyVaultBlock(kms_key_id=key_id, aws_credentials=credentials)),
             (b.PrivateCaBlock, b.PrivateCaBlock()),
             (b.CertpilotConfigBlock, b.CertpilotConfigBlock(default_issuer="private-ca/default"))]
    for _cls, block in saved:
        block.save("default", overwrite=True)
    yield key_id
    for cls, _block in saved:
        cls.delete("default")


def _key_matches_certificate(certificate_id: str) -> bool:
    """Open the certificate's key as a deploy adapter would and compare its public half (CSR-5)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from certpilot import runtime as rt
    from certpilot.store.repository import Repository

    svc = rt.services()
    with svc.session(readonly=True) as s:
        key_pem = svc.key_opener()(certificate_id)
        leaf_pem = Repository(s).get_certificate(certificate_id).leaf_pem
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = serialization.load_pem_private_key(key_pem, None)
    return key.public_key().public_bytes(*spki) == \
        x509.load_pem_x509_certificate(leaf_pem.encode()).public_key().public_bytes(*spki)


def test_a_key_imported_by_the_cli_is_opened_by_a_flow_runs_task(cp, make_pem, home, monkeypatch, kms_blocks,
                                                                  fresh_runtime):
    """Issue 8: the CLI seals under the KMS vault block (no local master key exists or is made),
    and a flow run's task, with no services installed, opens the key from the same blocks."""
    from prefect import flow, task

    from certpilot.settings import get_settings
    from certpilot.store.db import session_scope
    from certpilot.store.repository import Repository

    monkeypatch.delenv("CERTPILOT_MASTER_KEY", raising=False)
    get_settings.cache_clear()
    cert, key, chain = make_pem(["kms.example.com"], "2025-01-01", "2026-01-01")
    r = cp("import", "--cert", cert, "--key", key, "--chain", chain, "--json")
    assert r.code == 0, r.out + r.err
    cid = r.json["id"]
    assert key.read_text().splitlines()[1] not in r.out + r.err
    with session_scope(readonly=True) as s:
        repo = Repository(s)
        sealed = repo.get_sealed_key(repo.get_certificate(cid).key_id)
    assert sealed.provider == "aws-kms"
    assert not (home / "master.key").exists()

    @task(persist_result=False)
    def open_key(certificate_id: str) -> bool:
        return _key_matches_certificate(certificate_id)

    @flow(name="open-imported-key", persist_result=False)
    def open_imported_key(certificate_id: str) -> bool:
        return open_key(certificate_id)

    assert open_imported_key(cid) is True
    # The task built its services from the blocks (nothing was installed): the KMS key of the block.
    assert fresh_runtime._cached.vault.provider.key_id == kms_blocks


def test_services_without_a_config_block_names_it(api_url, fresh_runtime):
    """A run with no services installed and no `certpilot-config` block refuses, naming the block
    (never a silent fallback to the embedded private CA)."""
    import blocks as b
    from certpilot.core.errors import MissingBlockError

    b.register_all()
    with pytest.raises(ValueError):
        b.CertpilotConfigBlock.load("default")
    with pytest.raises(MissingBlockError, match="certpilot-config/default"):
        fresh_runtime.services()
    assert fresh_runtime._cached is None
