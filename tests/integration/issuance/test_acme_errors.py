"""The ACME adapter's error mapping and polling schedule (no server needed: the calls are injected)."""

from __future__ import annotations

import pytest
import requests
from acme import messages

from certpilot.adapters.issuers.acme import AcmeIssuer, problem_text
from certpilot.core.errors import PermanentError, TransientError


def issuer(**kw) -> AcmeIssuer:
    return AcmeIssuer("https://ca.invalid/dir", accounts=None, vault=None, **kw)


def problem(code: str, detail: str = "why", **kw) -> messages.Error:
    return messages.Error.with_code(code, detail=detail, **kw)


@pytest.mark.parametrize("code, family", [
    ("rateLimited", TransientError),
    ("serverInternal", TransientError),
    ("unauthorized", PermanentError),
    ("caa", PermanentError),
    ("dns", PermanentError),
    ("incorrectResponse", PermanentError),
    ("rejectedIdentifier", PermanentError),
    ("malformed", PermanentError),
])
def test_acme_problems_map_to_retry_or_refusal(code, family):
    """rateLimited/serverInternal are retried later; CA refusals are permanent with the CA's detail."""
    def call():
        raise problem(code, detail=f"detail of {code}")

    with pytest.raises(family) as info:
        issuer()._do("placing the ACME order", call)
    assert f"{code}: detail of {code}" in str(info.value)
    assert str(info.value).startswith("placing the ACME order: ")


def test_rate_limit_carries_retry_after():
    """rateLimited → TransientError with the CA's Retry-After."""
    err = problem("rateLimited", "too many certificates")
    err.retry_after = 42.0

    def call():
        raise err

    with pytest.raises(TransientError) as info:
        issuer()._do("placing the ACME order", call)
    assert info.value.retry_after == 42.0


def test_bad_nonce_retried_a_bounded_number_of_times():
    """badNonce is retried up to `nonce_retries` more times, then becomes a TransientError."""
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise problem("badNonce", "stale")
        return "ok"

    assert issuer(nonce_retries=3)._do("x", flaky) == "ok" and len(calls) == 4
    calls.clear()

    def always():
        calls.append(1)
        raise problem("badNonce", "stale")

    with pytest.raises(TransientError):
        issuer(nonce_retries=2)._do("x", always)
    assert len(calls) == 3


def test_network_errors_are_transient():
    def call():
        raise requests.ConnectionError("refused")

    with pytest.raises(TransientError) as info:
        issuer()._do("reading order", call)
    assert "cannot reach the CA at https://ca.invalid/dir" in str(info.value)


def test_problem_text_includes_subproblems():
    sub = messages.Error.with_code("caa", detail="CAA forbids", identifier=messages.Identifier(
        typ=messages.IDENTIFIER_FQDN, value="a.example.test"))
    err = messages.Error.with_code("rejectedIdentifier", detail="some names refused", subproblems=(sub,))
    assert problem_text(err) == "rejectedIdentifier: some names refused; caa (a.example.test): CAA forbids"


class FakeResponse:
    def __init__(self, retry_after: str | None = None):
        self.headers = {"Retry-After": retry_after} if retry_after else {}


def test_polling_starts_short_grows_and_honours_retry_after():
    """Polling: first delay 50 ms, ×1.5 up to the cap; a Retry-After is never cut short."""
    slept: list[float] = []
    clock = [0.0]

    def sleep(s):
        slept.append(round(s, 4))
        clock[0] += s

    iss = issuer(first_delay=0.05, max_delay=0.2, sleep=sleep, monotonic=lambda: clock[0])
    answers = iter([("pending", FakeResponse())] * 5 + [("pending", FakeResponse("1"))] + [("valid", FakeResponse())])
    assert iss._wait("order", lambda: next(answers), lambda v: v == "valid", deadline=100) == "valid"
    assert slept[:5] == [0.05, 0.075, 0.1125, 0.1688, 0.2]
    assert 0.9 <= slept[5] <= 1.0


def test_polling_deadline_is_transient():
    """A validation still pending at the deadline is retried later (the next run resumes the order)."""
    clock = [0.0]

    def sleep(s):
        clock[0] += s

    iss = issuer(sleep=sleep, monotonic=lambda: clock[0], validation_timeout=1)
    with pytest.raises(TransientError, match="still not done"):
        iss._wait("order", lambda: ("pending", FakeResponse()), lambda v: False, deadline=1.0)
    assert clock[0] == pytest.approx(1.0)


def test_acme_issuer_implements_the_issuer_protocol():
    """The ACME adapter is an `Issuer` (the private CA's check is in test_private_ca)."""
    from certpilot.adapters.issuers.base import Issuer

    iss = issuer(publicly_trusted=False)
    assert isinstance(iss, Issuer)
    assert iss.name == "acme:https://ca.invalid/dir" and iss.publicly_trusted is False
