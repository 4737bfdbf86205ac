"""`certpilot import --from certbot` against lineages made by a real certbot (PyPI) with Pebble +
BIND (issue 16): each lineage's current certificate, chain and key (sealed in the vault), its
validation method from the authenticator, its issuer from the ACME server, its hooks noted, its
nginx site as a target; certbot's files are never changed; a second run changes nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography import x509

from certpilot import runtime
from certpilot.core.deployment import TargetKind
from certpilot.core.models import ValidationMethod
from certpilot.crypto.pem import fingerprint
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import deployments
from certpilot.operations.fleet_sources import import_certbot
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository
from tests.servers.certbot import make_lineage

VAULT = KeyVault(LocalMasterKey(bytes(range(32)), source="test"))


@pytest.fixture(scope="module")
def certbot_config(tmp_path_factory, certbot_bin, pebble, bind_server):
    """Two real lineages: `shop` (ECDSA, two names, a deploy hook, renewed once: live/ points at
    version 2) and `api` (RSA); an nginx config serving shop's live files."""
    base = tmp_path_factory.mktemp("certbot")
    label = os.urandom(4).hex()
    config = make_lineage(certbot_bin, base, pebble, bind_server, name="shop",
                          domains=[f"shop-{label}.example.test", f"www.shop-{label}.example.test"],
                          extra=("--deploy-hook", "systemctl reload nginx"), renew=True)
    make_lineage(certbot_bin, base, pebble, bind_server, name="api", domains=[f"api-{label}.example.test"],
                 key_type="rsa")
    nginx = base / "nginx"
    (nginx / "sites-enabled").mkdir(parents=True)
    (nginx / "sites-enabled" / "shop.conf").write_text(
        "server {\n  listen 8443 ssl;\n  server_name " f"shop-{label}.example.test www.shop-{label}.example.test;\n"
        f"  ssl_certificate {config}/live/shop/fullchain.pem; # managed by Certbot\n"
        f"  ssl_certificate_key {config}/live/shop/privkey.pem;\n  location / {{ return 200; }}\n}}\n")
    return {"config": config, "nginx": nginx, "label": label, "pebble": pebble}


def _tree(root: Path) -> dict[str, tuple]:
    """Every file's content hash, mode and mtime, and every link's target: "never changed"."""
    out = {}
    for here, _dirs, names in os.walk(root):
        for name in names:
            p = Path(here) / name
            st = p.lstat()
            out[str(p)] = (os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest(),
                           st.st_mode, st.st_mtime_ns)
    return out


def test_import_from_certbot_real_lineages(certbot_config, tmp_path):
    config = certbot_config["config"]
    before = _tree(config)
    svc = runtime.local_services(database_url=f"sqlite:///{tmp_path / 'cb.db'}", vault=VAULT)

    report = import_certbot(svc, config, nginx_dir=certbot_config["nginx"])

    assert report.counts == {"imported": 2, "skipped": 0, "refused": 0}, report.reports
    by_name = {r.source: r for r in report.reports}
    shop, api = by_name["certbot:shop"], by_name["certbot:api"]
    pebble_host = certbot_config["pebble"].directory_url.split("/")[2]
    assert any("systemctl reload nginx" in w and "renew_hook" in w for w in shop.warnings)
    assert any(f"issuer {pebble_host}" in w and "dns-rfc2136 → validation dns-auto" in w for w in shop.warnings)
    with session_scope(svc.database_url, readonly=True) as s:
        repo = Repository(s)
        for r, name in ((shop, "shop"), (api, "api")):
            cert = repo.certificate_model(r.certificate_id)
            live = (config / "live" / name / "cert.pem").read_bytes()
            assert cert.fingerprint_sha256 == fingerprint(x509.load_pem_x509_certificate(live))
            assert cert.key_held and cert.validation_method is ValidationMethod.DNS_AUTO
            assert cert.brand == pebble_host
            row = repo.get_certificate(r.certificate_id)
            assert row.chain_pem and row.key_id
        # shop was renewed once: the current version is archive's 2 (live/ follows it)
        assert repo.get_certificate(shop.certificate_id).leaf_pem.encode() == \
            (config / "archive" / "shop" / "cert2.pem").read_bytes()
        assert sorted(repo.certificate_model(shop.certificate_id).names) == sorted(
            [f"shop-{certbot_config['label']}.example.test", f"www.shop-{certbot_config['label']}.example.test"])
        targets = deployments.targets_of(s, shop.certificate_id)
        assert [(t.kind, t.config["files"]) for t in targets] == [
            (TargetKind.NGINX, [{"cert": f"{config}/live/shop/fullchain.pem", "key": f"{config}/live/shop/privkey.pem"}])]
        assert deployments.targets_of(s, api.certificate_id) == []
    assert _tree(config) == before  # certbot's files: not one byte, mode, time or link changed

    again = import_certbot(svc, config, nginx_dir=certbot_config["nginx"])
    assert again.counts == {"imported": 0, "skipped": 2, "refused": 0}
    with session_scope(svc.database_url, readonly=True) as s:
        assert len(deployments.targets_of(s, shop.certificate_id)) == 1
    assert _tree(config) == before


def test_cli_import_from_certbot(certbot_config, tmp_path, monkeypatch, capsys):
    """`certpilot import --from certbot CONFIG_DIR --nginx-dir DIR --json`; a directory that is not
    certbot's is bad input (exit 4) naming what is missing."""
    from certpilot.cli import main
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines

    monkeypatch.setenv("CERTPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CERTPILOT_DATABASE_URL", raising=False)
    monkeypatch.setenv("CERTPILOT_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
    get_settings.cache_clear()
    reset_engines()
    try:
        capsys.readouterr()
        assert main(["import", "--from", "certbot", str(certbot_config["config"]), "--nginx-dir",
                     str(certbot_config["nginx"]), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert sorted(r["source"] for r in out["imported"]) == ["certbot:api", "certbot:shop"]
        assert main(["import", "--from", "certbot", str(tmp_path), "--json"]) == 4
        err = json.loads(capsys.readouterr().out)["error"]
        assert "renewal/" in err["message"] and err["exit_code"] == 4
    finally:
        get_settings.cache_clear()
        reset_engines()
