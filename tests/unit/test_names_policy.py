"""Issue 17: brands and levels normalised to UP-2's canonical names; the name + `www.` name policy;
every eligibility refusal suggests a command that exists, with the real id filled in."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest

from certpilot.core.eligibility import CHAINS, RenewalInput, buy_command, next_step
from certpilot.core.errors import Reason, RefusedError, first_refusal
from certpilot.core.models import DEFAULT_POLICY, Certificate, CertType, Level, Origin, Spec, Status
from certpilot.core.names import (
    BRANDS,
    OWN_BRAND,
    canonical_brand,
    canonical_level,
    canonical_type,
    check_names,
    infer_type,
    is_www_pair,
    known_brand,
)
from certpilot.operations.common import suggested_commands


@pytest.mark.parametrize("given, canonical", [
    ("digicert", "DigiCert"), ("DIGICERT", "DigiCert"), (" DigiCert ", "DigiCert"),
    ("globalsign", "GlobalSign"), ("alibaba cloud", "Alibaba Cloud"), ("alibaba-cloud", "Alibaba Cloud"),
    ("AlibabaCloud", "Alibaba Cloud"), ("CERTPILOT", "certpilot"),
])
def test_up2_brand_in_any_case_maps_to_its_canonical_name(given, canonical):
    """UP-2: `--brand digicert` is DigiCert (the quota spec DigiCert certificates use, PAY-1)."""
    assert canonical_brand(given) == canonical == known_brand(given)


@pytest.mark.parametrize("given", ["Let's Encrypt", "digi cert inc", "", "Sectigo"])
def test_up2_unknown_brand_is_refused_with_the_list(given):
    """UP-2: a brand not offered is refused (UNKNOWN_BRAND), naming every brand that is."""
    with pytest.raises(RefusedError) as exc:
        canonical_brand(given)
    refusal = exc.value.refusal
    assert (refusal.reason, refusal.rule) == (Reason.UNKNOWN_BRAND, "UP-2")
    assert all(b in refusal.message for b in (*BRANDS, OWN_BRAND))
    assert known_brand(given) is None


@pytest.mark.parametrize("given, level", [("dv", Level.DV), ("Ov", Level.OV), (" EV ", Level.EV), (Level.OV, Level.OV)])
def test_up2_level_in_any_case(given, level):
    assert canonical_level(given) is level


def test_up2_unknown_level_and_type_name_the_choices():
    with pytest.raises(ValueError, match="DV, OV, EV"):
        canonical_level("XV")
    assert canonical_type("Wildcard") is CertType.WILDCARD
    with pytest.raises(ValueError, match="single, wildcard, multi"):
        canonical_type("double")


@pytest.mark.parametrize("names, expected", [
    (["example.com", "www.example.com"], CertType.SINGLE),
    (["www.example.com", "example.com"], CertType.SINGLE),
    (["shop.example.com", "www.shop.example.com"], CertType.SINGLE),
    (["Example.COM.", "WWW.example.com"], CertType.SINGLE),
    (["a.example.com", "www.b.example.com"], CertType.MULTI),        # www. of another name
    (["example.com", "www.example.com", "mail.example.com"], CertType.MULTI),  # one more name
    (["example.com", "www.www.example.com"], CertType.MULTI),
    (["*.example.com", "example.com"], CertType.WILDCARD),             # unchanged
])
def test_up1_el1_www_pair_is_single_domain(names, expected):
    """UP-1, EL-1(b), UP-2 — the policy decided for issue 17: a name together with its own
    `www.` name is a *single-domain* certificate. Every brand UP-2 offers (Alibaba Cloud,
    DigiCert, GlobalSign) sells its single-domain certificates with the `www.` name included,
    and so does certpilot's own issuer; as multi-domain, such a certificate could never be
    renewed (EL-1b refuses multi-domain renewals) and would be billed as multi-domain quota
    (PAY-1). Only the exact pair qualifies, for every brand and level: a third name, or `www.`
    in front of a different name, is multi-domain as before."""
    assert infer_type(names) is expected
    assert check_names(names, expected, DEFAULT_POLICY) is None
    assert is_www_pair(names) is (expected is CertType.SINGLE)


def test_up1_www_pair_fits_single_but_not_two_unrelated_names():
    assert check_names(["example.com", "www.example.com"], CertType.SINGLE, DEFAULT_POLICY) is None
    refusal = check_names(["a.example.com", "b.example.com"], CertType.SINGLE, DEFAULT_POLICY)
    assert refusal.reason is Reason.TYPE_MISMATCH and "multi-domain" in refusal.message


def test_el1_www_pair_certificate_is_renewable():
    """EL-1(b): an official {name, www.name} certificate is single-domain, so it is renewed."""
    c = _cert(names=["shop.example.com", "www.shop.example.com"], cert_type=infer_type(
        ["shop.example.com", "www.shop.example.com"]))
    assert first_refusal(CHAINS[Origin.OFFICIAL], RenewalInput(c, _at("2025-09-10"), DEFAULT_POLICY)) is None


# ---------------------------------------------------------------- suggested commands exist


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def _cert(**kw) -> Certificate:
    base = dict(id="crt-0123456789abcdef", common_name="shop.example.com", names=["shop.example.com"],
                cert_type=CertType.SINGLE, origin=Origin.OFFICIAL, level=Level.DV, brand="DigiCert",
                not_before=_at("2024-10-01"), not_after=_at("2025-09-30"), state=Status.ISSUED)
    return Certificate(**{**base, **kw})


# Every check of every chain refuses at least one of these (the test below proves it).
CASES = [
    ({}, "2025-06-01", None),                                                      # EL-1a not yet
    ({}, "2025-10-05", None),                                                      # EL-2 expired
    ({"cert_type": CertType.MULTI, "names": ["a.example.com", "b.example.com"]}, "2025-09-10", None),  # EL-1b
    ({}, "2025-09-10", Spec(brand="GlobalSign", level=Level.OV, cert_type=CertType.SINGLE)),  # EL-1c
    ({"state": Status.PENDING_APPLICATION}, "2025-09-10", None),                    # EL-1 not issued
    ({"state": Status.NOT_ACTIVATED}, "2025-09-10", None),
    ({"state": Status.UNDER_REVIEW}, "2025-09-10", None),
    ({"state": Status.REJECTED}, "2025-09-10", None),
    ({"origin": Origin.UPLOADED, "state": Status.UPLOADED}, "2025-06-01", None),    # EL-3 not due
    ({"origin": Origin.UPLOADED, "state": Status.CANCELLED}, "2025-09-10", None),   # EL-3 state
    ({"origin": Origin.PRIVATE_CA, "state": Status.UPLOADED, "publicly_trusted": False}, "2025-06-01", None),
    ({"origin": Origin.PRIVATE_CA, "state": Status.REVOKED, "publicly_trusted": False}, "2025-09-10", None),
]


def _parse(command: str):
    """Parse a suggested command with the real command line's parser (raises if it does not exist)."""
    from certpilot.cli import app

    tokens = shlex.split(command)
    assert tokens[0] == "certpilot", command
    return app.parse_args(tokens[1:], exit_on_error=False, print_error=False)


def test_el5_every_eligibility_refusal_suggests_a_command_that_parses_with_the_real_id():
    """EL-5 (issue 17): every check of every eligibility chain, when it refuses, suggests at least
    one `certpilot …` command; each parses with the CLI's own parser (the command and its options
    exist) and names the refused certificate's real id or names. No "apply and deploy it" prose
    without a command."""
    refused_by: set[str] = set()
    for fields, day, requested in CASES:
        c = _cert(**fields)
        i = RenewalInput(certificate=c, now=_at(day), policy=DEFAULT_POLICY, requested=requested)
        # Every check, not only the chain of the certificate's origin: a private-CA certificate
        # on the official path is refused by `must_not_be_private_ca` (EL-4).
        for check in dict.fromkeys(check for chain in CHAINS.values() for check in chain):
            refusal = check(i)
            if refusal is None:
                continue
            refused_by.add(check.__name__)
            commands = suggested_commands(refusal.message)
            assert commands, (check.__name__, refusal.message)
            for command in commands:
                _parse(command)
                assert c.id in command or "--name shop.example.com" in command or "--name a.example.com" in command
    every_check = {check.__name__ for chain in CHAINS.values() for check in chain}
    assert refused_by == every_check


def test_el1_buy_command_keeps_names_and_spec_and_parses():
    c = _cert(cert_type=CertType.MULTI, names=["a.example.com", "b.example.com"], brand="Alibaba Cloud")
    command = buy_command(c)
    assert command == ("certpilot buy --name a.example.com --name b.example.com --level DV "
                       "--brand 'Alibaba Cloud' --years 1")
    _, bound, _ = _parse(command)
    assert (bound.arguments["name"], bound.arguments["brand"]) == (["a.example.com", "b.example.com"],
                                                                   "Alibaba Cloud")


@pytest.mark.parametrize("state, command", [
    (Status.PENDING_APPLICATION, "certpilot apply crt-0123456789abcdef"),
    (Status.REJECTED, "certpilot apply crt-0123456789abcdef"),
    (Status.NOT_ACTIVATED, "certpilot cancel crt-0123456789abcdef"),
    (Status.UNDER_REVIEW, "certpilot show crt-0123456789abcdef"),
    (Status.ISSUED, "certpilot show crt-0123456789abcdef"),
])
def test_lc5_next_step_of_a_certificate_in_flight(state, command):
    assert next_step(_cert(state=state)) == command
    _parse(command)
