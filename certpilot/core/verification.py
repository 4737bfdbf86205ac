"""Pure decisions of verification: what a TLS probe saw (VER-1) and why the new certificate is
not what an endpoint serves (VER-2, DEP-6).

No I/O here: `certpilot.adapters.probe` gathers the facts (a handshake, the files on a target,
the server's process start times) and these functions decide over them. Time is an argument.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from certpilot.core.errors import Reason, Refusal


class Family(StrEnum):
    """Which address family a probe connects over."""

    AUTO = "auto"
    IPV4 = "ipv4"
    IPV6 = "ipv6"


@dataclass(frozen=True)
class Endpoint:
    """Where a certificate is served: `host:port`, asked for `sni` (defaults to host)."""

    host: str
    port: int = 443
    sni: str | None = None
    family: Family = Family.AUTO

    @property
    def server_name(self) -> str:
        """The name sent in SNI and matched against the certificate."""
        return self.sni or self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = f" (SNI {self.sni})" if self.sni and self.sni != self.host else ""
        return f"{host}:{self.port}{suffix}"


class ProbeOutcome(StrEnum):
    """What one probe of one endpoint found; every failure is an outcome, never an exception."""

    OK = "ok"
    """Handshake done; the leaf is in date, matches the name and chains to the trust bundle."""
    REFUSED = "refused"
    """Nothing listens: the TCP connection was refused."""
    TIMEOUT = "timeout"
    """No TCP connection or no finished handshake within the timeout."""
    UNREACHABLE = "unreachable"
    """The host name does not resolve or the network is unreachable."""
    HANDSHAKE_FAILED = "handshake_failed"
    """The TCP connection opened but TLS failed (no certificate for the name, not TLS, alert)."""
    EXPIRED = "expired"
    """The served leaf is outside its validity window (expired or not yet valid)."""
    WRONG_NAME = "wrong_name"
    """The served leaf does not cover the name asked for."""
    INCOMPLETE_CHAIN = "incomplete_chain"
    """An intermediate is missing: the served chain stops below the trust bundle (DEP-6)."""
    UNTRUSTED = "untrusted"
    """The served chain ends at a root the trust bundle does not hold (or a signature is bad)."""
    INVALID_CHAIN = "invalid_chain"
    """Every link is there but a certificate of the path is not valid for serving: an expired
    intermediate, an issuer that is not a CA, a leaf not for server authentication."""


CONNECTION_FAILURES = frozenset(
    {ProbeOutcome.REFUSED, ProbeOutcome.TIMEOUT, ProbeOutcome.UNREACHABLE, ProbeOutcome.HANDSHAKE_FAILED}
)


class ChainStatus(StrEnum):
    """How the served chain relates to the trust bundle."""

    COMPLETE = "complete"
    """Every link is served and the last one is issued by (or is) a trusted root."""
    INCOMPLETE = "incomplete"
    """The chain stops at a certificate whose issuer is neither served nor trusted."""
    UNTRUSTED = "untrusted"
    """The chain ends at a self-signed root that is not trusted, or a signature does not verify."""
    UNKNOWN = "unknown"
    """Not checked (no handshake)."""


class TrustFault(StrEnum):
    """Why a served chain does not verify for the name asked for (the strict verifier's "no",
    explained). `NONE` when it verifies."""

    NONE = "none"
    EXPIRED_LEAF = "expired_leaf"
    """The leaf is outside its validity window."""
    NO_SAN = "no_san"
    """The leaf has no subjectAltName: a CN-only certificate, refused by browsers and by RFC 6125."""
    WRONG_NAME = "wrong_name"
    """The leaf's subjectAltName does not cover the name asked for (the SNI)."""
    SELF_SIGNED = "self_signed"
    """The leaf is self-signed and not itself in the trust bundle."""
    INCOMPLETE = "incomplete"
    """An intermediate is missing: the served chain stops below the trust bundle (DEP-6)."""
    UNTRUSTED_ROOT = "untrusted_root"
    """The chain ends at a root the trust bundle does not hold."""
    BAD_SIGNATURE = "bad_signature"
    """A served issuer has the right name but did not sign the certificate below it."""
    EXPIRED_INTERMEDIATE = "expired_intermediate"
    """A CA certificate of the path is outside its validity window."""
    ISSUER_NOT_CA = "issuer_not_ca"
    """A certificate that signed another one is not a CA (basicConstraints CA:FALSE or absent)."""
    NOT_SERVER_AUTH = "not_server_auth"
    """The leaf's extendedKeyUsage does not include serverAuth."""
    OTHER = "other"
    """The verifier refused the chain for a reason none of the checks above names (its message is kept)."""


_FAULT_OUTCOMES = {
    TrustFault.NONE: ProbeOutcome.OK,
    TrustFault.EXPIRED_LEAF: ProbeOutcome.EXPIRED,
    TrustFault.NO_SAN: ProbeOutcome.WRONG_NAME,
    TrustFault.WRONG_NAME: ProbeOutcome.WRONG_NAME,
    TrustFault.SELF_SIGNED: ProbeOutcome.UNTRUSTED,
    TrustFault.INCOMPLETE: ProbeOutcome.INCOMPLETE_CHAIN,
    TrustFault.UNTRUSTED_ROOT: ProbeOutcome.UNTRUSTED,
    TrustFault.BAD_SIGNATURE: ProbeOutcome.UNTRUSTED,
}

FAULT_ADVICE = {
    TrustFault.EXPIRED_LEAF: "the served certificate is expired or not yet valid — deploy a current one",
    TrustFault.NO_SAN: "the certificate has no subjectAltName (CN only), which clients refuse — reissue it "
                       "with the name in subjectAltName",
    TrustFault.WRONG_NAME: "the certificate does not cover the name asked for — serve a certificate whose "
                           "subjectAltName includes it, or check which server block answers this name",
    TrustFault.SELF_SIGNED: "the certificate is self-signed — serve one issued by a trusted CA, or add it to "
                            "this target's trust bundle if it is meant to be pinned",
    TrustFault.INCOMPLETE: "an intermediate certificate is missing (DEP-6) — deploy the full chain (leaf "
                           "followed by every intermediate) and reload",
    TrustFault.UNTRUSTED_ROOT: "the chain ends at a root the trust bundle does not hold — serve a chain from a "
                               "trusted CA, or give the target the private CA's bundle",
    TrustFault.BAD_SIGNATURE: "a served intermediate did not sign the certificate below it — serve the "
                              "intermediate that issued the leaf",
    TrustFault.EXPIRED_INTERMEDIATE: "an intermediate certificate of the chain is expired — deploy the "
                                     "CA's current intermediate with the leaf",
    TrustFault.ISSUER_NOT_CA: "the leaf is signed by a certificate that is not a CA (CA:FALSE) — serve a leaf "
                              "issued by a real CA, with that CA's intermediates",
    TrustFault.NOT_SERVER_AUTH: "the certificate is not for server authentication (extendedKeyUsage lacks "
                                "serverAuth) — reissue it for TLS servers",
    TrustFault.OTHER: "the chain does not verify — check it with `openssl s_client -showcerts`",
}


def fault_outcome(fault: TrustFault) -> ProbeOutcome:
    """The probe outcome of a trust fault (EXPIRED, WRONG_NAME, INCOMPLETE_CHAIN, UNTRUSTED, else
    INVALID_CHAIN)."""
    return _FAULT_OUTCOMES.get(fault, ProbeOutcome.INVALID_CHAIN)


@dataclass(frozen=True)
class ChainFacts:
    """What the hand-written walk saw of a chain the strict verifier refused (to say why).

    Attributes:
        now: the verification time.
        leaf_not_before, leaf_not_after: the leaf's validity window.
        has_san: whether the leaf has a subjectAltName extension.
        name_ok: whether its SAN covers the name asked for.
        self_signed: whether the leaf signed itself (issuer = subject, signature verifies).
        leaf_trusted: whether the leaf itself is in the trust bundle.
        walk: what the issuer walk over served + trusted certificates concluded.
        bad_signature: the walk found an issuer by name whose signature did not verify.
        path_windows: validity windows of the CA certificates the walk went through, leaf's issuer first.
        path_is_ca: for each of them, whether it is a CA (basicConstraints CA:TRUE).
        leaf_server_auth: False when the leaf has an extendedKeyUsage without serverAuth.
    """

    now: datetime
    leaf_not_before: datetime
    leaf_not_after: datetime
    has_san: bool
    name_ok: bool
    self_signed: bool = False
    leaf_trusted: bool = False
    walk: ChainStatus = ChainStatus.UNKNOWN
    bad_signature: bool = False
    path_windows: tuple[tuple[datetime, datetime], ...] = ()
    path_is_ca: tuple[bool, ...] = ()
    leaf_server_auth: bool = True


def explain_fault(f: ChainFacts) -> TrustFault:
    """Why a chain the strict verifier refused does not verify, most urgent first: the leaf's
    dates, its names, how it chains (self-signed, missing intermediate, untrusted root, bad
    signature), then the path's own faults (expired intermediate, issuer not a CA, EKU).

    Only called after the strict verifier (RFC 5280 + CA/B web profile, in `cryptography`) said
    no: the verdict is its, this only names the reason. OTHER when no check names one.
    """
    if not (f.leaf_not_before <= f.now <= f.leaf_not_after):
        return TrustFault.EXPIRED_LEAF
    if not f.has_san:
        return TrustFault.NO_SAN
    if not f.name_ok:
        return TrustFault.WRONG_NAME
    if f.self_signed and not f.leaf_trusted:
        return TrustFault.SELF_SIGNED
    if f.walk is ChainStatus.INCOMPLETE:
        return TrustFault.INCOMPLETE
    if f.walk is ChainStatus.UNTRUSTED:
        return TrustFault.BAD_SIGNATURE if f.bad_signature else TrustFault.UNTRUSTED_ROOT
    if any(not (nb <= f.now <= na) for nb, na in f.path_windows):
        return TrustFault.EXPIRED_INTERMEDIATE
    if not all(f.path_is_ca):
        return TrustFault.ISSUER_NOT_CA
    if not f.leaf_server_auth:
        return TrustFault.NOT_SERVER_AUTH
    return TrustFault.OTHER


@dataclass(frozen=True)
class ProbeResult:
    """What an endpoint served: the leaf's identity, the chain, and the typed outcome.

    `chain_fingerprints` lists the served certificates after the leaf, in served order.
    Holds no key material (a server never sends one).
    """

    endpoint: Endpoint
    outcome: ProbeOutcome
    fingerprint: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    names: tuple[str, ...] = ()
    serial: str | None = None
    chain_fingerprints: tuple[str, ...] = ()
    chain: ChainStatus = ChainStatus.UNKNOWN
    name_matches: bool | None = None
    error: str = ""
    elapsed: float = 0.0
    fault: TrustFault | None = None
    """Why the served chain does not verify (NONE when it does; None when not verified: no handshake)."""
    earliest_not_after: datetime | None = None
    """The earliest notAfter of the served certificates (blackbox_exporter's probe_ssl_earliest_cert_expiry)."""

    @property
    def verified(self) -> bool:
        """True when the served chain verified for the name asked for at the probe's time."""
        return self.fault is TrustFault.NONE

    @property
    def handshake_done(self) -> bool:
        """True when a certificate was read (whatever its faults)."""
        return self.fingerprint is not None

    def describe(self) -> str:
        """One line for an operator: endpoint, outcome and what was served."""
        if not self.handshake_done:
            return f"{self.endpoint}: {self.outcome.value} ({self.error})"
        na = f"{self.not_after:%Y-%m-%d}" if self.not_after else "?"
        why = f" ({self.fault.value})" if self.fault not in (None, TrustFault.NONE) else ""
        return f"{self.endpoint}: {self.outcome.value}{why}; serves {self.fingerprint[:16]}… valid until {na}"


def name_matches(server_name: str, names: tuple[str, ...] | list[str]) -> bool:
    """True when a certificate with SAN `names` covers `server_name` (RFC 6125 matching).

    A wildcard covers exactly one left-most label (`*.example.com` covers `a.example.com`,
    not `example.com` nor `b.a.example.com`); IP addresses match only exactly.
    """
    wanted = server_name.rstrip(".").lower()
    ip = None
    if wanted and (wanted[-1].isdigit() or ":" in wanted):   # cheap pre-check: most names are DNS names
        try:
            ip = ipaddress.ip_address(wanted)
        except ValueError:
            ip = None
    for raw in names:
        name = raw.rstrip(".").lower()
        if ip is not None:
            try:
                if ipaddress.ip_address(name) == ip:
                    return True
            except ValueError:
                continue
            continue
        if name == wanted:
            return True
        if name.startswith("*.") and "." in wanted:
            head, rest = wanted.split(".", 1)
            if head and rest == name[2:]:
                return True
    return False


def classify(*, now: datetime, not_before: datetime, not_after: datetime, name_ok: bool,
             chain: ChainStatus) -> ProbeOutcome:
    """The outcome of a finished handshake, most urgent fault first.

    Args:
        now: the probe's time (timezone-aware UTC).
        not_before, not_after: the served leaf's validity window.
        name_ok: whether the leaf covers the name asked for.
        chain: how the served chain relates to the trust bundle.

    Expiry first (the site is down for everyone), then the name, then the chain (DEP-6).
    """
    if not (not_before <= now <= not_after):
        return ProbeOutcome.EXPIRED
    if not name_ok:
        return ProbeOutcome.WRONG_NAME
    if chain is ChainStatus.INCOMPLETE:
        return ProbeOutcome.INCOMPLETE_CHAIN
    if chain is ChainStatus.UNTRUSTED:
        return ProbeOutcome.UNTRUSTED
    return ProbeOutcome.OK


def serves(result: ProbeResult, *, fingerprint: str | None, not_after: datetime | None) -> bool:
    """VER-1: does the endpoint serve the new certificate?

    By fingerprint when it is known (exact), else by expiry as the seed says ("its expiry equals
    the new certificate's"). A failed connection serves nothing.
    """
    if not result.handshake_done:
        return False
    if fingerprint is not None:
        return result.fingerprint == fingerprint.lower().replace(":", "")
    return not_after is not None and result.not_after == not_after


class DiagnosisCode(StrEnum):
    """Why an endpoint does not (properly) serve the new certificate (VER-2)."""

    SERVING_NEW = "serving_new"
    """Nothing to diagnose: the new certificate is served with a complete chain."""
    UNREACHABLE = "unreachable"
    """The endpoint could not be probed at all (refused, timeout, handshake failure)."""
    FILES_NOT_DEPLOYED = "files_not_deployed"
    """The target's certificate files are not the new certificate (VER-2 check 1)."""
    NOT_RELOADED = "not_reloaded"
    """The new files are in place but the server did not reload since (VER-2 check 2, DEP-5)."""
    FRONTED = "fronted"
    """Something in front of the server (CDN, WAF, load balancer) serves another certificate (check 3)."""
    INCOMPLETE_CHAIN = "incomplete_chain"
    """The served chain lacks an intermediate (VER-2 check 4, DEP-6)."""
    NOT_VERIFIED = "not_verified"
    """The new certificate is served but its chain does not verify for the name (VER-1 strict:
    untrusted root, self-signed, wrong name, CN-only, expired intermediate, issuer not a CA)."""
    UNKNOWN = "unknown"
    """The old certificate is served and no check explains why."""


@dataclass(frozen=True)
class DiagnosisFacts:
    """Everything VER-2 decides over, gathered by `certpilot.adapters.probe.diagnose`.

    Attributes:
        probe: the latest probe of the endpoint.
        new_fingerprint, old_fingerprint: the certificates being swapped (hex SHA-256).
        target: what an operator calls the target (e.g. "nginx at 127.0.0.1:8443").
        deployed_fingerprint: fingerprint of the certificate file on the target; None if unknown.
        deployed_at: when the new files were written; None if unknown.
        reloaded_at: when the server last (re)started its serving processes; None if unknown.
        reload_hint: the command that reloads this target, used in the advice.
        clock_slack: the resolution of the two times: a reload within it of the write counts as after.
        intermediaries: fingerprint -> name of certificates known to be held by intermediaries.
    """

    probe: ProbeResult
    new_fingerprint: str
    old_fingerprint: str | None
    target: str
    deployed_fingerprint: str | None = None
    deployed_at: datetime | None = None
    reloaded_at: datetime | None = None
    reload_hint: str = "reload the server"
    clock_slack: timedelta = timedelta(0)
    intermediaries: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Diagnosis:
    """One VER-2 finding: a code and a sentence an operator can act on."""

    code: DiagnosisCode
    message: str
    rule: str = "VER-2"

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return self.code is DiagnosisCode.SERVING_NEW

    def __str__(self) -> str:
        return f"[{self.code.value}] {self.message}"

    def refusal(self) -> Refusal | None:
        """The refusal a use case raises for this diagnosis (None when nothing is wrong)."""
        if self.ok:
            return None
        if self.code is DiagnosisCode.INCOMPLETE_CHAIN:
            return Refusal(Reason.CHAIN_INCOMPLETE, self.message, rule="DEP-6")
        return Refusal(Reason.NOT_SERVED, self.message, rule=self.rule)


def _short(fp: str | None) -> str:
    return f"{fp[:16]}…" if fp else "unknown"


def diagnose(f: DiagnosisFacts) -> Diagnosis:
    """VER-2: explain why `f.probe` does not show the new certificate, checks in the rule's order.

    Order: (1) the files on the target are the new ones, (2) the server reloaded after they
    were written, (3) nothing in front serves another certificate, (4) the chain is complete.
    A check whose fact is unknown (None) is passed over, never guessed.
    """
    p = f.probe
    where = f"{f.target} ({p.endpoint})"
    if not p.handshake_done:
        return Diagnosis(DiagnosisCode.UNREACHABLE,
                         f"{where} could not be probed: {p.outcome.value} ({p.error}); check that the "
                         "server is running and reachable from certpilot, then verify again.")
    new = f.new_fingerprint.lower()
    served_new = p.fingerprint == new
    if served_new:
        if p.fault is TrustFault.INCOMPLETE or (p.fault is None and p.chain is ChainStatus.INCOMPLETE):
            return _incomplete(where)
        if p.fault not in (None, TrustFault.NONE):
            detail = f" ({p.error})" if p.fault is TrustFault.OTHER and p.error else ""
            return Diagnosis(DiagnosisCode.NOT_VERIFIED,
                             f"{where} serves the new certificate {_short(new)} but it does not verify for "
                             f"{p.endpoint.server_name}: {p.fault.value}{detail}; {FAULT_ADVICE[p.fault]}.",
                             rule="VER-1")
        return Diagnosis(DiagnosisCode.SERVING_NEW, f"{where} serves the new certificate {_short(new)}.")
    # (1) files
    if f.deployed_fingerprint is not None and f.deployed_fingerprint.lower() != new:
        which = ("the old certificate" if f.deployed_fingerprint.lower() == (f.old_fingerprint or "").lower()
                 else f"another certificate ({_short(f.deployed_fingerprint)})")
        return Diagnosis(DiagnosisCode.FILES_NOT_DEPLOYED,
                         f"{where} still serves {_served(p, f)}: the certificate file on the target is "
                         f"{which}, not the new one ({_short(new)}) — deploy the new certificate files "
                         "again, then reload.")
    # (2) reload
    if f.deployed_at is not None and f.reloaded_at is not None and f.reloaded_at + f.clock_slack < f.deployed_at:
        return Diagnosis(DiagnosisCode.NOT_RELOADED,
                         f"{where} still serves {_served(p, f)} although the new files are in place "
                         f"(written {f.deployed_at:%Y-%m-%dT%H:%M:%S}Z): the server was not reloaded "
                         f"since (last start {f.reloaded_at:%Y-%m-%dT%H:%M:%S}Z) — {f.reload_hint}.")
    # (3) fronted
    old = (f.old_fingerprint or "").lower()
    if p.fingerprint in f.intermediaries or (old and p.fingerprint != old):
        holder = f.intermediaries.get(p.fingerprint or "")
        by = f"by {holder}" if holder else "by something in front of the server (CDN, WAF, load balancer or proxy)"
        what = ("still answers with the old certificate" if old and p.fingerprint == old
                else "answers with a certificate that is neither the old nor the new one")
        return Diagnosis(DiagnosisCode.FRONTED,
                         f"{where} {what} ({_short(p.fingerprint)}, names {', '.join(p.names) or 'none'}): "
                         f"it is served {by} — deploy the new certificate there too, or point the name "
                         "at the server.")
    # (4) chain
    if p.chain is ChainStatus.INCOMPLETE:
        return _incomplete(where)
    return Diagnosis(DiagnosisCode.UNKNOWN,
                     f"{where} still serves {_served(p, f)} ({_short(p.fingerprint)}) and no check explains "
                     "why (files new or unknown, reload after them or unknown): look for a second server or "
                     "listener answering this name, then verify again.")


def _served(p: ProbeResult, f: DiagnosisFacts) -> str:
    if f.old_fingerprint and p.fingerprint == f.old_fingerprint.lower():
        return "the old certificate"
    return f"certificate {_short(p.fingerprint)}"


def _incomplete(where: str) -> Diagnosis:
    return Diagnosis(DiagnosisCode.INCOMPLETE_CHAIN,
                     f"{where} serves an incomplete chain: an intermediate certificate is missing "
                     "(DEP-6) — deploy the full chain (leaf followed by every intermediate) and reload.")
