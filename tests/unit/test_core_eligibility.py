"""EL-1..EL-5: renewal eligibility chains (certpilot.core.eligibility)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from certpilot.core.eligibility import (
    OFFICIAL_RENEWAL,
    PRIVATE_CA_REISSUE,
    UPLOADED_REPLACEMENT,
    RenewalInput,
    check_renewal,
)
from certpilot.core.errors import Reason, first_refusal
from certpilot.core.models import Certificate, CertType, Level, Origin, Policy, Spec, Status

P = Policy()
NOT_AFTER = "2025-09-30"
DUE = "2025-09-10"       # 20 days left: expiring soon
EARLY = "2025-06-01"     # 121 days left
EXPIRED = "2025-10-01"


def at(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def cert(origin=Origin.OFFICIAL, state=Status.ISSUED, cert_type=CertType.SINGLE, **kw) -> Certificate:
    names = ["a.example.com", "b.example.com"] if cert_type is CertType.MULTI else ["shop.example.com"]
    return Certificate(id="c1", common_name="shop.example.com", names=names, cert_type=cert_type, origin=origin,
                       state=state, brand="DigiCert", level=Level.OV, not_before=at("2024-10-01"),
                       not_after=at(NOT_AFTER), **kw)


def check(c: Certificate, now: str, requested: Spec | None = None):
    return check_renewal(RenewalInput(certificate=c, now=at(now), policy=P, requested=requested))


@pytest.mark.parametrize("now", [DUE, "2025-08-01", "2025-09-30"])
def test_el1a_official_renewable_when_expiring_soon(now):
    """EL-1(a): eligible once expiring soon (60 days or less left, until not_after inclusive)."""
    assert check(cert(), now) is None


def test_el1a_not_expiring_soon_says_when_renewal_opens():
    """EL-1(a), EL-5: not yet; the message says when renewal opens."""
    r = check(cert(), EARLY)
    assert (r.reason, r.rule) == (Reason.NOT_EXPIRING_SOON, "EL-1")
    assert r.message == ("shop.example.com (c1) expires 2025-09-30T00:00:00+00:00, more than 60 days away; renewal "
                         "opens 2025-08-01T00:00:00+00:00: renew then (preview it now with `certpilot renew c1 "
                         "--dry-run --at 2025-08-01T00:00:00Z`), or let the scanner renew it when due: "
                         "`certpilot policy c1 --auto-renew`")


@pytest.mark.parametrize("now", [DUE, EARLY])
def test_el1b_multi_domain_cannot_be_renewed(now):
    """EL-1(b): multi-domain certificates cannot be renewed: buy a new one (also before renewal opens)."""
    r = check(cert(cert_type=CertType.MULTI), now)
    assert (r.reason, r.rule) == (Reason.MULTI_DOMAIN, "EL-1")
    assert "multi-domain certificates cannot be renewed (EL-1): buy a new certificate" in r.message
    assert "shop.example.com" in r.message and "2025-09-30" in r.message


@pytest.mark.parametrize("requested, changed", [
    (Spec(brand="GlobalSign", level=Level.OV, cert_type=CertType.SINGLE), "brand DigiCert → GlobalSign"),
    (Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE), "validation level OV → DV"),
    (Spec(brand="DigiCert", level=Level.OV, cert_type=CertType.WILDCARD), "type single → wildcard"),
    (Spec(brand="DigiCert", level=Level.EV, cert_type=CertType.WILDCARD),
     "type single → wildcard; validation level OV → EV"),
])
def test_el1c_specification_change_names_the_field(requested, changed):
    """EL-1(c): brand, type and validation level cannot change on renewal."""
    r = check(cert(), DUE, requested)
    assert (r.reason, r.rule) == (Reason.SPEC_CHANGE, "EL-1")
    assert f"but {changed} was asked" in r.message
    assert "buy a new certificate" in r.message


def test_el1c_same_specification_is_fine():
    assert check(cert(), DUE, Spec(brand="DigiCert", level=Level.OV, cert_type=CertType.SINGLE)) is None


@pytest.mark.parametrize("now", [EXPIRED, "2025-09-30T00:00:01"])
def test_el2_expired_official_needs_a_new_purchase(now):
    """EL-2: an expired official certificate is not renewed; buy a new certificate."""
    r = check(cert(), now)
    assert (r.reason, r.rule) == (Reason.EXPIRED_OFFICIAL, "EL-2")
    assert r.message.startswith("shop.example.com (c1) expired 2025-09-30T00:00:00+00:00; an expired certificate "
                                "cannot be renewed: buy a new certificate")


@pytest.mark.parametrize("state", [Status.PENDING_APPLICATION, Status.UNDER_REVIEW, Status.NOT_ACTIVATED,
                                   Status.REVOKED, Status.REJECTED, Status.CANCELLED])
def test_el1_only_issued_official_certificates_are_renewed(state):
    r = check(cert(state=state), DUE)
    assert (r.reason, r.rule) == (Reason.NOT_RENEWABLE_STATE, "EL-1")
    assert f"is {state.value}, not issued" in r.message


@pytest.mark.parametrize("state, now, reason", [
    (Status.UPLOADED, DUE, None),
    (Status.UPLOADED, EXPIRED, None),                      # uploaded: expired is fine (EL-3)
    (Status.UPLOADED, EARLY, Reason.UPLOADED_NOT_DUE),
    (Status.REVOKED, DUE, Reason.NOT_UPLOADED_STATE),
    (Status.ISSUED, DUE, Reason.NOT_UPLOADED_STATE),
])
def test_el3_uploaded_replaced_when_expiring_soon_or_expired(state, now, reason):
    """EL-3: uploaded certificates: state uploaded, expiring soon or expired."""
    r = check(cert(origin=Origin.UPLOADED, state=state), now)
    assert (r.reason if r else None) is reason
    if r:
        assert r.rule == "EL-3"


def test_el3_uploaded_not_due_says_when():
    r = check(cert(origin=Origin.UPLOADED, state=Status.UPLOADED), EARLY)
    assert r.message == ("shop.example.com (c1) expires 2025-09-30T00:00:00+00:00, more than 60 days away; it can "
                         "be replaced once expiring soon, from 2025-08-01T00:00:00+00:00 (preview it now with "
                         "`certpilot renew c1 --dry-run --at 2025-08-01T00:00:00Z`), or let the scanner do it when "
                         "due: `certpilot policy c1 --auto-renew`")


def test_el3_multi_domain_uploaded_can_be_replaced():
    """EL-3: the multi-domain restriction is for official renewals; an uploaded one is replaced."""
    assert check(cert(origin=Origin.UPLOADED, state=Status.UPLOADED, cert_type=CertType.MULTI), DUE) is None


@pytest.mark.parametrize("chain", [OFFICIAL_RENEWAL, UPLOADED_REPLACEMENT])
def test_el3_el4_private_ca_on_the_renew_path_is_told_to_reissue(chain):
    """EL-3/EL-4: a private-CA certificate is not renewed or replaced: reissue from the private CA."""
    c = cert(origin=Origin.PRIVATE_CA, state=Status.UPLOADED, publicly_trusted=False)
    r = first_refusal(chain, RenewalInput(certificate=c, now=at(DUE), policy=P))
    assert (r.reason, r.rule) == (Reason.PRIVATE_CA_REISSUE, "EL-4")
    assert "reissued from the private CA" in r.message and "`certpilot show c1`" in r.message


@pytest.mark.parametrize("state, now, reason", [
    (Status.ISSUED, DUE, None),
    (Status.UPLOADED, EXPIRED, None),
    (Status.ISSUED, EARLY, Reason.UPLOADED_NOT_DUE),
    (Status.REVOKED, DUE, Reason.NOT_RENEWABLE_STATE),
])
def test_el4_private_ca_reissue_path(state, now, reason):
    """EL-4: private-CA certificates are reissued when expiring soon or expired."""
    c = cert(origin=Origin.PRIVATE_CA, state=state, publicly_trusted=False)
    r = check(c, now)
    assert (r.reason if r else None) is reason
    if r:
        assert r.rule == "EL-4"
    assert first_refusal(PRIVATE_CA_REISSUE, RenewalInput(certificate=c, now=at(now), policy=P)) == r


FAILING = [
    (cert(), EARLY, None),
    (cert(cert_type=CertType.MULTI), DUE, None),
    (cert(), DUE, Spec(brand="GlobalSign", level=Level.OV, cert_type=CertType.SINGLE)),
    (cert(), EXPIRED, None),
    (cert(state=Status.UNDER_REVIEW), DUE, None),
    (cert(origin=Origin.UPLOADED, state=Status.UPLOADED), EARLY, None),
    (cert(origin=Origin.UPLOADED, state=Status.REVOKED), DUE, None),
    (cert(origin=Origin.PRIVATE_CA, state=Status.ISSUED), EARLY, None),
]


@pytest.mark.parametrize("c, now, requested", FAILING)
def test_el5_every_refusal_says_what_failed_and_what_to_do(c, now, requested):
    """EL-5: each refusal names the certificate, a rule ID, an ISO date or state, and an instruction."""
    r = check(c, now, requested)
    assert r is not None
    assert "shop.example.com" in r.message
    assert re.fullmatch(r"EL-[1-4]", r.rule)
    assert re.search(r"\d{4}-\d{2}-\d{2}T", r.message) or c.state.value in r.message
    assert re.search(r"`certpilot (buy|renew|apply|cancel|show|policy) [^`]+`", r.message)


def test_el1_el2_chain_order_permanent_before_temporary():
    """EL-1/EL-2: the only temporary refusal (not expiring soon) comes last in the official chain."""
    assert OFFICIAL_RENEWAL[-1].__name__ == "must_be_expiring_soon"
