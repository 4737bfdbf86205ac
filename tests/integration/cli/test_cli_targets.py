"""`certpilot target add|list|show|remove|test`, `deployments`, `export` against a real nginx:
a bad definition is refused naming its field with nothing stored (DEP-1); a good one is stored,
shown, tested by a real TLS probe; an export writes 0600 and prints no key (DEP-4, CSR-5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.servers.certs import make_leaf
from tests.servers.nginx import VHost

pytestmark = pytest.mark.servers
NAME = "shop.example.test"


@pytest.fixture
def served(cp, tmp_path, nginx_factory, nginx_ca):
    """A certificate imported through the CLI and served by a fresh nginx: (id, server, leaf)."""
    now = datetime.now(UTC)
    leaf = make_leaf(nginx_ca, [NAME], not_before=now - timedelta(days=300), not_after=now + timedelta(days=20))
    cert, key, chain = tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "chain.pem"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    chain.write_bytes(b"".join(leaf.chain_pems))
    r = cp("import", "--cert", cert, "--key", key, "--chain", chain, "--origin", "official", "--json")
    assert r.code == 0, r.out + r.err
    server = nginx_factory([VHost(NAME, leaf.fullchain_pem, leaf.key_pem)])
    return r.json["id"], server, leaf


def _nginx_args(server, cert=None, key=None):
    return ["--kind", "nginx", "--file", f"{cert or server.cert_path(NAME)}:{key or server.key_path(NAME)}",
            "--check-cmd", " ".join(server.check_argv()), "--reload-cmd", " ".join(server.reload_argv()),
            "--endpoint", f"127.0.0.1:{server.port}/{NAME}"]


def test_dep1_bad_target_definitions_are_refused_naming_the_field_and_nothing_is_stored(cp, served, tmp_path,
                                                                                        nginx_ca):
    """DEP-1: a missing file, a directory that is not there, an `nginx -t` that fails, an unknown
    endpoint host, a malformed ARN: each refused (exit 4) with the field named; nothing stored."""
    cid, server, _leaf = served
    cases = [
        (_nginx_args(server, cert=tmp_path / "nope.pem"), "files[0].cert", "does not exist"),
        (["--kind", "files", "--directory", str(tmp_path / "no" / "such" / "dir")], "directory", "does not exist"),
        ([*_nginx_args(server)[:-2], "--endpoint", "no-such-host.invalid:443"], "endpoints[0].host", "unknown host"),
        (["--kind", "aws-acm", "--arn", "not-an-arn"], "certificate_arn", "is not an ACM certificate ARN"),
        (["--kind", "nginx"], "files", "is required"),
        ([*_nginx_args(server), "--host", "Web 3"], "host", "is not a work queue name"),
        ([*_nginx_args(server), "--trust", str(tmp_path / "no-ca.pem")], "trust", "cannot be read"),
        ([*_nginx_args(server), "--trust", f"private-ca,{tmp_path / 'c.key'}"], "trust", "holds no PEM certificate"),
    ]
    for args, field, why in cases:
        r = cp("target", "add", cid, *args, "--json")
        assert r.code == 4, (args, r.out, r.err)
        assert f"{field}: " in r.json["error"]["message"] and why in r.json["error"]["message"], r.json
    # nginx -t fails: the served key no longer belongs to the certificate.
    stranger = make_leaf(nginx_ca, ["stranger.example.test"])
    server.key_path(NAME).write_bytes(stranger.key_pem)
    r = cp("target", "add", cid, *_nginx_args(server), "--json")
    assert r.code == 4 and "check_argv: " in r.json["error"]["message"], r.json
    assert "key values mismatch" in r.json["error"]["message"]
    assert "PRIVATE KEY" not in r.out
    assert cp("target", "list", "--json").json == {"targets": []}


def test_dep1_dep2_ver1_add_show_test_list_remove_and_deployments(cp, served):
    """DEP-1: a good nginx target is stored and shown; `target test` checks it (nginx -t) and
    probes its endpoint for the certificate (VER-1); DEP-2: `deployments ID` lists the
    certificate's tasks (none before a renewal); a removed target is no longer listed."""
    cid, server, leaf = served
    r = cp("target", "add", cid, *_nginx_args(server), "--name", "shop nginx", "--json")
    assert r.code == 0, r.out + r.err
    tid = r.json["id"]
    assert (r.json["kind"], r.json["name"], r.json["host"], r.json["verifiable"]) == ("nginx", "shop nginx", None,
                                                                                       True)
    assert r.json["probed_at"] == [f"127.0.0.1:{server.port}/{NAME}"]
    shown = cp("target", "show", tid, "--json").json
    assert shown["config"]["files"] == [{"cert": str(server.cert_path(NAME)), "key": str(server.key_path(NAME))}]
    tested = cp("target", "test", tid, "--json")
    assert tested.code == 0, tested.out
    assert tested.json["ok"] is True and tested.json["problems"] == []
    (probe,) = tested.json["probes"]
    assert (probe["serves"], probe["detail"]) == (True, "serves it")
    assert f"127.0.0.1:{server.port}" in probe["endpoint"] and NAME in probe["endpoint"]
    assert [t["id"] for t in cp("target", "list", "--certificate", cid, "--json").json["targets"]] == [tid]
    human = cp("target", "show", tid)
    assert "verified at: 127.0.0.1:" in human.out
    assert cp("deployments", cid, "--json").json == {"certificate_id": cid, "deployments": []}
    # A target with nothing to probe is shown "not verifiable", never verified (VER-1).
    r = cp("target", "add", cid, "--kind", "files", "--directory", str(server.prefix / "bundle"),
           "--not-verifiable", "--json")
    assert r.code == 0, r.out + r.err
    assert (r.json["verifiable"], r.json["probed_at"]) == (False, [])
    assert "not verifiable" in cp("target", "show", r.json["id"]).out
    assert cp("target", "remove", tid, "--json").json["removed"] is True
    assert [t["id"] for t in cp("target", "list", "--json").json["targets"]] == [r.json["id"]]
    assert cp("target", "show", tid, "--json").code == 4


def test_dep4_csr5_export_pem_and_pfx_key_only_on_request_0600_never_printed(cp, served, tmp_path, monkeypatch):
    """DEP-4: `export` writes the full chain (PEM) or a PKCS#12 (PFX) for a manual install, 0600;
    the key only with --include-key, into the file, never on the output (CSR-5); never overwrites."""
    cid, _server, leaf = served
    pem = tmp_path / "out.pem"
    r = cp("export", cid, "--out", pem, "--json")
    assert (r.code, r.json["with_key"]) == (0, False)
    assert pem.read_bytes() == leaf.fullchain_pem and pem.stat().st_mode & 0o777 == 0o600
    assert cp("export", cid, "--out", pem, "--json").code == 4  # never overwrites
    with_key = tmp_path / "with-key.pem"
    r = cp("export", cid, "--out", with_key, "--include-key")
    assert r.code == 0 and "PRIVATE KEY" not in r.out + r.err
    assert with_key.read_bytes() == leaf.fullchain_pem + leaf.key_pem
    monkeypatch.setenv("PFX_PASS", "s3cret")
    pfx = tmp_path / "out.pfx"
    r = cp("export", cid, "--out", pfx, "--format", "pfx", "--include-key", "--password-env", "PFX_PASS", "--json")
    assert r.code == 0 and "s3cret" not in r.out
    key, cert, extra = pkcs12.load_key_and_certificates(pfx.read_bytes(), b"s3cret")
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    assert cert.public_bytes(Encoding.PEM) == leaf.cert_pem and len(extra) == 1
    assert key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()) == leaf.key_pem
    assert pfx.stat().st_mode & 0o777 == 0o600
