"""DV-7 checks against a real BIND: CAA before anything else, record visibility with a deadline."""

from __future__ import annotations

import threading
import time

import pytest

from certpilot.adapters.dns.checks import (
    authoritative_servers,
    caa_refusal,
    caa_rrset,
    check_visible,
    find_zone,
    resolver_for,
    wait_until_visible,
)
from certpilot.adapters.dns.delegation import DelegatingProvider, delegation_target
from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
from certpilot.core.errors import PermanentError, Reason, RefusedError
from certpilot.core.validation import CaaRecord
from tests.servers.acme import OTHER_CA_IDENTIFIER, PEBBLE_CA_IDENTIFIER

pytestmark = pytest.mark.servers
PEBBLE = (PEBBLE_CA_IDENTIFIER,)


@pytest.fixture
def resolver(bind_server):
    return resolver_for(bind_server.nameservers)


def test_dv7_caa_rrset_found_by_climbing(resolver):
    """DV-7: a name below a CAA record uses its parent's RRset (RFC 8659 tree climbing)."""
    owner, records = caa_rrset("a.b.caa-forbid.example.test", resolver)
    assert owner == "caa-forbid.example.test"
    assert records == [CaaRecord(0, "issue", OTHER_CA_IDENTIFIER)]
    assert caa_rrset("www.example.test", resolver) == (None, [])


@pytest.mark.parametrize("names, expected", [
    (["www.example.test"], None),                                  # no CAA anywhere up the tree
    (["caa-allow.example.test"], None),                            # issue "pebble.test"
    (["deep.www.caa-allow.example.test"], None),                   # climbs to caa-allow
    (["www.example.test", "caa-forbid.example.test"],
     'CAA at caa-forbid.example.test allows only otherca.example to issue (issue) for caa-forbid.example.test; '
     'add `0 issue "pebble.test"` at caa-forbid.example.test or remove the CAA records that exclude pebble.test.'),
    (["*.caa-allow.example.test"],                                 # issuewild wins for wildcards
     'CAA at caa-allow.example.test allows only otherca.example to issue (issuewild) for *.caa-allow.example.test; '
     'add `0 issuewild "pebble.test"` at caa-allow.example.test or remove the CAA records that exclude '
     'pebble.test.'),
])
def test_dv7_caa_against_bind(resolver, names, expected):
    """DV-7: CAA records that do not allow the CA refuse, naming the record and the fix."""
    refusal = caa_refusal(names, PEBBLE, resolver)
    if expected is None:
        assert refusal is None
    else:
        assert refusal is not None and refusal.reason is Reason.CAA_FORBIDS and refusal.rule == "DV-7"
        assert refusal.message == expected


def test_dv7_caa_added_by_update_takes_effect(bind_server, resolver, unique_label):
    """DV-7: a CAA record added at the apex of a name forbids the CA at once (no cache in between)."""
    name = f"{unique_label}.example.test"
    assert caa_refusal([name], PEBBLE, resolver) is None
    bind_server.update("example.test", add=[(name, "CAA", '0 issue ";"')])
    refusal = caa_refusal([name], PEBBLE, resolver)
    assert refusal is not None and refusal.message.startswith(f"CAA at {name} allows no CA at all to issue")


def test_dv7_record_not_visible_within_deadline(bind_server):
    """DV-7: a missing record refuses with RECORD_NOT_VISIBLE once the deadline passes, not later."""
    t0 = time.monotonic()
    with pytest.raises(RefusedError) as info:
        wait_until_visible("_acme-challenge.missing.example.test", "nope", bind_server.nameservers, timeout=0.4)
    elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed < 0.9
    refusal = info.value.refusal
    assert refusal.reason is Reason.RECORD_NOT_VISIBLE and refusal.rule == "DV-7"
    assert refusal.message.startswith(
        f'the TXT record _acme-challenge.missing.example.test. "nope" is not served by 127.0.0.1:{bind_server.port} '
        "after 0.")


def test_dv7_record_becomes_visible_while_waiting(bind_server, unique_label):
    """DV-7: the wait returns as soon as the authoritative server serves the value."""
    fqdn = f"_acme-challenge.{unique_label}.example.test"
    timer = threading.Timer(0.2, bind_server.update, args=("example.test",),
                            kwargs={"add": [(fqdn, "TXT", '"later"')]})
    timer.start()
    try:
        waited = wait_until_visible(fqdn, "later", bind_server.nameservers, timeout=5)
    finally:
        timer.join()
    assert 0.2 <= waited < 1.5
    assert check_visible(fqdn, "later", bind_server.nameservers) is None


def test_dv7_unanswering_server_counts_as_not_visible(bind_server):
    from tests.servers.base import free_udp_tcp_port

    dead = ("127.0.0.1", free_udp_tcp_port())
    refusal = check_visible("_acme-challenge.x.example.test", "v", [*bind_server.nameservers, dead], timeout=0.2)
    assert refusal is not None and f"127.0.0.1:{dead[1]}" in refusal.message


def test_zone_and_authoritative_servers(resolver):
    assert find_zone("_acme-challenge.www.example.test", resolver) == "example.test"
    assert authoritative_servers("example.test", resolver) == [("127.0.0.1", 53)]


def test_pl5_delegation_detected_and_followed(bind_server, resolver, unique_label):
    """PL-5: an _acme-challenge CNAME into a zone a provider writes is a delegation; others are not."""
    delegated = f"_acme-challenge.{unique_label}.example.test"
    plain = f"_acme-challenge.{unique_label}-plain.example.test"
    bind_server.update("example.test", add=[(delegated, "CNAME", f"{unique_label}.acme-delegate.test.")])
    writer = Rfc2136Provider(bind_server.host, bind_server.port, zones=["acme-delegate.test"],
                             keyname=bind_server.tsig_name, secret=bind_server.tsig_secret)
    p = DelegatingProvider([writer], resolver, allow_direct=False)
    assert delegation_target(delegated, resolver) == f"{unique_label}.acme-delegate.test"
    assert delegation_target(plain, resolver) is None
    assert p.is_delegated(delegated) and not p.is_delegated(plain)
    assert p.is_delegated("_acme-challenge.delegated.example.test")  # the static one of the test zone
    assert p.zone_for(delegated) == "acme-delegate.test" and p.zone_for(plain) is None
    with pytest.raises(PermanentError, match="has no _acme-challenge CNAME delegation"):
        p.present(plain, "v")
    p.present(delegated, "via-cname")
    assert bind_server.txt(f"{unique_label}.acme-delegate.test") == {"via-cname"}
    p.cleanup(delegated, "via-cname")
    assert bind_server.txt(f"{unique_label}.acme-delegate.test") == set()


def test_delegation_to_a_zone_nobody_writes(bind_server, resolver, unique_label):
    fqdn = f"_acme-challenge.{unique_label}.example.test"
    bind_server.update("example.test", add=[(fqdn, "CNAME", "somewhere.readonly.test.")])
    writer = Rfc2136Provider(bind_server.host, bind_server.port, zones=["acme-delegate.test"],
                             keyname=bind_server.tsig_name, secret=bind_server.tsig_secret)
    with pytest.raises(PermanentError) as info:
        DelegatingProvider([writer], resolver).present(fqdn, "v")
    assert str(info.value) == (f"{fqdn} is delegated by CNAME to somewhere.readonly.test, but no configured DNS "
                               "provider writes that zone; configure one for it or fix the CNAME.")
