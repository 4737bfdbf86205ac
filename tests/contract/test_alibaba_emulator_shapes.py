"""The Alibaba Cloud emulator speaks what the official SDK expects (CAS 2020-04-07, AliDNS 2015-01-09).

Every action certpilot uses is called through `AlibabaApi.call` with the SDK's own request
models; after each test every JSON answer the emulator logged is checked against the SDK's
response model: each field must be one the model reads (``from_map``) and have the model's type,
so an invented or misspelt field name fails here. Signature checking and error mapping
(SignatureDoesNotMatch, unknown AccessKey, throttling with retry_after) are exercised too.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
import socket
import ssl
import uuid

import pytest
from alibabacloud_alidns20150109 import models as dns_models
from alibabacloud_cas20200407 import models as cas_models
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certpilot.core.errors import PermanentError, TransientError

pytestmark = pytest.mark.servers

PRODUCT = "digicert-free-1-free"
MULTI = "digicert-multi-dv"
MODELS = {"2020-04-07": cas_models, "2015-01-09": dns_models}


# ---------------------------------------------------------------- shape checking

def _field_map(cls) -> dict[str, tuple[str, str]]:
    """JSON key → (attribute, annotation) as the model's from_map reads it."""
    src = inspect.getsource(cls.from_map)
    ann = {p.name: str(p.annotation) for p in list(inspect.signature(cls.__init__).parameters.values())[1:]}
    out = {}
    for key, attr in re.findall(r"if m\.get\('(\w+)'\) is not None:.*?self\.(\w+)\b", src, re.S):
        out.setdefault(key, (attr, ann.get(attr, "Any")))
    return out


def _type_ok(value, annotation: str, module, path: str) -> None:
    nested = re.fullmatch(r"(?:List\[)?main_models\.(\w+)\]?", annotation)
    if annotation.startswith("List[") and nested:
        assert isinstance(value, list), f"{path}: expected a list, got {value!r}"
        for i, item in enumerate(value):
            check_shape(getattr(module, nested.group(1)), item, module, f"{path}[{i}]")
    elif nested:
        assert isinstance(value, dict), f"{path}: expected an object, got {value!r}"
        check_shape(getattr(module, nested.group(1)), value, module, path)
    elif annotation == "int":
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: expected int, got {value!r}"
    elif annotation == "str":
        assert isinstance(value, str), f"{path}: expected str, got {value!r}"
    elif annotation == "bool":
        assert isinstance(value, bool), f"{path}: expected bool, got {value!r}"
    elif annotation == "List[str]":
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{path}: expected [str]"


def check_shape(cls, raw: dict, module, path: str = "") -> None:
    """Every key of `raw` is a field of model `cls` with the model's type; the model round-trips it."""
    fields = _field_map(cls)
    unknown = sorted(set(raw) - set(fields))
    assert not unknown, f"{path or cls.__name__}: fields not in the SDK model {cls.__name__}: {unknown}"
    for key, value in raw.items():
        _type_ok(value, fields[key][1], module, f"{path}.{key}" if path else key)
    back = cls().from_map(raw).to_map()
    for key, value in raw.items():
        if not isinstance(value, dict | list):
            assert back.get(key) == value, f"{path}.{key}: {value!r} does not survive the SDK model"


def check_logged_shapes(emulator) -> set[str]:
    """Check every logged answer against its SDK model; return the actions seen."""
    seen = set()
    for call in emulator.calls():
        body = call["response"]
        if call["status"] >= 400:
            assert set(body) == {"Code", "Message", "RequestId"}, body
            continue
        module = MODELS[call["version"]]
        cls = getattr(module, f"{call['action']}ResponseBody")
        check_shape(cls, body, module, call["action"])
        seen.add(call["action"])
    return seen


@pytest.fixture(autouse=True)
def _shapes_checked_after_each_test(alibaba):
    yield
    check_logged_shapes(alibaba)


def test_shape_check_fails_on_an_invented_or_mistyped_field():
    body = cas_models.DescribePackageStateResponseBody
    check_shape(body, {"TotalCount": 1, "UsedCount": 0, "IssuedCount": 0, "ProductCode": "p", "RequestId": "r"},
                cas_models)
    with pytest.raises(AssertionError, match="Total"):
        check_shape(body, {"Total": 1}, cas_models)
    with pytest.raises(AssertionError, match="expected int"):
        check_shape(body, {"TotalCount": "1"}, cas_models)
    with pytest.raises(AssertionError, match="Bogus"):
        check_shape(cas_models.ListUserCertificateOrderResponseBody,
                    {"CertificateOrderList": [{"CertificateId": 1, "Bogus": 2}]}, cas_models)


# ---------------------------------------------------------------- helpers

def csr_for(names: list[str]) -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


def key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def code_of(exc: Exception) -> str:
    m = re.search(r"\(([\w.]+)\)", str(exc))
    return m.group(1) if m else ""


@pytest.fixture
def apis(alibaba):
    conn = alibaba.connection()
    return conn.cas(), conn.alidns()


def served_certificate(alibaba, server_name: str) -> x509.Certificate:
    ctx = ssl.create_default_context(cadata=alibaba.root_pem)
    with socket.create_connection(("127.0.0.1", alibaba.tls_port), timeout=5) as sock, \
            ctx.wrap_socket(sock, server_hostname=server_name) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def state(cas, order_id):
    return cas.call("reading", "describe_certificate_state",
                    cas_models.DescribeCertificateStateRequest(order_id=order_id))


def validate_through_alidns(cas, dns, order_id, zone):
    s = state(cas, order_id)
    assert s.type == "domain_verify" and s.validate_type == "DNS" and s.record_type == "TXT"
    dns.call("adding", "add_domain_record", dns_models.AddDomainRecordRequest(
        domain_name=zone, rr=s.record_domain, type="TXT", value=s.record_value, ttl=600))
    return s


# ---------------------------------------------------------------- CAS orders

def test_package_order_dns_validation_issue_and_renewal(alibaba, apis):
    cas, dns = apis
    alibaba.add_package(PRODUCT, total=3)
    alibaba.add_zone("example.com")
    pkg = cas.call("quota", "describe_package_state", cas_models.DescribePackageStateRequest(product_code=PRODUCT))
    assert (pkg.total_count, pkg.used_count, pkg.issued_count, pkg.product_code) == (3, 0, 0, PRODUCT)

    csr, _ = csr_for(["www.example.com"])
    order = cas.call("ordering", "create_certificate_for_package_request",
                     cas_models.CreateCertificateForPackageRequestRequest(
                         product_code=PRODUCT, csr=csr, domain="www.example.com", validate_type="DNS",
                         username="Ops", phone="13800000000", email="ops@example.com", company_name="Example"))
    s = validate_through_alidns(cas, dns, order.order_id, "example.com")
    assert s.record_domain == "_dnsauth.www" and s.domain == "www.example.com"
    assert state(cas, order.order_id).type == "process"
    issued = state(cas, order.order_id)
    assert issued.type == "certificate" and issued.private_key == "" and issued.cert_id
    chain = x509.load_pem_x509_certificates(issued.certificate.encode())
    assert len(chain) == 2
    leaf = chain[0]
    root = x509.load_pem_x509_certificate(alibaba.root_pem.encode())
    leaf.verify_directly_issued_by(chain[1])
    chain[1].verify_directly_issued_by(root)
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["www.example.com"]
    assert abs((leaf.not_valid_after_utc - leaf.not_valid_before_utc) - dt.timedelta(days=365)) < dt.timedelta(
        minutes=1)
    pkg = cas.call("quota", "describe_package_state", cas_models.DescribePackageStateRequest(product_code=PRODUCT))
    assert (pkg.used_count, pkg.issued_count) == (1, 1)

    certs = cas.call("listing", "list_user_certificate_order",
                     cas_models.ListUserCertificateOrderRequest(order_type="CERT", current_page=1, show_size=10))
    item = next(c for c in certs.certificate_order_list if str(c.certificate_id) == issued.cert_id)
    assert (item.common_name, item.sans, item.status, item.source_type, item.upload, item.order_id) == (
        "www.example.com", "www.example.com", "ISSUED", "buy", False, order.order_id)
    detail = cas.call("detail", "get_user_certificate_detail",
                      cas_models.GetUserCertificateDetailRequest(cert_id=int(issued.cert_id)))
    assert detail.buy_in_aliyun is True and detail.key == "" and detail.order_id == order.order_id
    assert detail.fingerprint == leaf.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    filtered = cas.call("detail", "get_user_certificate_detail",
                        cas_models.GetUserCertificateDetailRequest(cert_id=int(issued.cert_id), cert_filter=True))
    assert filtered.cert is None and filtered.sans == "www.example.com"
    orders = cas.call("listing", "list_user_certificate_order",
                      cas_models.ListUserCertificateOrderRequest(order_type="CPACK"))
    assert [(o.order_id, o.status) for o in orders.certificate_order_list] == [(order.order_id, "ISSUED")]

    # VA-1/VA-2 seed rule: the renewal carries over the old certificate's remaining time, capped at 30 days.
    csr2, _ = csr_for(["www.example.com"])
    renewal = cas.call("renewing", "renew_certificate_order_for_package_request",
                       cas_models.RenewCertificateOrderForPackageRequestRequest(order_id=order.order_id, csr=csr2))
    assert renewal.order_id != order.order_id
    validate_through_alidns(cas, dns, renewal.order_id, "example.com")
    state(cas, renewal.order_id)
    renewed = x509.load_pem_x509_certificates(state(cas, renewal.order_id).certificate.encode())[0]
    lifetime = renewed.not_valid_after_utc - renewed.not_valid_before_utc
    assert abs(lifetime - dt.timedelta(days=395)) < dt.timedelta(minutes=1)
    pkg = cas.call("quota", "describe_package_state", cas_models.DescribePackageStateRequest(product_code=PRODUCT))
    assert (pkg.used_count, pkg.issued_count) == (2, 2)


def test_apex_record_domain_file_validation_and_review_time(alibaba, apis):
    cas, _ = apis
    alibaba.add_package(PRODUCT)
    alibaba.add_zone("example.org")
    order = cas.call("ordering", "create_certificate_for_package_request",
                     cas_models.CreateCertificateForPackageRequestRequest(
                         product_code=PRODUCT, csr=csr_for(["example.org"])[0], domain="example.org"))
    assert state(cas, order.order_id).record_domain == "_dnsauth"
    alibaba.settings(review_seconds=30)
    file_order = cas.call("ordering", "create_certificate_for_package_request",
                          cas_models.CreateCertificateForPackageRequestRequest(
                              product_code=PRODUCT, domain="a.example.org", validate_type="FILE"))
    s = state(cas, file_order.order_id)
    assert (s.type, s.validate_type, s.uri) == ("domain_verify", "FILE", "/.well-known/pki-validation/fileauth.txt")
    assert s.content
    alibaba.validate_order(file_order.order_id)
    assert state(cas, file_order.order_id).type == "process"  # review lasts 30 s
    alibaba.settings(review_seconds=0)
    done = state(cas, file_order.order_id)
    assert done.type == "certificate" and "PRIVATE KEY" in done.private_key  # no CSR: CAS made the key


@pytest.mark.parametrize("case, code", [
    ("quota", "NoAvailableQuota"), ("malformed", "InvalidCsr"), ("mismatch", "CsrDomainMismatch"),
    ("several", "DomainCountExceeded"), ("product", "InvalidProductCode")])
def test_order_refusals(alibaba, apis, case, code):
    cas, _ = apis
    alibaba.add_package(PRODUCT, total=1, used=1 if case == "quota" else 0)
    csr, _ = csr_for(["a.example.com"])
    kwargs = {"product_code": PRODUCT, "csr": csr, "domain": "a.example.com"}
    if case == "malformed":
        kwargs["csr"] = "-----BEGIN CERTIFICATE REQUEST-----\nnot a csr\n-----END CERTIFICATE REQUEST-----\n"
    elif case == "mismatch":
        kwargs["domain"] = "b.example.com"
    elif case == "several":
        kwargs["csr"], _ = csr_for(["a.example.com", "b.example.com"])
        kwargs["domain"] = "a.example.com,b.example.com"
    elif case == "product":
        kwargs["product_code"] = "no-such-product"
    with pytest.raises(PermanentError) as err:
        cas.call("ordering", "create_certificate_for_package_request",
                 cas_models.CreateCertificateForPackageRequestRequest(**kwargs))
    assert code_of(err.value) == code


def test_multi_domain_product_accepts_several_names(alibaba, apis):
    cas, _ = apis
    alibaba.add_package(MULTI, max_domains=5)
    csr, _ = csr_for(["a.example.com", "b.example.com"])
    order = cas.call("ordering", "create_certificate_for_package_request",
                     cas_models.CreateCertificateForPackageRequestRequest(product_code=MULTI, csr=csr))
    assert alibaba.order(order.order_id)["names"] == ["a.example.com", "b.example.com"]


@pytest.mark.parametrize("method", ["cancel_order_request", "delete_certificate_request"])
def test_cancel_gives_quota_back_and_refuses_issued(alibaba, apis, method):
    cas, _ = apis
    alibaba.add_package(PRODUCT, total=1)
    order = cas.call("ordering", "create_certificate_for_package_request",
                     cas_models.CreateCertificateForPackageRequestRequest(product_code=PRODUCT, domain="c.example.com"))
    request_cls = {"cancel_order_request": cas_models.CancelOrderRequestRequest,
                   "delete_certificate_request": cas_models.DeleteCertificateRequestRequest}[method]
    cas.call("cancelling", method, request_cls(order_id=order.order_id))
    pkg = cas.call("quota", "describe_package_state", cas_models.DescribePackageStateRequest(product_code=PRODUCT))
    assert pkg.used_count == 0
    with pytest.raises(PermanentError):
        state(cas, order.order_id)
    seeded = alibaba.seed_certificate(["d.example.com"], product_code=PRODUCT)
    with pytest.raises(PermanentError) as err:
        cas.call("cancelling", method, request_cls(order_id=seeded["order_id"]))
    assert code_of(err.value) == "OrderIssued"


def test_rejected_order_is_verify_fail(alibaba, apis):
    cas, _ = apis
    alibaba.add_package(PRODUCT)
    order = cas.call("ordering", "create_certificate_for_package_request",
                     cas_models.CreateCertificateForPackageRequestRequest(product_code=PRODUCT, domain="e.example.com"))
    alibaba.reject_order(order.order_id, "the applicant could not be reached")
    assert state(cas, order.order_id).type == "verify_fail"
    listed = cas.call("listing", "list_user_certificate_order",
                      cas_models.ListUserCertificateOrderRequest(order_type="CPACK", status="CHECKED_FAIL"))
    assert [o.order_id for o in listed.certificate_order_list] == [order.order_id]
    assert alibaba.order(order.order_id)["message"] == "the applicant could not be reached"


# ---------------------------------------------------------------- CAS certificates

def test_upload_idempotent_key_checked_and_returned(alibaba, apis):
    cas, _ = apis
    seeded = alibaba.seed_certificate(["up.example.com"], source="upload")
    cert_pem, key = seeded["cert_pem"], seeded["key_pem"]
    token = uuid.uuid4().hex
    first = cas.call("uploading", "upload_user_certificate", cas_models.UploadUserCertificateRequest(
        name="up-1", cert=cert_pem, key=key, client_token=token))
    again = cas.call("uploading", "upload_user_certificate", cas_models.UploadUserCertificateRequest(
        name="up-1", cert=cert_pem, key=key, client_token=token))
    assert (again.cert_id, again.resource_id) == (first.cert_id, first.resource_id)
    detail = cas.call("detail", "get_user_certificate_detail",
                      cas_models.GetUserCertificateDetailRequest(cert_id=first.cert_id))
    assert detail.key == key and detail.buy_in_aliyun is False and detail.order_id is None
    with pytest.raises(PermanentError) as err:
        cas.call("uploading", "upload_user_certificate", cas_models.UploadUserCertificateRequest(
            name="up-2", cert=cert_pem, key=key_pem(ec.generate_private_key(ec.SECP256R1()))))
    assert code_of(err.value) == "CertKeyNotMatch"
    uploads = cas.call("listing", "list_user_certificate_order",
                       cas_models.ListUserCertificateOrderRequest(order_type="UPLOAD"))
    assert all(c.upload and c.source_type == "upload" for c in uploads.certificate_order_list)
    assert uploads.total_count == 2  # the seeded upload and ours


def test_certificate_list_paging_status_and_keyword(alibaba, apis):
    cas, _ = apis
    now = dt.datetime.now(dt.UTC)
    for i in range(4):
        alibaba.seed_certificate([f"p{i}.example.net"])
    alibaba.seed_certificate(["soon.example.net"], not_after=(now + dt.timedelta(days=10)).isoformat())
    alibaba.seed_certificate(["gone.example.net"], not_before=(now - dt.timedelta(days=400)).isoformat(),
                             not_after=(now - dt.timedelta(days=1)).isoformat())
    seen = []
    for page in (1, 2, 3):
        body = cas.call("listing", "list_user_certificate_order", cas_models.ListUserCertificateOrderRequest(
            order_type="CERT", current_page=page, show_size=2))
        assert (body.total_count, body.current_page, body.show_size) == (6, page, 2)
        seen += [c.certificate_id for c in body.certificate_order_list]
    assert len(set(seen)) == 6
    soon = cas.call("listing", "list_user_certificate_order", cas_models.ListUserCertificateOrderRequest(
        order_type="CERT", status="WILLEXPIRED"))
    assert [c.common_name for c in soon.certificate_order_list] == ["soon.example.net"]
    expired = cas.call("listing", "list_user_certificate_order", cas_models.ListUserCertificateOrderRequest(
        order_type="CERT", keyword="gone"))
    assert [(c.status, c.expired) for c in expired.certificate_order_list] == [("EXPIRED", True)]


# ---------------------------------------------------------------- deployment jobs

def _deploy(cas, name, cert_id, resource_ids):
    job = cas.call("deploying", "create_deployment_job", cas_models.CreateDeploymentJobRequest(
        name=name, job_type="user", cert_ids=str(cert_id), resource_ids=",".join(map(str, resource_ids)),
        contact_ids="1"))
    cas.call("starting", "update_deployment_job_status",
             cas_models.UpdateDeploymentJobStatusRequest(job_id=job.job_id, status="scheduling"))
    return job.job_id


def test_deployment_job_switches_served_certificate_and_rolls_back(alibaba, apis):
    cas, _ = apis
    old = alibaba.seed_certificate(["shop.example.com"], resources=[
        {"domain": "shop.example.com", "cloud_product": "SLB"}, {"domain": "shop.example.com", "cloud_product": "CDN"}])
    new = alibaba.seed_certificate(["shop.example.com"], source="upload", name="shop-2026")
    assert served_certificate(alibaba, "shop.example.com").fingerprint(hashes.SHA256()).hex() == old[
        "fingerprint_sha256"]
    res = cas.call("resources", "list_cloud_resources",
                   cas_models.ListCloudResourcesRequest(cert_ids=[old["cert_id"]], current_page=1, show_size=10))
    assert res.total == 2 and {r.cloud_product for r in res.data} == {"SLB", "CDN"}
    assert all(r.cert_id == old["cert_id"] and r.domain == "shop.example.com" for r in res.data)
    slb = cas.call("resources", "list_cloud_resources", cas_models.ListCloudResourcesRequest(cloud_product="SLB"))
    assert slb.total == 1

    job_id = _deploy(cas, "renew shop", new["cert_id"], [r.id for r in res.data])
    job = cas.call("job", "describe_deployment_job", cas_models.DescribeDeploymentJobRequest(job_id=job_id))
    assert (job.status, job.rollback, job.name) == ("success", 0, "renew shop")
    assert all(alibaba.resource_cert_id(r.id) == new["cert_id"] for r in res.data)
    assert served_certificate(alibaba, "shop.example.com").fingerprint(hashes.SHA256()).hex() == new[
        "fingerprint_sha256"]
    listed = cas.call("jobs", "list_deployment_job", cas_models.ListDeploymentJobRequest(
        job_type="user", current_page=1, show_size=10))
    assert [(j.id, j.status) for j in listed.data] == [(job_id, "success")]

    cas.call("rolling back", "create_rollback_task", cas_models.CreateRollbackTaskRequest(job_id=job_id))
    job = cas.call("job", "describe_deployment_job", cas_models.DescribeDeploymentJobRequest(job_id=job_id))
    assert (job.status, job.rollback) == ("rollback", 1)
    assert all(alibaba.resource_cert_id(r.id) == old["cert_id"] for r in res.data)
    assert served_certificate(alibaba, "shop.example.com").fingerprint(hashes.SHA256()).hex() == old[
        "fingerprint_sha256"]


@pytest.mark.parametrize("why", ["no key", "injected"])
def test_deployment_job_error(alibaba, apis, why):
    cas, _ = apis
    old = alibaba.seed_certificate(["api.example.com"], resources=[{"domain": "api.example.com"}])
    new = alibaba.seed_certificate(["api.example.com"], with_key=why == "injected")
    rid = old["resource_ids"][0]
    if why == "injected":
        alibaba.fail_deployment(resource_id=rid, message="listener is locked")
    alibaba.settings(deploy_seconds=30)
    job_id = _deploy(cas, "deploy api", new["cert_id"], [rid])
    job = cas.call("job", "describe_deployment_job", cas_models.DescribeDeploymentJobRequest(job_id=job_id))
    assert job.status == "processing"
    alibaba.settings(deploy_seconds=0)
    job = cas.call("job", "describe_deployment_job", cas_models.DescribeDeploymentJobRequest(job_id=job_id))
    assert job.status == "error"
    assert alibaba.resource_cert_id(rid) == old["cert_id"]
    assert ("private key" if why == "no key" else "listener is locked") in alibaba.job(job_id)["message"]


# ---------------------------------------------------------------- AliDNS

def test_alidns_actions(alibaba, apis):
    _, dns = apis
    domain_id = alibaba.add_zone("example.com")
    alibaba.add_zone("other.test")
    domains = dns.call("listing", "describe_domains", dns_models.DescribeDomainsRequest(page_number=1, page_size=1))
    assert domains.total_count == 2 and len(domains.domains.domain) == 1
    assert domains.domains.domain[0].domain_name == "example.com" and domains.domains.domain[0].domain_id == domain_id
    ids = [dns.call("adding", "add_domain_record", dns_models.AddDomainRecordRequest(
        domain_name="example.com", rr="_acme-challenge.www", type="TXT", value=v, ttl=600)).record_id
        for v in ("v1", "v2")]
    with pytest.raises(PermanentError) as err:
        dns.call("adding", "add_domain_record", dns_models.AddDomainRecordRequest(
            domain_name="example.com", rr="_acme-challenge.www", type="TXT", value="v1", ttl=600))
    assert code_of(err.value) == "DomainRecordDuplicate"
    page = dns.call("reading", "describe_domain_records", dns_models.DescribeDomainRecordsRequest(
        domain_name="example.com", rrkey_word="acme", type_key_word="TXT", page_number=2, page_size=1))
    assert page.total_count == 2 and [r.value for r in page.domain_records.record] == ["v2"]
    one = dns.call("reading", "describe_domain_records", dns_models.DescribeDomainRecordsRequest(
        domain_name="example.com", value_key_word="v1"))
    assert [(r.record_id, r.rr, r.type, r.ttl, r.domain_name) for r in one.domain_records.record] == [
        (ids[0], "_acme-challenge.www", "TXT", 600, "example.com")]
    sub = dns.call("reading", "describe_sub_domain_records", dns_models.DescribeSubDomainRecordsRequest(
        sub_domain="_acme-challenge.www.example.com", type="TXT"))
    assert sorted(r.value for r in sub.domain_records.record) == ["v1", "v2"]
    assert dns.call("deleting", "delete_domain_record",
                    dns_models.DeleteDomainRecordRequest(record_id=ids[0])).record_id == ids[0]
    assert {r["Value"] for r in alibaba.records("example.com")} == {"v2"}
    with pytest.raises(PermanentError):
        dns.call("deleting", "delete_domain_record", dns_models.DeleteDomainRecordRequest(record_id=ids[0]))


# ---------------------------------------------------------------- signature and errors

def test_wrong_secret_is_signature_does_not_match(alibaba):
    api = alibaba.connection(secret="not-the-secret").cas()
    with pytest.raises(PermanentError) as err:
        api.call("quota", "describe_package_state", cas_models.DescribePackageStateRequest(product_code=PRODUCT))
    assert code_of(err.value) == "SignatureDoesNotMatch"
    assert alibaba.access_key_secret not in str(err.value)


def test_unknown_access_key_id(alibaba):
    api = alibaba.connection(access_key_id="LTAI-unknown").alidns()
    with pytest.raises(PermanentError) as err:
        api.call("listing", "describe_domains", dns_models.DescribeDomainsRequest())
    assert code_of(err.value) == "InvalidAccessKeyId.NotFound"


def test_tampered_request_is_refused(alibaba):
    """The emulator recomputes the signature: a parameter changed after signing is caught."""
    import httpx
    from alibabacloud_tea_openapi.utils import Utils
    from darabonba.request import DaraRequest

    req = DaraRequest()
    req.method, req.pathname, req.query = "POST", "/", {"ProductCode": PRODUCT}
    req.headers = {"host": alibaba.endpoint, "x-acs-action": "DescribePackageState", "x-acs-version": "2020-04-07",
                   "x-acs-date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "x-acs-signature-nonce": uuid.uuid4().hex,
                   "x-acs-content-sha256": Utils.hash(b"", "ACS3-HMAC-SHA256").hex()}
    auth = Utils.get_authorization(req, "ACS3-HMAC-SHA256", req.headers["x-acs-content-sha256"],
                                   alibaba.access_key_id, alibaba.access_key_secret)
    headers = {**req.headers, "Authorization": auth}
    alibaba.add_package(PRODUCT)
    ok = httpx.post(f"http://{alibaba.endpoint}/", params={"ProductCode": PRODUCT}, headers=headers)
    assert ok.status_code == 200 and ok.json()["ProductCode"] == PRODUCT
    replay = httpx.post(f"http://{alibaba.endpoint}/", params={"ProductCode": PRODUCT}, headers=headers)
    assert replay.json()["Code"] == "SignatureNonceUsed"
    headers["x-acs-signature-nonce"] = uuid.uuid4().hex
    tampered = httpx.post(f"http://{alibaba.endpoint}/", params={"ProductCode": "other"}, headers=headers)
    assert (tampered.status_code, tampered.json()["Code"]) == (400, "SignatureDoesNotMatch")


def test_throttling_is_transient_with_retry_after(alibaba, apis):
    _, dns = apis
    alibaba.add_zone("example.com")
    alibaba.fault("DescribeDomains", code="Throttling.User", retry_after_ms=250)
    with pytest.raises(TransientError) as err:
        dns.call("listing", "describe_domains", dns_models.DescribeDomainsRequest())
    assert err.value.retry_after == pytest.approx(0.25)
    assert dns.call("listing", "describe_domains", dns_models.DescribeDomainsRequest()).total_count == 1


def test_server_error_is_transient(alibaba, apis):
    cas, _ = apis
    alibaba.fault("*", status=503, code="ServiceUnavailable", message="try later")
    with pytest.raises(TransientError):
        cas.call("quota", "describe_package_state", cas_models.DescribePackageStateRequest(product_code=PRODUCT))


def test_every_action_answers_in_the_sdk_shape(alibaba, apis):
    """One pass over every action, then the logged answers are checked against the SDK models."""
    cas, dns = apis
    alibaba.add_package(PRODUCT)
    alibaba.add_zone("example.com")
    seeded = alibaba.seed_certificate(["all.example.com"], resources=[{"domain": "all.example.com"}])
    order = cas.call("o", "create_certificate_for_package_request", cas_models.CreateCertificateForPackageRequestRequest(
        product_code=PRODUCT, csr=csr_for(["x.example.com"])[0], domain="x.example.com"))
    validate_through_alidns(cas, dns, order.order_id, "example.com")
    state(cas, order.order_id)
    state(cas, order.order_id)
    cas.call("r", "renew_certificate_order_for_package_request",
             cas_models.RenewCertificateOrderForPackageRequestRequest(order_id=order.order_id,
                                                                      csr=csr_for(["x.example.com"])[0]))
    for order_type in ("CERT", "UPLOAD", "CPACK"):
        cas.call("l", "list_user_certificate_order", cas_models.ListUserCertificateOrderRequest(order_type=order_type))
    cas.call("d", "get_user_certificate_detail", cas_models.GetUserCertificateDetailRequest(cert_id=seeded["cert_id"]))
    up = cas.call("u", "upload_user_certificate", cas_models.UploadUserCertificateRequest(
        name="all-up", cert=seeded["cert_pem"], key=seeded["key_pem"]))
    job_id = _deploy(cas, "all", up.cert_id, seeded["resource_ids"])
    cas.call("j", "list_deployment_job", cas_models.ListDeploymentJobRequest())
    cas.call("j", "describe_deployment_job", cas_models.DescribeDeploymentJobRequest(job_id=job_id))
    cas.call("j", "list_contact", cas_models.ListContactRequest())
    workers = cas.call("j", "list_worker_resource", cas_models.ListWorkerResourceRequest(job_id=job_id)).data
    cas.call("j", "create_rollback_task", cas_models.CreateRollbackTaskRequest(job_id=job_id, worker_id=workers[0].id))
    cas.call("j", "list_cloud_resources", cas_models.ListCloudResourcesRequest())
    extra = cas.call("o", "create_certificate_for_package_request", cas_models.CreateCertificateForPackageRequestRequest(
        product_code=PRODUCT, domain="y.example.com"))
    cas.call("c", "cancel_order_request", cas_models.CancelOrderRequestRequest(order_id=extra.order_id))
    cas.call("p", "describe_package_state", cas_models.DescribePackageStateRequest(product_code=PRODUCT))
    rec = dns.call("a", "add_domain_record", dns_models.AddDomainRecordRequest(
        domain_name="example.com", rr="t", type="TXT", value="v"))
    dns.call("d", "describe_domains", dns_models.DescribeDomainsRequest())
    dns.call("d", "describe_domain_records", dns_models.DescribeDomainRecordsRequest(domain_name="example.com"))
    dns.call("d", "describe_sub_domain_records", dns_models.DescribeSubDomainRecordsRequest(sub_domain="t.example.com"))
    dns.call("d", "delete_domain_record", dns_models.DeleteDomainRecordRequest(record_id=rec.record_id))
    extra2 = cas.call("o", "create_certificate_for_package_request", cas_models.CreateCertificateForPackageRequestRequest(
        product_code=PRODUCT, domain="z.example.com"))
    cas.call("c", "delete_certificate_request", cas_models.DeleteCertificateRequestRequest(order_id=extra2.order_id))
    seen = check_logged_shapes(alibaba)
    every = {"DescribePackageState", "CreateCertificateForPackageRequest", "RenewCertificateOrderForPackageRequest",
             "DescribeCertificateState", "ListUserCertificateOrder", "GetUserCertificateDetail",
             "UploadUserCertificate", "DeleteCertificateRequest", "CancelOrderRequest", "ListCloudResources",
             "CreateDeploymentJob", "ListDeploymentJob", "UpdateDeploymentJobStatus", "DescribeDeploymentJob",
             "CreateRollbackTask", "ListWorkerResource", "ListContact", "DescribeDomains", "AddDomainRecord",
             "DescribeDomainRecords", "DescribeSubDomainRecords", "DeleteDomainRecord"}
    assert every <= seen, f"not exercised: {sorted(every - seen)}"
