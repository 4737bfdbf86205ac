"""Issue 15's hostile-input corpus beyond the import: SNI names sent to the demo TLS endpoint,
answers of a hostile ACME CA, and key material in flow parameters — each refused with its exact
error in under a second, nothing outside the endpoint's directory read, nothing started.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from types import SimpleNamespace

import pytest
import requests
from acme import messages
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import ValidationError, validate

from certpilot.adapters.issuers.acme import AcmeIssuer, _retry_after_seconds, check_authorizations
from certpilot.adapters.issuers.base import Application
from certpilot.core.errors import BadInputError, PermanentError, Reason, TransientError
from certpilot.core.secrets import Sensitive, find_key_material, refuse_key_material
from certpilot.serve import DemoTlsServer
from tests.servers.base import free_port
from tests.servers.certs import make_ca, make_leaf

BOUND = 1.0
KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"


def timed(call):
    started = time.perf_counter()
    try:
        return call()
    finally:
        assert time.perf_counter() - started < BOUND


# ------------------------------------------------------------------ hostile SNI (the demo endpoint)
@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """root/site.example.test served; `outside` beside root (a valid bundle that must never be served);
    a symlinked name and a directory that is not a host name inside root."""
    base = tmp_path_factory.mktemp("sni")
    ca = make_ca("sni test CA")
    leaf = make_leaf(ca, ["site.example.test", "outside.example.test"])
    root = base / "deploy"
    for d in (root / "site.example.test", base / "outside", root / "bad_dir"):
        d.mkdir(parents=True)
        (d / "fullchain.pem").write_bytes(leaf.fullchain_pem)
        (d / "key.pem").write_bytes(leaf.key_pem)
    os.symlink(base / "outside", root / "linked.example.test")
    return DemoTlsServer(root, port=free_port()), leaf


SNI_HOSTILE = ["../outside", "..", ".", "site.example.test/../../outside", "/etc", "outside\x00",
               "%2e%2e%2foutside", "x" * 300, "linked.example.test", "bad_dir", "", "site.example.test\\..\\outside"]


@pytest.mark.parametrize("name", SNI_HOSTILE, ids=range(len(SNI_HOSTILE)))
def test_hostile_sni_maps_to_no_directory(sites, name):
    """Issue 15: a hostile SNI name selects nothing; only names of the served set reach the disk."""
    server, _ = sites
    assert timed(lambda: server._context_for(name)) is None
    assert set(server.served_names()) == {"site.example.test"}


def test_served_sni_name_in_any_case_still_served_over_tls(sites):
    """The served name (any case) gets its bundle in a real handshake; an unknown one the alert."""
    server, leaf = sites
    assert server._context_for("SITE.example.TEST") is not None
    server.start()
    ctx = ssl.create_default_context(cadata=leaf.chain_pems[-1].decode() if leaf.chain_pems else None)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="site.example.test") as tls:
        assert tls.getpeercert(binary_form=True)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(raw, server_hostname="outside.example.test")


# ------------------------------------------------------------------ hostile ACME answers
def response(body: bytes | str, *, status: int = 200, content_type: str = "application/json",
             headers: dict | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = body.encode() if isinstance(body, str) else body
    r.headers.update({"Content-Type": content_type, **(headers or {})})
    return r


RETRY_AFTER = [("9" * 30, 86400.0), ("1" * 100, None), ("Fri, 31 Dec 9999 23:59:59 GMT", 86400.0),
               ("-5", None), ("soon", None), ("120", 120.0)]


@pytest.mark.parametrize("value, seconds", RETRY_AFTER, ids=[v[:12] for v, _ in RETRY_AFTER])
def test_hostile_retry_after_is_clamped_or_ignored(value, seconds):
    """Issue 15: a CA's Retry-After never holds a run longer than a day; nonsense is ignored."""
    assert timed(lambda: _retry_after_seconds(response("{}", headers={"Retry-After": value}))) == seconds


def issuer_answering(answer: requests.Response) -> AcmeIssuer:
    issuer = AcmeIssuer("https://ca.test/dir", accounts=None, vault=None)
    issuer._local.client = SimpleNamespace(_post_as_get=lambda url: answer)
    return issuer


ORDER_ANSWERS = [
    ("html", response("<html>502 Bad Gateway</html>", status=502, content_type="text/html"), TransientError,
     "reading order https://ca.test/order/1: the CA answered 502 with a body that is not JSON (text/html); retry later"),
    ("array", response("[1, 2]"), TransientError, "the CA answered JSON that is not an object"),
    ("huge", response(b" " * (1024 * 1024 + 1)), TransientError, "the CA's answer is 1048577 bytes, more than the 1048576"),
    ("malformed", response(json.dumps({"status": 42, "identifiers": "x"})), TransientError,
     "the CA's answer is not a valid ACME order"),
    ("nul", response(b"\x00\x01\x02", content_type="application/json\r\nX: y"), TransientError,
     "a body that is not JSON (application/json\\r\\nX: y)"),
]


@pytest.mark.parametrize("case, answer, error, fragment", ORDER_ANSWERS, ids=[c[0] for c in ORDER_ANSWERS])
def test_hostile_acme_order_answer_is_a_clear_error(case, answer, error, fragment):
    """Issue 15: an order read that is not an ACME order is a TransientError naming what came back."""
    with pytest.raises(error) as info:
        timed(lambda: issuer_answering(answer)._order("https://ca.test/order/1"))
    assert fragment in info.value.message


def test_hostile_acme_authorization_not_json():
    with pytest.raises(TransientError, match="reading authorization https://ca.test/authz/1: the CA answered 200"):
        timed(lambda: issuer_answering(response("nope", content_type="text/plain"))._authz("https://ca.test/authz/1"))


def test_hostile_acme_certificate_too_large():
    issuer = issuer_answering(response(b"-" * (1024 * 1024 + 1), content_type="application/pem-certificate-chain"))
    issuer._valid["o"] = SimpleNamespace(status=messages.STATUS_VALID, certificate="https://ca.test/cert/1")
    with pytest.raises(TransientError, match="is more than 1048576 bytes"):
        timed(lambda: issuer.fetch_chain("o"))


def authz(value: str, url: str = "https://ca.test/authz/1", wildcard: bool = False):
    body = messages.Authorization(identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=value),
                                  status=messages.STATUS_PENDING, challenges=[], wildcard=wildcard or None)
    return messages.AuthorizationResource(body=body, uri=url)


APP = Application(names=("shop.example.com", "*.example.com"), csr_pem=b"")
FOREIGN = [
    ("foreign_name", [authz("shop.example.com"), authz("bank.example.net")],
     "holds an authorization for 'bank.example.net', which this application did not ask for"),
    ("foreign_host", [authz("shop.example.com", "https://evil.test/authz/9")],
     "lists an authorization on another host ('evil.test', not 'ca.test')"),
    ("base_not_wildcard", [authz("example.com")], "authorization for 'example.com', which this application"),
    ("control_chars", [authz("a.example.com\r\nX")], "authorization for 'a.example.com\\r\\nx'"),
]


@pytest.mark.parametrize("case, authzrs, fragment", FOREIGN, ids=[c[0] for c in FOREIGN])
def test_hostile_acme_foreign_authorization_refused_before_any_record(case, authzrs, fragment):
    """Issue 15: an authorization the application did not ask for is refused before any challenge is answered."""
    with pytest.raises(PermanentError) as info:
        timed(lambda: check_authorizations(authzrs, APP.names, "https://ca.test/dir"))
    assert info.value.reason is Reason.CA_REJECTED and fragment in info.value.message


def test_acme_own_authorizations_pass():
    check_authorizations([authz("shop.example.com"), authz("example.com", wildcard=True)], APP.names,
                         "https://ca.test/dir")


# ------------------------------------------------------------------ key material in flow parameters
def _schema(flow):
    return parameter_schema(flow.fn).model_dump_for_openapi()


def _flows():
    from flows.admin import import_certificate, purchase
    from flows.emergency import emergency
    from flows.renewal import renewal

    return {"import": import_certificate, "purchase": purchase, "renewal": renewal, "emergency": emergency}


OPENSSH = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
PARAMS = [
    ("import", {"cert_pem": "-----BEGIN CERTIFICATE-----\n...\n" + KEY}, "cert_pem"),
    ("import", {"cert_pem": "c", "chain_pem": KEY}, "chain_pem"),
    ("import", {"cert_pem": "c", "owner": KEY}, "owner"),
    ("import", {"cert_pem": "c", "key_secret_block": OPENSSH}, "key_secret_block"),
    ("import", {"cert_pem": "c" * (256 * 1024 + 1)}, "cert_pem"),
    ("purchase", {"names": ["a.example.com", KEY]}, "names[1]"),
    ("purchase", {"names": ["a.example.com"], "owner": "PuTTY-User-Key-File-3: ssh-ed25519"}, "owner"),
    ("renewal", {"certificate_id": "c", "csr_mode": KEY}, "csr_mode"),
    ("emergency", {"certificate_id": KEY}, "certificate_id"),
]


@pytest.mark.parametrize("flow, params, field", PARAMS, ids=[f"{p[0]}-{p[2]}-{i}" for i, p in enumerate(PARAMS)])
def test_csr5_key_in_flow_parameter_refused_by_the_deployment_schema(flow, params, field):
    """CSR-5/issue 15: the parameter schema the server enforces before creating a run refuses key
    material (and oversized PEM) in every free-text parameter."""
    schema = _schema(_flows()[flow])
    with pytest.raises(ValidationError) as info:
        timed(lambda: validate(params, schema, raise_on_error=True))
    assert f"field '{field}'" in str(info.value)


def test_csr5_ordinary_parameters_pass_the_schema():
    schema = _schema(_flows()["import"])
    assert validate({"cert_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                     "owner": "ops@example.com", "key_secret_block": "shop-key"}, schema, raise_on_error=True) == []


@pytest.mark.parametrize("params, path", [
    ({"items": [{"id": "c1"}, {"note": KEY}]}, "items.1.note"),
    ({"cert_pem": KEY.encode()}, "cert_pem"),
    ({"names": ("a.example.com", OPENSSH)}, "names.1"),
])
def test_csr5_cli_refuses_key_material_before_starting_a_run(params, path):
    """CSR-5: what the CLI would start is checked first; the message names the parameter, never the key."""
    with pytest.raises(BadInputError) as info:
        timed(lambda: refuse_key_material(params, where="the renewal/renewal deployment"))
    assert info.value.reason is Reason.KEY_IN_PARAMETER
    assert f"parameter '{path}' of the renewal/renewal deployment holds a private key" in info.value.message
    assert "MIG" not in info.value.message and find_key_material({"ok": "a"}) is None


def test_sensitive_and_tsig_keys_never_show_their_secret():
    """Issue 15: wrapped secrets and the RFC 2136 TSIG key print no secret (dnspython's own repr does)."""
    from certpilot.adapters.dns.rfc2136 import Rfc2136Provider

    secret = "c2VjcmV0LXRzaWctdmFsdWU="
    provider = Rfc2136Provider("127.0.0.1", 53, zones=["a.test"], keyname="k", secret=secret)
    shown = repr(provider._keyring) + str(provider._keyring) + repr(provider)
    assert secret not in shown and "****" in shown
    wrapped = Sensitive(b"hunter2", "SMTP password")
    assert "hunter2" not in f"{wrapped} {wrapped!r} {[wrapped]}" and wrapped.reveal() == b"hunter2"


CASE_COUNT = (len(SNI_HOSTILE) + len(RETRY_AFTER) + len(ORDER_ANSWERS) + 2 + len(FOREIGN) + len(PARAMS) + 3)
"""The refusal cases of this file (counted toward issue 15's corpus of 60)."""


def _string_fields(schema: dict, node: dict, path: str):
    """(path, schema node) of every string the parameter schema accepts (refs and unions followed)."""
    if "$ref" in node:
        node = schema.get("definitions", {}).get(node["$ref"].rsplit("/", 1)[-1], {})
    if node.get("type") == "string" and "enum" not in node:
        yield path, node
    for key in ("anyOf", "oneOf", "allOf"):
        for option in node.get(key, ()):
            yield from _string_fields(schema, option, path)
    if isinstance(node.get("items"), dict):
        yield from _string_fields(schema, node["items"], f"{path}[]")
    for name, prop in node.get("properties", {}).items():
        yield from _string_fields(schema, prop, f"{path}.{name}" if path else name)


def test_csr5_every_deployment_refuses_key_material_in_every_text_parameter():
    """CSR-5/issue 15, for every deployment of prefect.yaml (the UI's forms): each free-text
    parameter's schema forbids private-key markers, so the server creates no run holding a key.
    (`renewal-batch` takes the scanner's typed launch items, not operator text.)"""
    import importlib
    from pathlib import Path

    import yaml

    from certpilot.core.secrets import KEY_PATTERN

    spec = yaml.safe_load((Path(__file__).parents[2] / "prefect.yaml").read_text())
    open_fields = []
    for deployment in spec["deployments"]:
        if deployment["name"] == "renewal-batch":
            continue
        module, name = deployment["entrypoint"].split(":")
        schema = _schema(getattr(importlib.import_module(module), name))
        for path, node in _string_fields(schema, {"properties": schema["properties"]}, ""):
            if node.get("not", {}).get("pattern") != KEY_PATTERN:
                open_fields.append(f"{deployment['name']}.{path}")
    assert open_fields == []
