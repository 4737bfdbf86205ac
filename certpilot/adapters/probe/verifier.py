"""The TLS-probe verifier of a deployment (VER-1), with the VER-2 diagnosis when it fails.

Built by the composition root (`certpilot.runtime`) and called by the deployment use case after a
target reloaded: `verifier(material, endpoints, target, old_fingerprint) -> VerifyResult`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from certpilot.adapters.deploy.base import DeployMaterial, DeployTarget
from certpilot.adapters.probe.diagnose import (
    InspectableTarget,
    Inspection,
    diagnose_endpoint,
    file_mtime,
    inspect_target,
)
from certpilot.adapters.probe.scale import verify_served
from certpilot.adapters.probe.tls import TrustBundle, trust_bundle
from certpilot.core.deployment import VerifyResult
from certpilot.core.errors import BadInputError
from certpilot.core.verification import Endpoint

PRIVATE_CA = "private-ca"
"""A target's `trust` setting meaning "also trust certpilot's own private CA"."""

log = logging.getLogger(__name__)


def trusting(factory: Callable[[Any, Any], DeployTarget]) -> Callable[[Any, Any], DeployTarget]:
    """Wrap a target factory so each built target carries its record's `trust` setting
    (`config["trust"]`: `private-ca` or a CA bundle path) as `probe_trust`, which
    `ProbeVerifier.trust_for` reads. Nothing else of the target changes."""

    def build(record: Any, key_opener: Any) -> DeployTarget:
        target = factory(record, key_opener)
        spec = (getattr(record, "config", None) or {}).get("trust")
        if isinstance(spec, list | tuple):
            spec = ",".join(map(str, spec))
        if spec:
            try:
                object.__setattr__(target, "probe_trust", str(spec))
            except (AttributeError, TypeError):
                log.warning("target %s cannot carry its trust setting; its base bundle applies", record.id)
        return target

    return build


def trust_setting_problems(spec: str) -> list[str]:
    """What is wrong with a target's `trust` setting on this host (nothing is created: the private
    CA's roots are read only when a deployment is verified). Each part is `private-ca` or a
    readable PEM file holding at least one CA certificate.

    Returns:
        One sentence per bad part (empty: the verifier will read it).
    """
    from cryptography import x509

    problems = []
    for part in (p.strip() for p in spec.split(",")):
        if not part or part == PRIVATE_CA:
            continue
        try:
            certs = x509.load_pem_x509_certificates(Path(part).read_bytes())
        except OSError as exc:
            problems.append(f"{part} cannot be read ({exc.strerror}): give a PEM file of CA certificates on this "
                            f"host, or {PRIVATE_CA!r}")
            continue
        except ValueError:
            certs = []
        if not certs:
            problems.append(f"{part} holds no PEM certificate: give the CA certificates the endpoints' chains "
                            "must reach")
    return problems


@dataclass
class ProbeVerifier:
    """VER-1 by TLS probe, with the VER-2 diagnosis when it fails.

    Polls every endpoint with `certpilot.adapters.probe.verify_served` until each steadily
    serves the new leaf (a graceful reload interleaves old and new answers for ~100 ms) or the
    deadline passes. VER-1 passes only when every endpoint serves the new leaf AND its chain
    verifies for the endpoint's SNI name against the target's trust bundle (`trust_for`; strict:
    `cryptography`'s server verifier). Otherwise it diagnoses the first endpoint wrong (one not
    serving the new leaf first), with the target's facts when it offers them
    (`deployed_fingerprint()`, `last_reload()`, `reload_hint`), before any rollback.

    Args:
        trust: the base bundle served chains must reach (CA file, SSLContext, TrustBundle; None: system).
        deadline: seconds to wait for every endpoint.
        settle: seconds the new certificate must be served without interruption.
        timeout: seconds per probe.
        private_roots: `() -> [root PEM]` of certpilot's private CA(s), for targets whose `trust`
            names `private-ca` (read on first use).
        clock: the instant served chains are verified at (the services' clock, so a test's fixed
            time judges its fixed-date certificates; the real time by default).
    """

    trust: Any = None
    deadline: float = 10.0
    settle: float = 0.25
    timeout: float = 3.0
    private_roots: Callable[[], Iterable[str | bytes]] | None = None
    clock: Callable[[], datetime] | None = None
    _bundles: dict[str, TrustBundle] = field(default_factory=dict, repr=False)

    def trust_for(self, target: object) -> Any:
        """The bundle a target's endpoints must chain to: `trust` (the services' probe bundle, the
        system's by default), plus what the target's `trust` setting adds (`probe_trust`, set by
        `trusting`): `private-ca` adds the roots of certpilot's own private CA(s), a path adds the
        PEM certificates in that file; several are joined by commas (`private-ca,/etc/ssl/corp.pem`). A target without the setting trusts only the base bundle,
        so a private-CA certificate deployed to a public site is refused, as browsers would.

        Raises:
            BadInputError: the setting is neither `private-ca` nor a readable PEM file.
        """
        return self.trust_for_spec(getattr(target, "probe_trust", None))

    def trust_for_spec(self, spec: str | None) -> Any:
        """`trust_for` by the target's `trust` setting itself (the fleet probe reads it from the store)."""
        if not spec:
            return self.trust
        hit = self._bundles.get(spec)
        if hit is None:
            extra = b"".join(self._anchors(part.strip()) for part in spec.split(",") if part.strip())
            hit = trust_bundle(self.trust).merged(extra)
            self._bundles[spec] = hit
        return hit

    def _anchors(self, part: str) -> bytes:
        """The PEM anchors one part of a `trust` setting adds: the private CA roots, or a file's."""
        if part == PRIVATE_CA:
            return b"".join(p.encode() if isinstance(p, str) else p for p in (self.private_roots or tuple)())
        try:
            return Path(part).read_bytes()
        except OSError as exc:
            raise BadInputError(f"the target's trust bundle {part} cannot be read ({exc.strerror}): set its "
                                f"`trust` to a PEM file of CA certificates, {PRIVATE_CA!r}, or both joined by a "
                                "comma") from exc

    def __call__(self, material: DeployMaterial, endpoints: Sequence[Endpoint], target: DeployTarget,
                 old_fingerprint: str | None) -> VerifyResult:
        """Probe `endpoints` for `material`'s fingerprint; see the class doc.

        Args:
            material: what was deployed (its fingerprint and expiry are looked for).
            endpoints: where the target serves it; none recorded means nothing is probed.
            target: the adapter that deployed it (inspected for the diagnosis when it can be).
            old_fingerprint: the certificate served before, to tell "still the old one" apart.
        Returns:
            ok with the endpoints that serve it, or not ok with how many do not and the diagnosis
            of the first (a probe failing is a result here, not an exception).
        """
        if not endpoints:
            return VerifyResult(True, "no endpoints recorded for this target: not probed")
        trust = self.trust_for(target)
        report = verify_served(list(endpoints), material.fingerprint, material.not_after, deadline=self.deadline,
                               settle=self.settle, trust=trust, timeout=self.timeout, clock=self.clock)
        if report.all_verified:
            names = ", ".join(str(e) for e in endpoints)
            return VerifyResult(True, f"{len(endpoints)} endpoint(s) serve {material.fingerprint[:16]}… with a "
                                      f"chain that verifies for the name: {names}")
        first = next((f for f in report.failures if not f.served), report.failures[0]).result
        if isinstance(target, InspectableTarget):
            cert_file = getattr(target, "deployed_file", None)
            inspection = inspect_target(target, deployed_at=file_mtime(cert_file) if cert_file else None)
        else:
            inspection = Inspection()
        diag = diagnose_endpoint(first.endpoint, new_fingerprint=material.fingerprint,
                                 old_fingerprint=old_fingerprint, target=target.describe(),
                                 inspection=inspection, trust=trust, probe=first)
        unserved = sum(not s.served for s in report.failures)
        what = (f"{unserved} of {len(endpoints)} endpoint(s) do not serve the new certificate after "
                f"{self.deadline:g}s" if unserved else
                f"{len(report.failures)} of {len(endpoints)} endpoint(s) serve the new certificate with a chain "
                "that does not verify for the name")
        return VerifyResult(False, f"{what}; {diag}")
