"""The CAS issuer's decisions over CAS's answers (a fake CAS API with the same `call` shape as
`AlibabaApi`; the wire format is proved against the emulator in tests/flows/test_alibaba_e2e.py),
and the client's error mapping (never the AccessKey secret)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from certpilot.adapters.alibaba.client import AlibabaApi, AlibabaConnection
from certpilot.adapters.dns.manual import ManualActionRequired
from certpilot.adapters.http01.manual import ManualFileRequired
from certpilot.adapters.issuers.alibaba_cas import AlibabaCasIssuer, CasProduct, order_id_of, ref_of
from certpilot.adapters.issuers.base import Application, OrderStatus
from certpilot.core.errors import BadInputError, PermanentError, Reason, RefusedError, TransientError

SECRET = "s3cr3t-AccessKey-Secret-value"


class FakeCas:
    """Answers by method name; records the calls."""

    def __init__(self, **answers):
        self.answers = answers
        self.calls: list[tuple[str, object]] = []

    def call(self, what, method, request=None):
        self.calls.append((method, request))
        answer = self.answers[method]
        return answer(request) if callable(answer) else answer


class Zone:
    """A DnsProvider holding one zone."""

    name = "fake"

    def __init__(self, zone):
        self.zone, self.values_at = zone, {}

    def zone_for(self, fqdn):
        return self.zone if fqdn == self.zone or fqdn.endswith("." + self.zone) else None

    def present(self, fqdn, value):
        self.values_at.setdefault(fqdn, set()).add(value)

    def cleanup(self, fqdn, value):
        self.values_at.get(fqdn, set()).discard(value)

    def values(self, fqdn):
        return sorted(self.values_at.get(fqdn, ()))


def state(kind, **fields):
    base = dict(type=kind, validate_type="DNS", domain="www.example.cn", record_domain=None, record_type="TXT",
                record_value=None, uri=None, content=None, certificate=None)
    return SimpleNamespace(**{**base, **fields})


def issuer(api, providers=()):
    return AlibabaCasIssuer(api, CasProduct("digicert-free-1-free", "DigiCert/DV/single"), dns_providers=providers)


def app(*names):
    return Application(names=names, csr_pem=b"-----BEGIN CERTIFICATE REQUEST-----\n")


def test_el1_cas_issuer_refuses_a_multi_name_application_before_asking_cas():
    api = FakeCas()
    with pytest.raises(RefusedError) as err:
        issuer(api).submit(app("a.example.cn", "b.example.cn"))
    assert err.value.refusal.reason is Reason.CA_POLICY and err.value.refusal.rule == "EL-1"
    assert api.calls == []


def test_dv2_domain_verify_record_written_at_the_zone_relative_name():
    """CAS names the record relative to the zone (`_dnsauth.www`): written as `_dnsauth.www.example.cn`."""
    zone = Zone("example.cn")
    answers = iter([state("domain_verify", record_domain="_dnsauth.www", record_value="tok-1"), state("process")])
    api = FakeCas(describe_certificate_state=lambda _r: next(answers))
    result = issuer(api, [zone]).advance(ref_of(42), app("www.example.cn"))
    assert zone.values("_dnsauth.www.example.cn") == ["tok-1"]
    assert result.status is OrderStatus.PENDING and "review" in result.detail  # CA-1: the review, nothing held
    assert api.calls[0][1].order_id == 42


def test_dv3_domain_verify_without_a_provider_shows_the_record_to_a_human():
    api = FakeCas(describe_certificate_state=state("domain_verify", domain="example.cn", record_domain="_dnsauth",
                                                   record_value="tok-2"))
    with pytest.raises(ManualActionRequired) as err:
        issuer(api).advance(ref_of(7), app("example.cn"))
    (record,) = err.value.records
    assert (record.fqdn, record.type, record.value) == ("_dnsauth.example.cn", "TXT", "tok-2")


def test_dv3_file_validation_is_shown_with_cas_url_and_content():
    api = FakeCas(describe_certificate_state=state(
        "domain_verify", validate_type="FILE", uri="http://www.example.cn/.well-known/pki-validation/fileauth.txt",
        content="2026abc"))
    with pytest.raises(ManualFileRequired) as err:
        issuer(api).advance(ref_of(8), app("www.example.cn"))
    (f,) = err.value.files
    assert (f.url, f.path, f.content) == ("http://www.example.cn/.well-known/pki-validation/fileauth.txt",
                                          "/.well-known/pki-validation/fileauth.txt", "2026abc")


@pytest.mark.parametrize("kind, status", [("payed", OrderStatus.PENDING), ("process", OrderStatus.PENDING),
                                          ("verify_fail", OrderStatus.INVALID), ("certificate", OrderStatus.VALID)])
def test_ca2_cas_states_map_onto_order_states(kind, status):
    api = FakeCas(describe_certificate_state=state(kind, content="the organisation could not be verified"))
    result = issuer(api).poll(ref_of(9))
    assert result.status is status
    if kind == "verify_fail":
        assert "the organisation could not be verified" in result.detail


def test_pay3_package_quota_is_what_cas_counts():
    api = FakeCas(describe_package_state=SimpleNamespace(total_count=20, used_count=17, product_code="p"))
    assert issuer(api).service_quota() == {"DigiCert/DV/single": 3}


def test_order_reference_round_trip_and_bad_reference():
    assert order_id_of(ref_of(123)) == 123
    with pytest.raises(BadInputError):
        order_id_of("acme:https://x")


class SdkError(Exception):
    def __init__(self, code, status, message, retry_after=None):
        super().__init__(message)
        self.code, self.status_code, self.message, self.retry_after = code, status, message, retry_after


def _api_raising(exc):
    client = SimpleNamespace(describe_package_state_with_options=lambda _req, _rt: (_ for _ in ()).throw(exc))
    return AlibabaApi(client, "CAS", AlibabaConnection("LTAI5tKeyId", secret=lambda: SECRET))


@pytest.mark.parametrize("exc, kind, retry", [
    (SdkError("Throttling.User", 400, "flow control", retry_after=1500), TransientError, 1.5),
    (SdkError("InternalError", 503, "busy"), TransientError, None),
    (SdkError("InvalidCsr", 400, f"bad CSR; your key {SECRET} was echoed"), PermanentError, None),
    (ConnectionError("refused"), TransientError, None),
])
def test_errors_mapped_transient_or_permanent_never_echoing_the_secret(exc, kind, retry):
    with pytest.raises(kind) as err:
        _api_raising(exc).call("reading the package", "describe_package_state", object())
    assert SECRET not in str(err.value) and SECRET not in repr(err.value)
    assert getattr(err.value, "retry_after", None) == retry
    assert "LTAI5tKeyId" in repr(AlibabaConnection("LTAI5tKeyId", secret=lambda: SECRET))
    assert SECRET not in repr(AlibabaConnection("LTAI5tKeyId", secret=lambda: SECRET))


def test_pay3_service_count_is_the_truth_for_its_specifications_only():
    """A CA service's count replaces the local one for its own specifications: the change is the
    difference (either way); other specifications and equal counts are left alone."""
    from certpilot.core.models import Balances
    from certpilot.core.payment import service_sync_deltas

    held = Balances(quota={"DigiCert/DV/single": 5, "GlobalSign/OV/single": 2, "DigiCert/DV/wildcard": 1})
    assert service_sync_deltas(held, {"DigiCert/DV/single": 3, "DigiCert/DV/wildcard": 1,
                                      "Alibaba Cloud/DV/single": 4}) == {"DigiCert/DV/single": -2,
                                                                         "Alibaba Cloud/DV/single": 4}
