"""`certpilot discover` over a real nginx with 50 TLS server names (its own configuration file),
then `certpilot adopt` of one discovered certificate with its key."""

from __future__ import annotations

import pytest

from tests.servers.nginx import vhosts_for

pytestmark = pytest.mark.servers
NAMES = [f"site{i:02d}.disc.test" for i in range(50)]


def key_held(cid: str) -> bool:
    from certpilot.store.db import session_scope
    from certpilot.store.repository import Repository

    with session_scope() as s:
        return Repository(s).certificate_model(cid).key_held


def test_discover_nginx_config_with_50_server_names_finds_all_50_then_adopt(cp, nginx_factory, nginx_ca, tmp_path):
    """Discovery reads nginx's own configuration, probes every `server_name` of its TLS server
    blocks, and adds all 50 certificates (no key held); a second run adds none (all known); a
    bad key is refused, the right one adopted; nothing on the server changes."""
    vhosts, leaves = vhosts_for(nginx_ca, NAMES)
    server = nginx_factory(vhosts)
    before = {n: server.cert_path(n).read_bytes() for n in NAMES}

    first = cp("discover", "--nginx-config", server.conf, "--json")
    assert first.code == 0, first.err
    report = first.json
    assert (report["added"], report["known"], report["failed"]) == (50, 0, 0)
    by_name = {i["common_name"]: i for i in report["items"]}
    assert set(by_name) == set(NAMES)
    assert all(by_name[n]["fingerprint"] == leaves[n].fingerprint for n in NAMES)

    again = cp("discover", "--nginx-config", server.conf, f"127.0.0.1:{server.port}/{NAMES[0]}", "--json").json
    assert (again["added"], again["known"], again["failed"]) == (0, 51, 0)

    cid = by_name[NAMES[7]]["certificate_id"]
    assert cid in {c["id"] for c in cp("list", "--json").json["certificates"]}
    assert key_held(cid) is False

    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(leaves[NAMES[8]].key_pem)
    refused = cp("adopt", cid, "--key", wrong, "--json")
    assert refused.code == 4 and "not the key of certificate" in refused.json["error"]["message"]
    right = tmp_path / "right.pem"
    right.write_bytes(leaves[NAMES[7]].key_pem)
    assert cp("adopt", cid, "--key", right, "--json").json == {"adopted": cid}
    assert key_held(cid) is True
    assert cp("adopt", cid, "--key", right, "--json").code == 3  # held already: nothing to adopt
    assert {n: server.cert_path(n).read_bytes() for n in NAMES} == before  # discovery only reads
