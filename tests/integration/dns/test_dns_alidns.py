"""AliDNS as a DNS-01 provider against the Alibaba Cloud emulator: exact records, zones, throttling
retried, and a DNS-01 issuance through Pebble resolving through the emulator's DNS responder."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from cryptography import x509

from certpilot.adapters.dns.alidns import AliDnsProvider
from certpilot.adapters.dns.base import DnsProvider
from certpilot.core.errors import PermanentError, TransientError
from tasks.common import retrying
from tests.integration.dns.test_dns_pebble_e2e import fast_acme_polls, issue_through  # noqa: F401 - a fixture
from tests.servers.acme import PebbleServer, _start_or_skip, start_pebble
from tests.servers.base import stop

pytestmark = pytest.mark.servers

ZONE = "alidns.test"


@pytest.fixture
def provider(alibaba) -> AliDnsProvider:
    alibaba.add_zone(ZONE)
    return AliDnsProvider(alibaba.connection().alidns())


def txt_records(alibaba, zone: str = ZONE) -> list[tuple[str, str, str, int]]:
    return sorted((r["RR"], r["Type"], r["Value"], r["TTL"]) for r in alibaba.records(zone))


def test_is_a_dns_provider_without_secret_in_repr(alibaba, provider):
    assert isinstance(provider, DnsProvider) and provider.name == "alidns"
    assert alibaba.access_key_secret not in repr(provider)
    assert alibaba.access_key_id in repr(provider)


def test_dv2_alidns_present_and_cleanup_exact_records(alibaba, provider, unique_label):
    """DV-2: the TXT values are written as AliDNS records relative to the zone, one record per value."""
    fqdn = f"_acme-challenge.{unique_label}.{ZONE}"
    rr = f"_acme-challenge.{unique_label}"
    alibaba.add_zone("other.test")
    unrelated = AliDnsProvider(alibaba.connection().alidns(), zones=["other.test"], ttl=900)
    unrelated.present("_acme-challenge.other.test", "keep-me")

    provider.present(fqdn, "base-value")
    provider.present(fqdn, "wild-value")
    provider.present(fqdn, "base-value")  # idempotent: not added twice
    assert txt_records(alibaba) == [(rr, "TXT", "base-value", 600), (rr, "TXT", "wild-value", 600)]
    assert provider.values(fqdn) == ["base-value", "wild-value"]

    provider.cleanup(fqdn, "base-value")
    assert txt_records(alibaba) == [(rr, "TXT", "wild-value", 600)]
    provider.cleanup(fqdn, "never-there")  # absent: no-op
    provider.cleanup(fqdn, "wild-value")
    assert txt_records(alibaba) == []
    assert txt_records(alibaba, "other.test") == [("_acme-challenge", "TXT", "keep-me", 900)]


def test_apex_name_uses_at(alibaba, provider):
    provider.present(ZONE, "apex")
    assert txt_records(alibaba) == [("@", "TXT", "apex", 600)]
    provider.cleanup(ZONE, "apex")
    assert txt_records(alibaba) == []


def test_zone_for_lists_the_account_domains_once(alibaba):
    alibaba.add_zone("example.com")
    alibaba.add_zone("sub.example.com")
    provider = AliDnsProvider(alibaba.connection().alidns())
    assert provider.zone_for("_acme-challenge.www.sub.example.com") == "sub.example.com"
    assert provider.zone_for("_acme-challenge.www.example.com.") == "example.com"
    assert provider.zone_for("_acme-challenge.elsewhere.invalid") is None
    assert len(alibaba.calls("DescribeDomains")) == 1
    configured = AliDnsProvider(alibaba.connection().alidns(), zones=["example.com"])
    assert configured.zone_for("a.sub.example.com") == "example.com"
    assert len(alibaba.calls("DescribeDomains")) == 1  # configured zones: no listing


def test_name_outside_every_zone_is_permanent(provider):
    with pytest.raises(PermanentError, match="none of the AliDNS domains"):
        provider.present("_acme-challenge.www.elsewhere.invalid", "v")


def test_duplicate_answer_counts_as_done(alibaba, provider, monkeypatch):
    """A value added meanwhile (AliDNS answers DomainRecordDuplicate) is success, not an error."""
    fqdn = f"_acme-challenge.race.{ZONE}"
    provider.present(fqdn, "raced")
    monkeypatch.setattr(provider, "values", lambda _fqdn: [])  # the read happened before the other writer
    provider.present(fqdn, "raced")
    assert [c["response"].get("Code") for c in alibaba.calls("AddDomainRecord")] == [None, "DomainRecordDuplicate"]
    assert txt_records(alibaba) == [("_acme-challenge.race", "TXT", "raced", 600)]


def test_throttling_is_retried(alibaba, provider):
    fqdn = f"_acme-challenge.busy.{ZONE}"
    provider.zones()
    alibaba.fault("AddDomainRecord", code="Throttling.User", times=2, retry_after_ms=50)
    with pytest.raises(TransientError) as err:
        provider.present(fqdn, "first-try")
    assert err.value.retry_after == pytest.approx(0.05)
    retrying(lambda: provider.present(fqdn, "first-try"), first_delay=0.01)
    assert [c["status"] for c in alibaba.calls("AddDomainRecord")] == [400, 400, 200]
    assert txt_records(alibaba) == [("_acme-challenge.busy", "TXT", "first-try", 600)]


@pytest.fixture(scope="module")
def pebble_alidns(tmp_path_factory, alibaba_server) -> Iterable[PebbleServer]:
    """A Pebble resolving every name through the emulator's DNS responder (the AliDNS zones)."""
    server = _start_or_skip("pebble", start_pebble, tmp_path_factory.mktemp("pebble-alidns"), alibaba_server.dns_port)
    yield server
    stop(server.proc)


def test_dv2_alidns_dns01_issuance_through_pebble(alibaba, pebble_alidns, unique_label, fast_acme_polls):  # noqa: F811
    """DV-2: a certificate for a name and its wildcard, validated by DNS-01 records written through
    AliDnsProvider (two values on one name), which are removed afterwards."""
    zone = f"{unique_label}.alidns.test"
    alibaba.add_zone(zone)
    provider = AliDnsProvider(alibaba.connection().alidns(), zones=[zone])
    names = [zone, f"*.{zone}"]
    cert, placed = issue_through(pebble_alidns, names, provider, alibaba.nameservers)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(sans) == sorted(names)
    assert len(placed) == 2 and len({f for f, _ in placed}) == 1
    assert alibaba.records(zone) == []
    assert alibaba.txt(placed[0][0]) == set()
