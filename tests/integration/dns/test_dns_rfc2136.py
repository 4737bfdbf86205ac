"""RFC 2136 against a real BIND: errors mapped to retry or not, each with a sentence."""

from __future__ import annotations

import base64
import time

import pytest

from certpilot.adapters.dns.checks import wait_until_visible
from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
from certpilot.core.errors import PermanentError, TransientError
from tests.servers.base import free_port

pytestmark = pytest.mark.servers

WRONG_SECRET = base64.b64encode(b"\x01" * 32).decode()


def provider(bind, **overrides) -> Rfc2136Provider:
    kwargs = dict(zones=["example.test", "acme-delegate.test", "readonly.test"], keyname=bind.tsig_name,
                  secret=bind.tsig_secret, algorithm=bind.tsig_algorithm, timeout=2)
    kwargs.update(overrides)
    return Rfc2136Provider(kwargs.pop("server", bind.host), kwargs.pop("port", bind.port), **kwargs)


def test_wrong_tsig_secret_is_permanent_with_a_sentence(bind_server, unique_label):
    p = provider(bind_server, secret=WRONG_SECRET)
    with pytest.raises(PermanentError) as info:
        p.present(f"_acme-challenge.{unique_label}.example.test", "v")
    msg = str(info.value)
    assert msg.startswith(f"the DNS server 127.0.0.1:{bind_server.port} rejected the TSIG signature of the "
                          f"update of _acme-challenge.{unique_label}.example.test (")
    assert "check the TSIG key name certpilot-test-key., its secret and algorithm" in msg
    assert WRONG_SECRET not in msg and bind_server.tsig_secret not in msg  # keys never leak
    assert bind_server.txt(f"_acme-challenge.{unique_label}.example.test") == set()


def test_unknown_key_name_is_permanent(bind_server, unique_label):
    p = provider(bind_server, keyname="nobody-key.")
    with pytest.raises(PermanentError, match=r"check the TSIG key name nobody-key\."):
        p.present(f"_acme-challenge.{unique_label}.example.test", "v")


def test_zone_without_update_policy_refuses_permanently(bind_server, unique_label):
    with pytest.raises(PermanentError) as info:
        provider(bind_server).present(f"_acme-challenge.{unique_label}.readonly.test", "v")
    assert str(info.value) == (
        f"the DNS server 127.0.0.1:{bind_server.port} refused the add of TXT "
        f"_acme-challenge.{unique_label}.readonly.test (REFUSED): check the TSIG key name "
        "certpilot-test-key. and the zone's update-policy (it must grant this key TXT records under the zone)")


def test_name_outside_the_zones_is_permanent(bind_server):
    with pytest.raises(PermanentError, match=r"^_acme-challenge\.www\.other\.invalid is in none of the zones"):
        provider(bind_server).present("_acme-challenge.www.other.invalid", "v")


def test_unreachable_server_is_transient(bind_server):
    p = provider(bind_server, port=free_port())  # nothing listens there
    with pytest.raises(TransientError, match=r"^could not reach the DNS server 127\.0\.0\.1:\d+ to update"):
        p.present("_acme-challenge.x.example.test", "v")


def test_bad_base64_secret_is_refused_without_echo(bind_server):
    with pytest.raises(PermanentError) as info:
        provider(bind_server, secret="not base64 !!!")
    assert "not base64 !!!" not in str(info.value)


def test_update_and_visibility_round_trip(bind_server, unique_label, record_property):
    """DV-7: one update + visibility at the authoritative server; measured for the report."""
    p = provider(bind_server)
    fqdn = f"_acme-challenge.{unique_label}.example.test"
    t0 = time.perf_counter()
    p.present(fqdn, "round-trip")
    wait_until_visible(fqdn, "round-trip", bind_server.nameservers, timeout=5)
    elapsed = time.perf_counter() - t0
    p.cleanup(fqdn, "round-trip")
    record_property("update_visibility_seconds", round(elapsed, 4))
    record_property("bind_start_seconds", round(bind_server.started_in, 4))
    print(f"\nBIND start {bind_server.started_in * 1000:.0f} ms; update+visible {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0
