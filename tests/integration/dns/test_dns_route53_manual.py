"""Route 53 (moto) specifics and the manual provider's instructions (DV-3)."""

from __future__ import annotations

import uuid

import pytest

from certpilot.adapters.dns.manual import ManualActionRequired, ManualDns, ManualRecord
from certpilot.adapters.dns.route53 import Route53Provider
from certpilot.core.errors import PermanentError, Reason, RefusedError

pytestmark = pytest.mark.servers


@pytest.fixture
def r53(moto_server):
    client = moto_server.client("route53")
    zone = f"z{uuid.uuid4().hex[:8]}.example.test"
    zone_id = client.create_hosted_zone(Name=zone, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    return client, zone, zone_id


def test_route53_by_zone_id_and_by_lookup(r53):
    client, zone, zone_id = r53
    by_id = Route53Provider(client, hosted_zone_id=zone_id, first_delay=0.01)
    by_lookup = Route53Provider(client, first_delay=0.01)
    fqdn = f"_acme-challenge.www.{zone}"
    assert by_id.zone_for(fqdn) == zone == by_lookup.zone_for(fqdn)
    by_id.present(fqdn, "a")
    by_lookup.present(fqdn, 'b "quoted" \\ value')
    assert sorted(by_lookup.values(fqdn)) == ['a', 'b "quoted" \\ value']
    by_lookup.cleanup(fqdn, "a")
    assert by_id.values(fqdn) == ['b "quoted" \\ value']
    by_id.cleanup(fqdn, 'b "quoted" \\ value')
    assert by_id.values(fqdn) == []
    names = [r["Name"] for r in client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]]
    assert f"{fqdn}." not in names


def test_route53_name_outside_every_zone_is_permanent(r53):
    client, _, _ = r53
    with pytest.raises(PermanentError, match=r"^no Route 53 hosted zone of this account holds x\.nowhere\.invalid"):
        Route53Provider(client).present("x.nowhere.invalid", "v")


def test_route53_unknown_zone_id_is_permanent(r53):
    client, _, _ = r53
    with pytest.raises(PermanentError, match=r"^Route 53 refused reading the hosted zone \(NoSuchHostedZone"):
        Route53Provider(client, hosted_zone_id="/hostedzone/ZNOTTHERE").present("x.example.test", "v")


def test_dv3_manual_dns_gives_the_exact_record_and_never_writes(bind_server, unique_label):
    """DV-3: no write access: present() asks a human for one exact record and writes nothing."""
    fqdn = f"_acme-challenge.{unique_label}.example.test"
    p = ManualDns(bind_server.nameservers, zones=["example.test"], ttl=300)
    with pytest.raises(ManualActionRequired) as info:
        p.present(fqdn, "tok-123")
    assert info.value.records == (ManualRecord(fqdn, "TXT", "tok-123", 300, "add"),)
    assert info.value.records[0].zone_line == f'{fqdn}. 300 IN TXT "tok-123"'
    assert str(info.value) == f'Add this record at your DNS host: {fqdn}. 300 IN TXT "tok-123"'
    assert bind_server.txt(fqdn) == set()
    p.cleanup(fqdn, "tok-123")  # nothing served: nothing to ask


def test_dv3_manual_wait_visible_deadline(bind_server, unique_label):
    """DV-3/DV-7: waiting for the human's record ends with RECORD_NOT_VISIBLE at the deadline."""
    p = ManualDns(bind_server.nameservers, zones=["example.test"])
    with pytest.raises(RefusedError) as info:
        p.wait_visible(f"_acme-challenge.{unique_label}.example.test", "v", timeout=0.2)
    assert info.value.refusal.reason is Reason.RECORD_NOT_VISIBLE
    bind_server.update("example.test", add=[(f"_acme-challenge.{unique_label}.example.test", "TXT", '"v"')])
    assert p.wait_visible(f"_acme-challenge.{unique_label}.example.test", "v", timeout=2) < 0.5
    with pytest.raises(ManualActionRequired, match=r"^Remove this record at your DNS host \(validation is over\)"):
        p.cleanup(f"_acme-challenge.{unique_label}.example.test", "v")


def test_manual_without_any_server_is_permanent():
    with pytest.raises(PermanentError, match="no authoritative server is known"):
        ManualDns([]).wait_visible("_acme-challenge.x.example.test", "v", timeout=0.1)


def _canonical(rrset):
    """An RRset as AWS compares it: name, type, TTL and the values as a set (order does not matter)."""
    if rrset is None:
        return None
    return (rrset["Name"].rstrip("."), rrset["Type"], rrset.get("TTL"),
            sorted(r["Value"] for r in rrset.get("ResourceRecords", [])))


class StrictRoute53:
    """moto's Route 53 with the batch semantics AWS documents and moto lacks: a batch is applied
    atomically, a DELETE must match the stored set exactly and a CREATE must find none, else the
    whole batch fails with InvalidChangeBatch (moto checks DELETEs against its change history and
    CREATEs before the batch's DELETEs). The old read-modify-write UPSERT loses values here."""

    _lock = __import__("threading").Lock()

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def change_resource_record_sets(self, HostedZoneId, ChangeBatch):  # noqa: N803 - boto3's names
        from botocore.exceptions import ClientError

        with self._lock:
            for change in ChangeBatch["Changes"]:
                rrset = change["ResourceRecordSet"]
                page = self._client.list_resource_record_sets(HostedZoneId=HostedZoneId, StartRecordName=rrset["Name"],
                                                              StartRecordType="TXT", MaxItems="1")
                stored = next((r for r in page["ResourceRecordSets"]
                               if r["Name"].rstrip(".") == rrset["Name"].rstrip(".") and r["Type"] == "TXT"), None)
                stale = (change["Action"] == "DELETE" and _canonical(stored) != _canonical(rrset)) or \
                        (change["Action"] == "CREATE" and stored is not None and
                         not any(c["Action"] == "DELETE" for c in ChangeBatch["Changes"]))
                if stale:
                    raise ClientError({"Error": {"Code": "InvalidChangeBatch", "Message": "values do not match"}},
                                      "ChangeResourceRecordSets")
            # Applied as one change to moto's store: moto checks a CREATE before it applies the DELETE of
            # the same batch (it would refuse the swap), so DELETE + CREATE of one set becomes one UPSERT.
            actions = {c["Action"]: c["ResourceRecordSet"] for c in ChangeBatch["Changes"]}
            if set(actions) == {"DELETE", "CREATE"}:
                ChangeBatch = {"Changes": [{"Action": "UPSERT", "ResourceRecordSet": actions["CREATE"]}]}
            return self._client.change_resource_record_sets(HostedZoneId=HostedZoneId, ChangeBatch=ChangeBatch)


def test_route53_concurrent_values_for_one_name_are_all_kept(moto_server):
    """Issue 15: six orders' values written to one name at once (read-modify-write lost some): each
    is one atomic DELETE-exact + CREATE batch, read again and retried when another writer won."""
    import threading
    import uuid

    from certpilot.adapters.dns.route53 import Route53Provider

    client = moto_server.client("route53")
    zone = f"cas-{uuid.uuid4().hex[:8]}.example.org"
    zone_id = client.create_hosted_zone(Name=zone, CallerReference=zone)["HostedZone"]["Id"]
    fqdn = f"_acme-challenge.{zone}"
    values = [f"value-{i}" for i in range(6)]
    errors = []
    start = threading.Barrier(len(values))

    def write(v):
        try:
            provider = Route53Provider(StrictRoute53(moto_server.client("route53")), hosted_zone_id=zone_id,
                                       first_delay=0.01)
            start.wait(10)
            provider.present(fqdn, v)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    provider = Route53Provider(StrictRoute53(client), hosted_zone_id=zone_id, first_delay=0.01)
    assert errors == [] and sorted(provider.values(fqdn)) == values
    for v in values[:3]:
        provider.cleanup(fqdn, v)
    assert sorted(provider.values(fqdn)) == values[3:]
    for v in values[3:]:
        provider.cleanup(fqdn, v)
    assert provider.values(fqdn) == []
