"""Pure rules of the fleet probe (findings, told once by key) and of discovery (endpoint specs,
an nginx configuration's TLS server names)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certpilot.core.discovery import nginx_tls_servers, parse_endpoint
from certpilot.core.errors import BadInputError
from certpilot.core.fleet import Finding, judge_endpoint
from certpilot.core.verification import Endpoint, ProbeOutcome, ProbeResult, TrustFault

NOW = datetime(2026, 6, 1, tzinfo=UTC)
EP = Endpoint("127.0.0.1", 443, "www.example.test")
A, B = "a" * 64, "b" * 64


def served(fp=A, *, days=90, fault=TrustFault.NONE, outcome=ProbeOutcome.OK):
    return ProbeResult(EP, outcome, fingerprint=fp, not_after=NOW + timedelta(days=days), names=("www.example.test",),
                       fault=fault)


@pytest.mark.parametrize("probe, expected, finding, key", [
    (served(), A, Finding.OK, None),
    (served(B), A, Finding.DRIFT, f"drift:{B}"),
    (served(B), None, Finding.OK, None),                                          # nothing expected: no drift
    (served(fault=TrustFault.INCOMPLETE, outcome=ProbeOutcome.INCOMPLETE_CHAIN), A, Finding.BROKEN,
     f"broken:incomplete:{A}"),
    (served(days=5), A, Finding.EXPIRING, f"expiring:{A}"),
    (served(days=-2, fault=TrustFault.EXPIRED_LEAF, outcome=ProbeOutcome.EXPIRED), A, Finding.EXPIRING, f"expiring:{A}"),
    (served(B, days=5), A, Finding.DRIFT, f"drift:{B}"),                          # drift before expiry
    (ProbeResult(EP, ProbeOutcome.REFUSED, error="connection refused"), A, Finding.UNREACHABLE, "unreachable:refused"),
])
def test_fleet_finding_most_urgent_first_with_its_key(probe, expected, finding, key):
    """Fleet probe: unreachable, drift, broken chain, expiring, ok — the key names what was served,
    so a second replacement is a new finding (told again) and the same one is not."""
    found = judge_endpoint(probe, expected_fingerprint=expected, now=NOW, warn_within=timedelta(days=14))
    assert (found.finding, found.key) == (finding, key)
    assert found.reportable is (finding is not Finding.OK)


def test_fleet_certificate_being_deployed_is_not_drift():
    """Mid-deployment the target still names the old certificate (DEP-1 moves it once verified):
    the new one served then is not drift; anything else still is."""
    mid = judge_endpoint(served(B), expected_fingerprint=A, now=NOW, warn_within=timedelta(days=14),
                         deploying=frozenset({B}))
    other = judge_endpoint(served("c" * 64), expected_fingerprint=A, now=NOW, warn_within=timedelta(days=14),
                           deploying=frozenset({B}))
    assert (mid.finding, other.finding) == (Finding.OK, Finding.DRIFT)


def test_fleet_drift_sentence_says_what_is_served_and_what_to_do():
    found = judge_endpoint(served(B), expected_fingerprint=A, now=NOW, warn_within=timedelta(days=14))
    assert found.detail.startswith(f"127.0.0.1:443 (SNI www.example.test) serves certificate {B[:16]}…")
    assert f"not the inventory's {A[:16]}…" in found.detail and "`certpilot import`" in found.detail


@pytest.mark.parametrize("spec, endpoint", [
    ("www.example.test", Endpoint("www.example.test", 443, None)),
    ("10.0.0.5:8443", Endpoint("10.0.0.5", 8443, None)),
    ("10.0.0.5:8443/shop.example.test", Endpoint("10.0.0.5", 8443, "shop.example.test")),
    ("lb.example.test/api.example.test", Endpoint("lb.example.test", 443, "api.example.test")),
    ("[::1]:9443/v6.example.test", Endpoint("::1", 9443, "v6.example.test")),
])
def test_discovery_endpoint_specs(spec, endpoint):
    assert parse_endpoint(spec) == endpoint


@pytest.mark.parametrize("spec", ["", ":443", "host:0", "host:99999", "host:https"])
def test_discovery_bad_endpoint_spec_is_bad_input(spec):
    with pytest.raises(BadInputError):
        parse_endpoint(spec)


def test_discovery_nginx_tls_server_names():
    """Only TLS server blocks (listen ... ssl, or 443) count; each listen × name is an endpoint;
    regex, `_` and wildcard names are skipped with why; comments and quotes are understood."""
    conf = """
    http {
      server { listen 80; server_name plain.example.test; }        # not TLS
      server {
        listen 443 ssl;  listen [::]:8443 ssl http2;
        server_name a.example.test "b.example.test";  # two names
      }
      server { listen 10.1.2.3:9443 ssl; server_name c.example.test _ *.w.example.test ~^re; }
      server { listen 443; server_name d.example.test; location / { return 200; } }
    }"""
    got = nginx_tls_servers(conf, connect="192.0.2.1")
    assert got.endpoints == (
        Endpoint("192.0.2.1", 443, "a.example.test"), Endpoint("192.0.2.1", 443, "b.example.test"),
        Endpoint("192.0.2.1", 8443, "a.example.test"), Endpoint("192.0.2.1", 8443, "b.example.test"),
        Endpoint("10.1.2.3", 9443, "c.example.test"), Endpoint("192.0.2.1", 443, "d.example.test"))
    assert [s.split(" ")[0] for s in got.skipped] == ["_", "*.w.example.test", "~^re"]
