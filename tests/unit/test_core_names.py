"""UP-1, UP-2: names, certificate types and offered specifications (certpilot.core.names)."""

from __future__ import annotations

import pytest

from certpilot.core.errors import BadInputError, Reason
from certpilot.core.models import Certificate, CertType, Level, Policy, Spec
from certpilot.core.names import (
    BRANDS,
    OWN_BRAND,
    check_names,
    check_spec,
    covers,
    infer_type,
    is_wildcard,
    normalize_name,
)

P = Policy()
S, W, M = CertType.SINGLE, CertType.WILDCARD, CertType.MULTI


@pytest.mark.parametrize("raw, normal", [
    ("Example.COM", "example.com"),
    ("www.example.com.", "www.example.com"),
    ("  api.example.com  ", "api.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("ＥＸＡＭＰＬＥ.com", "example.com"),              # full-width forms map (UTS-46)
    ("shop。example。com", "shop.example.com"),          # ideographic full stop
    ("*.Example.com", "*.example.com"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("203.0.113.7", "203.0.113.7"),
    ("2001:DB8::1", "2001:db8::1"),                   # canonical; check_names refuses IPv6
    ("a" * 63 + ".com", "a" * 63 + ".com"),
    (".".join(["a" * 61] * 4), ".".join(["a" * 61] * 4)),  # 247 characters
])
def test_up1_normalize_name(raw, normal):
    """UP-1: lower-case, A-labels, no trailing dot."""
    assert normalize_name(raw) == normal


@pytest.mark.parametrize("raw, says", [
    ("", "it is empty"),
    ("localhost", "needs at least two labels"),
    ("a..example.com", "empty label"),
    ("a" * 64 + ".com", "Label too long"),
    (".".join(["a" * 63] * 4), "more than 253"),
    ("under_score.example.com", "fails IDNA"),
    ("-dash.example.com", "fails IDNA"),
    ("*x.example.com", "a wildcard must be a whole leftmost label"),
    ("1.2.3", "all digits"),
    ("ab--cd.example.com", "fails IDNA"),                # reserved hyphens (R-LDH), as CAs refuse
])
def test_up1_invalid_names_are_refused_naming_the_value(raw, says):
    with pytest.raises(BadInputError) as exc:
        normalize_name(raw)
    assert exc.value.reason is Reason.INVALID_NAME
    assert f"'{raw}'" in exc.value.message and says in exc.value.message


@pytest.mark.parametrize("names, cert_type", [
    (["example.com"], S),
    (["203.0.113.7"], S),
    (["*.example.com"], W),
    (["*.example.com", "example.com"], W),        # the usual pair is a wildcard certificate
    (["example.com", "*.example.com"], W),
    (["Example.com.", "example.com"], S),         # duplicates after normalization count once
    (["a.example.com", "b.example.com"], M),
    (["*.example.com", "www.example.com"], M),    # a wildcard plus another name: multi (then refused)
    (["*.example.com", "example.org"], M),
])
def test_up1_infer_type(names, cert_type):
    assert infer_type(names) is cert_type


def test_up1_infer_type_needs_a_name():
    with pytest.raises(BadInputError) as exc:
        infer_type([])
    assert exc.value.reason is Reason.NO_NAMES


@pytest.mark.parametrize("names, cert_type, reason, offending", [
    (["example.com"], S, None, None),
    (["93.184.216.34"], S, None, None),
    (["8.8.8.8", "www.example.com"], M, None, None),
    (["*.example.com"], W, None, None),
    (["*.example.com", "example.com"], W, None, None),
    ([f"h{i}.example.com" for i in range(5)], M, None, None),
    ([], S, Reason.NO_NAMES, None),
    (["exa mple.com"], S, Reason.INVALID_NAME, "'exa mple.com'"),
    (["10.0.0.1"], S, Reason.PRIVATE_IP, "'10.0.0.1'"),
    (["127.0.0.1"], S, Reason.PRIVATE_IP, "'127.0.0.1'"),
    (["192.168.1.10"], S, Reason.PRIVATE_IP, "'192.168.1.10'"),
    (["169.254.1.1"], S, Reason.PRIVATE_IP, "'169.254.1.1'"),
    (["100.64.0.1"], S, Reason.PRIVATE_IP, "'100.64.0.1'"),
    (["192.0.2.1"], S, Reason.PRIVATE_IP, "'192.0.2.1'"),       # documentation range: reserved
    (["2001:4860:4860::8888"], S, Reason.INVALID_NAME, "'2001:4860:4860::8888'"),
    (["*.*.example.com"], W, Reason.WILDCARD_DEPTH, "'*.*.example.com'"),
    (["a.*.example.com"], W, Reason.WILDCARD_DEPTH, "'a.*.example.com'"),
    (["*x.example.com"], W, Reason.INVALID_NAME, "'*x.example.com'"),
    (["*.com"], W, Reason.WILDCARD_DEPTH, "'*.com'"),
    (["*.example.com"], S, Reason.TYPE_MISMATCH, "'*.example.com'"),
    (["a.example.com", "b.example.com"], S, Reason.TYPE_MISMATCH, "a.example.com, b.example.com"),
    (["example.com"], W, Reason.TYPE_MISMATCH, "example.com"),
    (["*.example.com", "*.example.org"], W, Reason.TYPE_MISMATCH, "2 wildcards"),
    (["*.example.com", "www.example.com"], W, Reason.TYPE_MISMATCH, "'www.example.com'"),
    (["*.example.com", "a.example.com"], M, Reason.WILDCARD_IN_MULTI, "'*.example.com'"),
    ([f"h{i}.example.com" for i in range(6)], M, Reason.TOO_MANY_NAMES, "h5.example.com"),
    (["only.example.com"], M, Reason.TYPE_MISMATCH, "'only.example.com'"),
    (["a.example.com", "10.1.2.3"], M, Reason.PRIVATE_IP, "'10.1.2.3'"),
])
def test_up1_check_names(names, cert_type, reason, offending):
    """UP-1: single = one FQDN or public IPv4; wildcard = one label; multi <= 5 names, no wildcards."""
    r = check_names(names, cert_type, P)
    assert (r.reason if r else None) is reason
    if r:
        assert r.rule == "UP-1"
        if offending:
            assert offending in r.message


def test_up1_multi_limit_is_policy():
    names = [f"h{i}.example.com" for i in range(3)]
    r = check_names(names, M, Policy(max_names_multi=2))
    assert r.reason is Reason.TOO_MANY_NAMES
    assert r.message.startswith("3 names (h0.example.com, h1.example.com, h2.example.com) exceed the 2")


@pytest.mark.parametrize("pattern, name, covered", [
    ("*.example.com", "a.example.com", True),
    ("*.example.com", "A.Example.COM.", True),
    ("*.example.com", "b.a.example.com", False),   # one label only
    ("*.example.com", "example.com", False),       # not the base name
    ("*.example.com", "*.example.com", True),
    ("*.example.com", "aexample.com", False),
    ("example.com", "example.com", True),
    ("example.com", "www.example.com", False),
    ("*.2.3.4", "1.2.3.4", False),                  # IP addresses never by wildcard
    ("1.2.3.4", "1.2.3.4", True),
])
def test_up1_wildcard_covers_exactly_one_label(pattern, name, covered):
    """UP-1: `*.example.com` covers `a.example.com`, not `b.a.example.com` nor `example.com`."""
    assert covers(pattern, name) is covered


@pytest.mark.parametrize("name, wild", [("*.example.com", True), ("example.com", False), ("a.*.b.com", False)])
def test_up1_is_wildcard(name, wild):
    assert is_wildcard(name) is wild


def test_up2_brands_offered():
    """UP-2: Alibaba Cloud, DigiCert, GlobalSign; levels DV, OV, EV."""
    assert BRANDS == ("Alibaba Cloud", "DigiCert", "GlobalSign")
    assert [lv.value for lv in Level] == ["DV", "OV", "EV"]


@pytest.mark.parametrize("brand, ok", [("Alibaba Cloud", True), ("DigiCert", True), ("GlobalSign", True),
                                       ("digicert", False), ("Sectigo", False)])
def test_up2_check_spec(brand, ok):
    r = check_spec(Spec(brand=brand, level=Level.EV, cert_type=CertType.SINGLE))
    assert (r is None) is ok
    if not ok:
        assert (r.reason, r.rule) == (Reason.UNKNOWN_BRAND, "UP-2")
        assert r.message == f"brand '{brand}' is not offered; choose one of Alibaba Cloud, DigiCert, GlobalSign"


def test_up2_brands_can_be_extended():
    assert check_spec(Spec(brand="certpilot", level=Level.DV, cert_type=S), brands=(*BRANDS, "certpilot")) is None


def test_up2_own_brand_is_the_default_brand():
    """certpilot's own issuers' brand is the default of a certificate (offered with BRANDS on import)."""
    assert OWN_BRAND == "certpilot" == Certificate.model_fields["brand"].default
    assert check_spec(Spec(brand=OWN_BRAND, level=Level.DV, cert_type=S)) is not None  # not a seed brand
    assert check_spec(Spec(brand=OWN_BRAND, level=Level.DV, cert_type=S), brands=(*BRANDS, OWN_BRAND)) is None
