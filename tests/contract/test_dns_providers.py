"""One contract for every DnsProvider: RFC 2136 (BIND), Route 53 (moto), delegation (a real CNAME
in BIND), manual DNS (a "human" adds records through a TSIG update) and AliDNS (the Alibaba Cloud
emulator, whose DNS responder serves what the API wrote).

Visibility is checked where the CA would look: at the authoritative server (BIND) for the DNS
providers, and through the Route 53 API for Route 53 (moto serves no DNS).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from certpilot.adapters.dns.alidns import AliDnsProvider
from certpilot.adapters.dns.base import DnsProvider
from certpilot.adapters.dns.checks import resolver_for, txt_values_at, wait_until_visible
from certpilot.adapters.dns.delegation import DelegatingProvider
from certpilot.adapters.dns.manual import ManualActionRequired, ManualDns, ManualRecord
from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
from certpilot.adapters.dns.route53 import Route53Provider

pytestmark = pytest.mark.servers

PROVIDERS = ["rfc2136", "route53", "delegated", "manual", "alidns"]


@dataclass
class Harness:
    """A provider plus how to read what the world sees and how a human acts."""

    provider: DnsProvider
    fqdn: str
    zone: str
    served: Callable[[str], set[str]]
    wait_visible: Callable[[str, str], None]
    human: Callable[[ManualRecord], None] | None = None

    def act(self, op: str, value: str) -> None:
        """present/cleanup; when a human is asked, the human acts and the provider is asked again."""
        try:
            getattr(self.provider, op)(self.fqdn, value)
        except ManualActionRequired as exc:
            assert self.human is not None, f"{self.provider.name} asked for a human: {exc}"
            for record in exc.records:
                self.human(record)
            getattr(self.provider, op)(self.fqdn, value)  # re-entry: now it returns quietly


def _bind_served(bind):
    def served(fqdn: str) -> set[str]:
        return txt_values_at(fqdn, bind.nameservers[0]) or set()
    return served


def _bind_wait(bind):
    def wait(fqdn: str, value: str) -> None:
        wait_until_visible(fqdn, value, bind.nameservers, timeout=5)
    return wait


def _rfc2136(bind, zones):
    return Rfc2136Provider(bind.host, bind.port, zones=zones, keyname=bind.tsig_name, secret=bind.tsig_secret,
                           algorithm=bind.tsig_algorithm, timeout=5)


@pytest.fixture(scope="module")
def route53_zone(moto_server):
    client = moto_server.client("route53")
    zone = f"r53-{uuid.uuid4().hex[:8]}.example.test"
    hz = client.create_hosted_zone(Name=zone, CallerReference=uuid.uuid4().hex)
    return client, zone, hz["HostedZone"]["Id"]


@pytest.fixture(params=PROVIDERS)
def harness(request, unique_label) -> Harness:
    kind = request.param
    if kind == "route53":
        client, zone, zone_id = request.getfixturevalue("route53_zone")
        provider = Route53Provider(client, zone_name=zone, first_delay=0.01)
        fqdn = f"_acme-challenge.{unique_label}.{zone}"

        def served(name: str) -> set[str]:
            return set(provider.values(name))

        def wait(name: str, value: str) -> None:
            assert value in served(name)  # moto is INSYNC at once; present() waited for it
        return Harness(provider, fqdn, zone, served, wait)
    if kind == "alidns":
        emulator = request.getfixturevalue("alibaba")
        zone = "alidns-contract.test"
        emulator.add_zone(zone)
        provider = AliDnsProvider(emulator.connection().alidns())

        def served(name: str) -> set[str]:
            return txt_values_at(name, emulator.nameservers[0]) or set()

        def wait(name: str, value: str) -> None:
            wait_until_visible(name, value, emulator.nameservers, timeout=5)
        return Harness(provider, f"_acme-challenge.{unique_label}.{zone}", zone, served, wait)

    bind = request.getfixturevalue("bind_server")
    fqdn = f"_acme-challenge.{unique_label}.example.test"
    if kind == "rfc2136":
        return Harness(_rfc2136(bind, ["example.test"]), fqdn, "example.test", _bind_served(bind), _bind_wait(bind))
    if kind == "delegated":
        target = f"{unique_label}.example.test.acme-delegate.test."
        bind.update("example.test", add=[(fqdn, "CNAME", target)])
        provider = DelegatingProvider([_rfc2136(bind, ["acme-delegate.test"])], resolver_for(bind.nameservers),
                                      allow_direct=False)
        # An authoritative server does not chase a CNAME into another zone: like a CA's resolver,
        # read the value at the CNAME's target (found through the real CNAME in BIND).
        served, wait = _bind_served(bind), _bind_wait(bind)
        return Harness(provider, fqdn, "acme-delegate.test", lambda n: served(provider.record_name(n)),
                       lambda n, v: wait(provider.record_name(n), v))
    assert kind == "manual"

    def human(record: ManualRecord) -> None:
        # The operator follows the one-line instruction at "their DNS host".
        quoted = f'"{record.value}"'
        if record.action == "add":
            bind.update("example.test", add=[(record.fqdn, record.type, quoted)])
        else:
            bind.update("example.test", delete=[(record.fqdn, record.type, quoted)])
    provider = ManualDns(bind.nameservers, zones=["example.test"])
    return Harness(provider, fqdn, "example.test", _bind_served(bind), _bind_wait(bind), human)


def test_is_a_dns_provider(harness):
    assert isinstance(harness.provider, DnsProvider)
    assert harness.provider.name in {"rfc2136", "route53", "delegated", "manual", "alidns"}


def test_zone_for(harness):
    assert harness.provider.zone_for(harness.fqdn) == harness.zone
    assert harness.provider.zone_for("_acme-challenge.www.elsewhere.invalid") is None


def test_present_visible_cleanup_gone(harness):
    """DV-7: the value is visible where the CA looks after present(), gone after cleanup()."""
    value = "contract-" + uuid.uuid4().hex
    harness.act("present", value)
    harness.wait_visible(harness.fqdn, value)
    assert harness.served(harness.fqdn) == {value}
    harness.act("cleanup", value)
    assert harness.served(harness.fqdn) == set()


def test_two_values_on_one_name(harness):
    """A wildcard and its base name validate through two TXT values on one name at once."""
    base, wild = "base-" + uuid.uuid4().hex, "wild-" + uuid.uuid4().hex
    harness.act("present", base)
    harness.act("present", wild)
    harness.wait_visible(harness.fqdn, wild)
    assert harness.served(harness.fqdn) == {base, wild}
    harness.act("cleanup", base)
    assert harness.served(harness.fqdn) == {wild}
    harness.act("cleanup", wild)
    assert harness.served(harness.fqdn) == set()


def test_present_twice_keeps_one_value(harness):
    value = "again-" + uuid.uuid4().hex
    harness.act("present", value)
    harness.act("present", value)
    assert harness.served(harness.fqdn) == {value}
    harness.act("cleanup", value)


def test_cleanup_of_absent_value_is_noop(harness):
    kept = "kept-" + uuid.uuid4().hex
    harness.provider.cleanup(harness.fqdn, "never-" + uuid.uuid4().hex)  # nothing there at all
    harness.act("present", kept)
    harness.provider.cleanup(harness.fqdn, "never-" + uuid.uuid4().hex)  # another value there
    assert harness.served(harness.fqdn) == {kept}
    harness.act("cleanup", kept)
