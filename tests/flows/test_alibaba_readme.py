"""The README's Alibaba Cloud path, as written: its `setup --config` file and its commands, run
against the local emulator (the file's AccessKey id and endpoints pointed at it, nothing else
changed) on a Prefect test server holding the blocks.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = [pytest.mark.servers, pytest.mark.flows]


def _section() -> str:
    text = README.read_text()
    start = text.index("## Alibaba Cloud")
    return text[start:text.index("\n## ", start + 1)]


def _run(capsys, *args: str) -> tuple[int, str]:
    from certpilot.cli import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines

    monkeypatch.setenv("CERTPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CERTPILOT_DATABASE_URL", raising=False)
    monkeypatch.setenv("CERTPILOT_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
    get_settings.cache_clear()
    reset_engines()
    yield tmp_path
    get_settings.cache_clear()
    reset_engines()


def test_pay3_readme_alibaba_config_and_commands_work_as_written(alibaba, prefect_harness, cli_home, monkeypatch, capsys):
    """`certpilot setup --config` with the README's file writes the account block and a configuration
    naming it as issuer and DNS provider; the runtime the workers build from them has the CAS
    issuer and AliDNS; `sync alibaba`, `quota` and `target add --kind alibaba-deployment-job` do
    what the README says. The AccessKey secret is in none of their outputs."""
    import blocks as b
    from certpilot import runtime as rt
    from certpilot.adapters.dns.alidns import AliDnsProvider
    from certpilot.adapters.issuers.alibaba_cas import AlibabaCasIssuer
    from certpilot.setup import write_config_file
    from certpilot.setup_config import read_config_file

    section = _section()
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    commands = [line.partition("#")[0].strip() for line in re.search(r"```\n(certpilot .*?)```", section, re.S)
                .group(1).splitlines() if line.strip()]
    now = datetime.now(UTC)
    alibaba.add_zone("example.cn")
    alibaba.add_package("digicert-free-1-free", total=10, used=3, brand="DigiCert")
    seeded = alibaba.seed_certificate(["shop.example.cn"], product_code="digicert-free-1-free", brand="DigiCert",
                                      not_before=(now - timedelta(days=100)).isoformat(),
                                      not_after=(now + timedelta(days=200)).isoformat(),
                                      resources=[{"domain": "shop.example.cn", "cloud_product": "SLB"}])
    # The README's file, pointed at the emulator: its AccessKey id, its endpoints over plain http.
    body = toml.replace("LTAI5tExampleKeyId", alibaba.access_key_id).replace(
        '[alibaba.main]\n', f'[alibaba.main]\ncas_endpoint = "{alibaba.endpoint}"\n'
                            f'dns_endpoint = "{alibaba.endpoint}"\nprotocol = "http"\n')
    config = cli_home / "alibaba.toml"
    config.write_text(body)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", alibaba.access_key_secret)
    secret = alibaba.access_key_secret
    try:
        write_config_file(read_config_file(config))
        account = b.AlibabaCloudBlock.load("main")
        assert account.access_key_secret.get_secret_value() == secret and secret not in repr(account)
        svc = rt.from_blocks()
        assert isinstance(svc.issuers["alibaba-cas/main"], AlibabaCasIssuer)
        assert any(isinstance(p, AliDnsProvider) for p in svc.dns_providers)

        sync, quota, _scan, target = commands
        code, out = _run(capsys, *shlex.split(sync)[1:], "--json")
        assert code == 0, out
        report = json.loads(out)
        assert report["quota"] == {"DigiCert/DV/single": 7} and report["issuer"] == "alibaba-cas/main"
        (imported,) = report["imported"]
        alibaba.add_package("digicert-free-1-free", total=10, used=6, brand="DigiCert")  # spent in the console
        code, out = _run(capsys, *shlex.split(quota)[1:], "--json")
        assert code == 0 and json.loads(out)["quota"]["DigiCert/DV/single"] == 4, out  # PAY-3: CAS's count now
        (resource,) = seeded["resource_ids"]
        argv = shlex.split(target.replace("CRT", imported["certificate_id"]).replace("101", str(resource))
                           .replace("--endpoint shop.example.cn",
                                    f"--endpoint 127.0.0.1:{alibaba.tls_port}/shop.example.cn"))[1:]
        code, out = _run(capsys, *argv, "--json")
        assert code == 0, out
        assert json.loads(out)["kind"] == "alibaba-deployment-job"
        for text in (body, out):
            assert secret not in text
    finally:
        for cls, name in ((b.CertpilotConfigBlock, "default"), (b.AlibabaCloudBlock, "main")):
            try:
                cls.delete(name)
            except Exception:  # noqa: BLE001 - not written: nothing to remove
                pass
