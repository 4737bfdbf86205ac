"""Pure VER-1/VER-2/DEP-6 decisions of certpilot.core.verification: tables, fixed clock, exact values."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from certpilot.adapters.probe.diagnose import PROC_CLOCK_SLACK, InspectableTarget, inspect_target
from certpilot.adapters.probe.diagnose import facts as dfacts
from certpilot.adapters.probe.scale import averify_served
from certpilot.adapters.probe.tls import EndpointProber
from certpilot.core.errors import Reason
from certpilot.core.verification import (
    ChainStatus,
    Diagnosis,
    DiagnosisCode,
    DiagnosisFacts,
    Endpoint,
    ProbeOutcome,
    ProbeResult,
    classify,
    diagnose,
    name_matches,
    serves,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NB, NA = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
OLD, NEW, OTHER = "a" * 64, "b" * 64, "c" * 64
EP = Endpoint("127.0.0.1", 8443, "shop.example.test")


@pytest.mark.parametrize("server_name, names, expected", [
    ("shop.example.test", ("shop.example.test",), True),
    ("SHOP.example.test.", ("shop.example.test",), True),           # case and trailing dot
    ("a.example.test", ("*.example.test",), True),
    ("example.test", ("*.example.test",), False),                   # a wildcard needs a label
    ("b.a.example.test", ("*.example.test",), False),               # exactly one label (UP-1)
    ("other.test", ("shop.example.test", "www.example.test"), False),
    ("192.0.2.10", ("192.0.2.10",), True),
    ("192.0.2.10", ("*.0.2.10", "192.0.2.11"), False),              # IPs match exactly
    ("::1", ("0:0:0:0:0:0:0:1",), True),
])
def test_ver1_name_matches_sni(server_name, names, expected):
    """VER-1: the served certificate must cover the SNI name asked for."""
    assert name_matches(server_name, names) is expected


@pytest.mark.parametrize("now, name_ok, chain, expected", [
    (NOW, True, ChainStatus.COMPLETE, ProbeOutcome.OK),
    (NA + timedelta(seconds=1), True, ChainStatus.COMPLETE, ProbeOutcome.EXPIRED),
    (NB - timedelta(seconds=1), True, ChainStatus.COMPLETE, ProbeOutcome.EXPIRED),   # not yet valid
    (NA, True, ChainStatus.COMPLETE, ProbeOutcome.OK),                               # inclusive bound
    (NOW, False, ChainStatus.COMPLETE, ProbeOutcome.WRONG_NAME),
    (NOW, True, ChainStatus.INCOMPLETE, ProbeOutcome.INCOMPLETE_CHAIN),
    (NOW, True, ChainStatus.UNTRUSTED, ProbeOutcome.UNTRUSTED),
    (NA + timedelta(days=1), False, ChainStatus.INCOMPLETE, ProbeOutcome.EXPIRED),   # most urgent first
    (NOW, False, ChainStatus.INCOMPLETE, ProbeOutcome.WRONG_NAME),
])
def test_dep6_classify_most_urgent_fault_first(now, name_ok, chain, expected):
    """DEP-6/VER-1: expiry, then name, then chain (incomplete before untrusted)."""
    assert classify(now=now, not_before=NB, not_after=NA, name_ok=name_ok, chain=chain) is expected


def probe(fp: str | None = OLD, *, outcome=ProbeOutcome.OK, chain=ChainStatus.COMPLETE, not_after=NA,
          error="") -> ProbeResult:
    if fp is None:
        return ProbeResult(EP, outcome, error=error)
    return ProbeResult(EP, outcome, fingerprint=fp, not_after=not_after, chain=chain, names=("shop.example.test",))


@pytest.mark.parametrize("result, fingerprint, not_after, expected", [
    (probe(NEW), NEW, None, True),
    (probe(NEW), NEW.upper(), None, True),
    (probe(NEW), ":".join(NEW[i:i + 2] for i in range(0, 64, 2)), None, True),   # colon form
    (probe(OLD), NEW, NA, False),                   # fingerprint wins over a coincident expiry
    (probe(OLD, not_after=NA), None, NA, True),     # the seed's criterion: expiry equals the new one
    (probe(OLD, not_after=NB), None, NA, False),
    (probe(None, outcome=ProbeOutcome.REFUSED), NEW, NA, False),
])
def test_ver1_served_by_fingerprint_or_expiry(result, fingerprint, not_after, expected):
    """VER-1: deployed when the served certificate is the new one (fingerprint), or by expiry."""
    assert serves(result, fingerprint=fingerprint, not_after=not_after) is expected


def facts(p: ProbeResult, **kw) -> DiagnosisFacts:
    base = dict(probe=p, new_fingerprint=NEW, old_fingerprint=OLD, target="nginx at 127.0.0.1:8443",
                deployed_fingerprint=NEW, deployed_at=NOW, reloaded_at=NOW + timedelta(seconds=1),
                reload_hint="run `nginx -s reload`")
    base.update(kw)
    return DiagnosisFacts(**base)


T = "nginx at 127.0.0.1:8443 (127.0.0.1:8443 (SNI shop.example.test))"


@pytest.mark.parametrize("f, code", [
    (facts(probe(NEW)), DiagnosisCode.SERVING_NEW),
    (facts(probe(NEW, outcome=ProbeOutcome.INCOMPLETE_CHAIN, chain=ChainStatus.INCOMPLETE)),
     DiagnosisCode.INCOMPLETE_CHAIN),
    (facts(probe(None, outcome=ProbeOutcome.TIMEOUT, error="no TLS handshake within 5s")), DiagnosisCode.UNREACHABLE),
    # (1) files first — even when the reload is also missing
    (facts(probe(OLD), deployed_fingerprint=OLD, reloaded_at=NOW - timedelta(hours=1)),
     DiagnosisCode.FILES_NOT_DEPLOYED),
    (facts(probe(OLD), deployed_fingerprint=OTHER), DiagnosisCode.FILES_NOT_DEPLOYED),
    # (2) reload
    (facts(probe(OLD), reloaded_at=NOW - timedelta(seconds=1)), DiagnosisCode.NOT_RELOADED),
    (facts(probe(OLD), reloaded_at=NOW - timedelta(milliseconds=20), clock_slack=timedelta(milliseconds=30)),
     DiagnosisCode.UNKNOWN),                                 # within the clocks' resolution: counted as after
    # (3) fronted
    (facts(probe(OTHER)), DiagnosisCode.FRONTED),
    (facts(probe(OLD), intermediaries={OLD: "CDN edge"}), DiagnosisCode.FRONTED),   # a CDN holds the old one
    # (4) chain
    (facts(probe(OLD, chain=ChainStatus.INCOMPLETE)), DiagnosisCode.INCOMPLETE_CHAIN),
    (facts(probe(OLD)), DiagnosisCode.UNKNOWN),
    # unknown facts are passed over, never guessed
    (facts(probe(OLD), deployed_fingerprint=None, deployed_at=None, reloaded_at=None), DiagnosisCode.UNKNOWN),
    (facts(probe(OTHER), old_fingerprint=None, deployed_fingerprint=None), DiagnosisCode.UNKNOWN),
])
def test_ver2_diagnosis_checks_in_order(f, code):
    """VER-2: files deployed, then reload, then intermediaries, then chain — first failing check wins."""
    d = diagnose(f)
    assert d.code is code, str(d)
    assert d.rule == "VER-2"
    assert d.ok is (code is DiagnosisCode.SERVING_NEW)


@pytest.mark.parametrize("f, message", [
    (facts(probe(OLD), reloaded_at=datetime(2026, 3, 1, 11, 0, tzinfo=UTC)),
     f"{T} still serves the old certificate although the new files are in place (written "
     "2026-03-01T12:00:00Z): the server was not reloaded since (last start 2026-03-01T11:00:00Z) — "
     "run `nginx -s reload`."),
    (facts(probe(OLD), deployed_fingerprint=OLD),
     f"{T} still serves the old certificate: the certificate file on the target is the old certificate, "
     f"not the new one ({'b' * 16}…) — deploy the new certificate files again, then reload."),
    (facts(probe(OTHER), intermediaries={OTHER: "CloudFront distribution E1"}),
     f"{T} answers with a certificate that is neither the old nor the new one ({'c' * 16}…, names "
     "shop.example.test): it is served by CloudFront distribution E1 — deploy the new certificate there "
     "too, or point the name at the server."),
    (facts(probe(OLD), intermediaries={OLD: "ELB app/shop"}),
     f"{T} still answers with the old certificate ({'a' * 16}…, names shop.example.test): it is served by "
     "ELB app/shop — deploy the new certificate there too, or point the name at the server."),
    (facts(probe(OLD)),
     f"{T} still serves the old certificate ({'a' * 16}…) and no check explains why (files new or unknown, "
     "reload after them or unknown): look for a second server or listener answering this name, then "
     "verify again."),
    (facts(probe(NEW, chain=ChainStatus.INCOMPLETE)),
     f"{T} serves an incomplete chain: an intermediate certificate is missing (DEP-6) — deploy the full "
     "chain (leaf followed by every intermediate) and reload."),
])
def test_ver2_diagnosis_sentences_say_what_to_do(f, message):
    """VER-2: each diagnosis is a sentence an operator can act on (exact text)."""
    assert diagnose(f).message == message


def test_ver2_diagnosis_str_carries_code():
    """The code leads the printed diagnosis, for logs and notifications."""
    assert str(Diagnosis(DiagnosisCode.FRONTED, "x")) == "[fronted] x"


class ScriptedProber:
    """Answers probes from a script (the orchestration of VER-1 polling, without a network)."""

    def __init__(self, fingerprints: list[str]):
        self.script = list(fingerprints)
        self.calls = 0

    async def probe(self, endpoint, *, timeout=None, now=None):
        self.calls += 1
        fp = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return probe(fp)


def run_verify(script: list[str], **kw):
    scripted = ScriptedProber(script)
    assert isinstance(scripted, EndpointProber)   # the fake keeps the real prober's Protocol
    report = asyncio.run(averify_served([EP], NEW, deadline=kw.pop("deadline", 2.0), trust=scripted,
                                        first_delay=0.001, confirm_interval=0.001, **kw))
    return report.endpoints[0], scripted.calls


def test_ver1_one_glimpse_of_new_certificate_is_not_enough():
    """VER-1: during a graceful reload old and new interleave (measured on nginx); an endpoint is
    served only once the new certificate stays for the settle time."""
    served, calls = run_verify([OLD, NEW, OLD, NEW, NEW, OLD, NEW], settle=0.02)
    assert served.served and served.result.fingerprint == NEW
    assert served.attempts >= 7 and calls == served.attempts


def test_ver1_never_served_is_reported_after_deadline():
    """VER-1: the last probe is kept for the diagnosis when the deadline passes."""
    served, _ = run_verify([OLD], deadline=0.05, settle=0.0)
    assert (served.served, served.result.fingerprint) == (False, OLD)


def test_ver1_needs_fingerprint_or_expiry():
    """VER-1 cannot decide without knowing the new certificate."""
    with pytest.raises(ValueError, match="fingerprint or expiry"):
        asyncio.run(averify_served([EP], None, None))


@pytest.mark.parametrize("code, reason, rule", [
    (DiagnosisCode.NOT_RELOADED, Reason.NOT_SERVED, "VER-2"),
    (DiagnosisCode.FRONTED, Reason.NOT_SERVED, "VER-2"),
    (DiagnosisCode.INCOMPLETE_CHAIN, Reason.CHAIN_INCOMPLETE, "DEP-6"),
    (DiagnosisCode.SERVING_NEW, None, None),
])
def test_ver2_diagnosis_as_refusal(code, reason, rule):
    """VER-2: a failed verification becomes a refusal with a Reason and the diagnosis sentence."""
    refusal = Diagnosis(code, "what failed; what to do").refusal()
    if reason is None:
        assert refusal is None
    else:
        assert (refusal.reason, refusal.message, refusal.rule) == (reason, "what failed; what to do", rule)


class FakeTarget:
    """A deploy target exposing the facts VER-2 asks for (the deploy part's targets do the same)."""

    reload_hint = "run `systemctl reload nginx`"

    def deployed_fingerprint(self):
        return NEW

    def last_reload(self):
        return NOW - timedelta(minutes=5)


def test_ver2_inspect_target_uses_the_targets_facts():
    """VER-2: `deployed_fingerprint()`, `last_reload()` and `reload_hint` of a target feed the diagnosis."""
    target = FakeTarget()
    assert isinstance(target, InspectableTarget)
    inspection = inspect_target(target, deployed_at=NOW)
    assert (inspection.deployed_fingerprint, inspection.reloaded_at, inspection.clock_slack) == (
        NEW, NOW - timedelta(minutes=5), PROC_CLOCK_SLACK)
    d = diagnose(dfacts(probe(OLD), inspection, new_fingerprint=NEW, old_fingerprint=OLD, target="web1"))
    assert d.code is DiagnosisCode.NOT_RELOADED
    assert d.message.endswith("run `systemctl reload nginx`.")


class _LeafOnlySsl:
    """An SSL object without the private chain accessor (another Python or implementation)."""

    def getpeercert(self, binary_form=False):
        return b"leaf-der"


class _Transport:
    def __init__(self, sslobj):
        self.sslobj = sslobj

    def get_extra_info(self, name):
        return self.sslobj if name == "ssl_object" else None


def test_dep6_chain_reader_falls_back_to_the_leaf():
    """DEP-6: without `get_unverified_chain` only the leaf is read (a served intermediate then
    counts as missing: the safe side); no SSL object means nothing served."""
    from certpilot.adapters.probe.tls import _served_ders

    assert _served_ders(_Transport(_LeafOnlySsl())) == [b"leaf-der"]
    assert _served_ders(_Transport(None)) == []
