"""`certpilot issuers`, `certpilot policy ID --issuer/--fallback`, `certpilot revoke` (issue 13),
black-box on the local defaults (the embedded private CA is the one configured issuer)."""

from __future__ import annotations


def test_issuer_named_per_certificate_from_the_cli(cp):
    cid = cp("demo", "--json").json["certificates"][0]["id"]
    listed = cp("issuers", "--json")
    assert listed.code == 0
    assert [(i["ref"], i["default"], i["revokes"]) for i in listed.json] == [("private-ca", True, True)]
    assert cp("issuers", cid, "--json").json["issuer_source"] == "default"

    set_ = cp("policy", cid, "--issuer", "private-ca", "--json")
    assert set_.code == 0
    assert (set_.json["issuer"], set_.json["issuer_source"], set_.json["fallbacks"]) == ("private-ca", "set", [])
    assert cp("issuers", cid, "--json").json["issuer_source"] == "set"

    unknown = cp("policy", cid, "--issuer", "acme/nowhere", "--json")
    assert unknown.code == 3
    assert unknown.json["error"]["reason"] == "UnknownIssuer" and "acme/nowhere" in unknown.json["error"]["message"]
    assert cp("policy", cid, "--fallback", "acme/nowhere").code == 3
    assert cp("issuers", cid, "--json").json["fallbacks"] == []  # nothing written


def test_revoke_refusals_from_the_cli(cp):
    listing = cp("demo", "--json").json["certificates"]
    cid = listing[0]["id"]
    bad = cp("revoke", cid, "--reason", "because", "--json")
    assert bad.code == 4 and "keyCompromise" in bad.json["error"]["message"]
    # a demo certificate was imported, not applied for through certpilot: revoked at its own CA
    foreign = cp("revoke", cid, "--reason", "superseded", "--json")
    assert foreign.code == 3 and foreign.json["error"]["reason"] == "NotRevocable"
    assert "imported" in foreign.json["error"]["message"]
    assert cp("revoke", "no-such-id", "--reason", "superseded").code == 4
