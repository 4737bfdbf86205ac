"""Pure domain-validation rules: DV-4 file validation, DV-5/DV-6 contact, DV-7 CAA evaluation."""

from __future__ import annotations

import pytest

from certpilot.core.errors import Reason
from certpilot.core.models import Contact, Level
from certpilot.core.models import ValidationMethod as M
from certpilot.core.validation import (
    CaaRecord,
    caa_lookup_names,
    check_caa,
    check_validation_method,
    contact_refusal,
    missing_contact,
)

WILD = ["*.example.com", "example.com"]
PLAIN = ["www.example.com"]


FULL = Contact(name="Ann Ops", email="ann@example.com", phone="+81-3-0000-0000")


@pytest.mark.parametrize("level, contact, missing", [
    (Level.DV, None, ()),                                        # DV: the CA verifies only the domain
    (Level.OV, FULL, ()),
    (Level.EV, FULL, ()),
    (Level.OV, None, ("name", "email", "phone")),
    (Level.EV, Contact(email="ann@example.com"), ("name", "phone")),
    (Level.OV, Contact(name="Ann", email="ann@example.com"), ("phone",)),
])
def test_dv5_dv6_contact_needed_for_ov_ev(level, contact, missing):
    """DV-5/DV-6: OV and EV need name, email and phone for the CA's verification; DV needs none.
    One rule: the submission (DV-6) and the managed start (PL-5) both ask `missing_contact`."""
    assert missing_contact(level, contact) == missing
    refusal = contact_refusal(level, contact)
    assert (refusal is None) is (not missing)
    if refusal is not None:
        assert refusal.reason is Reason.CONTACT_REQUIRED and refusal.rule == "DV-6"
        assert refusal.message == (
            f"{level.value} certificates need a contact the CA can verify with; missing {', '.join(missing)}: "
            "set the certificate owner's name, email and phone, then submit again.")


@pytest.mark.parametrize("names, method, refused", [
    (WILD, M.HTTP_FILE, True),
    (["*.a.example.com"], M.HTTP_FILE, True),
    (PLAIN, M.HTTP_FILE, False),
    (WILD, M.DNS_AUTO, False),
    (WILD, M.DNS_MANUAL, False),
    (WILD, M.DELEGATED, False),
])
def test_dv4_wildcard_file_validation_refused(names, method, refused):
    """DV-4: wildcard names cannot use file validation."""
    refusal = check_validation_method(names, method)
    assert (refusal is not None) is refused
    if refused:
        assert refusal.reason is Reason.WILDCARD_FILE_VALIDATION and refusal.rule == "DV-4"
        assert refusal.message.startswith(f"{[n for n in names if n.startswith('*.')][0]} cannot be validated by file")
        assert "use automatic DNS validation" in refusal.message


def test_dv4_message_names_every_wildcard():
    """DV-4."""
    refusal = check_validation_method(["*.a.example", "b.example", "*.c.example"], M.HTTP_FILE)
    assert refusal.message == (
        "*.a.example, *.c.example cannot be validated by file: CAs accept only DNS validation for wildcard "
        "names; use automatic DNS validation (configure a DNS provider for the zone) or a manual DNS TXT record.")


def rec(tag: str, value: str, flags: int = 0) -> CaaRecord:
    return CaaRecord(flags, tag, value)


LE = ("letsencrypt.org",)


@pytest.mark.parametrize("name, records, allowed", [
    ("www.example.com", [], True),
    ("www.example.com", [rec("issue", "letsencrypt.org")], True),
    ("www.example.com", [rec("issue", "LetsEncrypt.org.; validationmethods=dns-01")], True),
    ("www.example.com", [rec("issue", "otherca.example")], False),
    ("www.example.com", [rec("issue", ";")], False),
    ("www.example.com", [rec("iodef", "mailto:sec@example.com")], True),          # no issue tag: any CA
    ("www.example.com", [rec("issuewild", "otherca.example")], True),            # issuewild is for wildcards
    ("*.example.com", [rec("issue", "letsencrypt.org"), rec("issuewild", ";")], False),
    ("*.example.com", [rec("issue", "otherca.example"), rec("issuewild", "letsencrypt.org")], True),
    ("*.example.com", [rec("issue", "letsencrypt.org")], True),                  # no issuewild: issue applies
    ("www.example.com", [rec("issue", "letsencrypt.org"), rec("tbs", "x", 128)], False),  # unknown critical
    ("www.example.com", [rec("issue", "letsencrypt.org"), rec("tbs", "x", 0)], True),     # unknown, not critical
])
def test_dv7_check_caa_table(name, records, allowed):
    """DV-7: RFC 8659 issue / issuewild / critical flag semantics."""
    refusal = check_caa(name, "example.com" if records else None, records, LE)
    assert (refusal is None) is allowed
    if refusal is not None:
        assert refusal.reason is Reason.CAA_FORBIDS and refusal.rule == "DV-7"


def test_dv7_caa_message_says_what_to_add():
    """DV-7."""
    refusal = check_caa("www.example.com", "example.com.", [rec("issue", "otherca.example"),
                                                            rec("issue", "third.example")], LE)
    assert refusal.message == (
        'CAA at example.com allows only otherca.example, third.example to issue (issue) for www.example.com; '
        'add `0 issue "letsencrypt.org"` at example.com or remove the CAA records that exclude letsencrypt.org.')


@pytest.mark.parametrize("name, expected", [
    ("www.example.com", ["www.example.com", "example.com", "com"]),
    ("*.a.example.com.", ["a.example.com", "example.com", "com"]),
    ("Example.COM", ["example.com", "com"]),
])
def test_dv7_caa_lookup_climbs_to_the_tld(name, expected):
    """DV-7: RFC 8659 tree climbing order."""
    assert caa_lookup_names(name) == expected
