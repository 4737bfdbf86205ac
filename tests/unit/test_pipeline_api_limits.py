"""Which remote-API limits a stage takes (`operations.pipeline.api_limits`), and how the ca-review
stage holds the CA's slot: none for the embedded private CA (a local signature has no API to
rate-limit), one acquisition per burst of polls for a remote CA, given back before a long wait."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from certpilot.adapters.issuers.private_ca import PrivateCa
from certpilot.core.models import Certificate, CertType, Origin, Status, ValidationMethod
from certpilot.core.outcomes import ReviewOutcome
from certpilot.operations import pipeline


class RemoteCa:
    """Any issuer that is not the embedded private CA (an ACME CA, a commercial CA's API)."""


def _cert(method: ValidationMethod = ValidationMethod.DNS_AUTO, state: Status = Status.UNDER_REVIEW) -> Certificate:
    return Certificate(id="c1", common_name="shop.example.com", names=["shop.example.com"], cert_type=CertType.SINGLE,
                       origin=Origin.OFFICIAL, state=state, validation_method=method)


def test_the_embedded_private_ca_takes_no_api_limit_in_any_stage():
    private = PrivateCa(store=None, vault=None, clock=lambda: None)
    assert pipeline.api_limits(private, _cert(), "validation") == ()
    assert pipeline.api_limits(private, _cert(), "ca-review") == ()


@pytest.mark.parametrize(("method", "validation"), [
    (ValidationMethod.DNS_AUTO, (pipeline.CA_LIMIT, pipeline.DNS_LIMIT)),
    (ValidationMethod.DELEGATED, (pipeline.CA_LIMIT, pipeline.DNS_LIMIT)),
    (ValidationMethod.DNS_MANUAL, (pipeline.CA_LIMIT,)),  # a human adds the record: no DNS API
    (ValidationMethod.HTTP_FILE, (pipeline.CA_LIMIT,)),
])
def test_a_remote_ca_takes_the_ca_limit_and_the_dns_limit_only_where_a_provider_writes(method, validation):
    assert pipeline.api_limits(RemoteCa(), _cert(method), "validation") == validation
    assert pipeline.api_limits(RemoteCa(), _cert(method), "ca-review") == (pipeline.CA_LIMIT,)


class _Repo:
    def __init__(self, _session):
        pass

    def certificate_model(self, _cid):
        return _cert()

    def audit(self, _cid):
        return []


def _review(monkeypatch, issuer, answers: list[Status], poll_seconds: float = 120.0):
    """Run `wait_review` with the CA answering `answers` in turn; returns (gate events, sleeps)."""
    events: list[str] = []
    sleeps: list[float] = []
    clock = {"now": 0.0}

    @contextmanager
    def session(readonly=False):
        yield None

    @contextmanager
    def gate(names):
        events.append("take " + ",".join(names))
        yield
        events.append("give back")

    def follow(_svc, cid, at=None, *, gate=pipeline._no_gate, actor=""):
        events.append("poll")
        return ReviewOutcome(certificate_id=cid, state=answers.pop(0), polled=True)

    def sleep(seconds):
        sleeps.append(round(seconds, 4))
        clock["now"] += seconds

    monkeypatch.setattr(pipeline, "Repository", _Repo)
    monkeypatch.setattr(pipeline, "follow_review", follow)
    monkeypatch.setattr(pipeline.time, "sleep", sleep)
    monkeypatch.setattr(pipeline.time, "monotonic", lambda: clock["now"])
    svc = SimpleNamespace(session=session, poll_seconds=poll_seconds, issuer_for=lambda cert, emergency=False: issuer)
    out = pipeline.wait_review(svc, "c1", gate=gate)
    return out, events, sleeps


def test_a_remote_review_takes_the_ca_slot_once_per_burst_of_polls_and_gives_it_back_before_a_long_wait(monkeypatch):
    answers = [Status.UNDER_REVIEW] * 7 + [Status.ISSUED]
    out, events, sleeps = _review(monkeypatch, RemoteCa(), answers)
    assert out.state is Status.ISSUED and out.attempt == 1
    # Waits 0.2 s, then ×1.5: up to 1.51875 s the slot is kept across the wait; 2.278 s > 2 s: given back.
    assert sleeps == [0.2, 0.3, 0.45, 0.675, 1.0125, 1.5188, 2.2781]
    assert events == (["take certpilot-ca-api"] + ["poll"] * 7 + ["give back", "take certpilot-ca-api", "poll",
                                                                   "give back"])


def test_the_private_ca_review_never_enters_the_gate(monkeypatch):
    private = PrivateCa(store=None, vault=None, clock=lambda: None)
    out, events, _ = _review(monkeypatch, private, [Status.UNDER_REVIEW, Status.ISSUED])
    assert out.state is Status.ISSUED
    assert events == ["poll", "poll"]
