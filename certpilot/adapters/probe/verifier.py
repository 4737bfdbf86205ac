"""The TLS-probe verifier of a deployment (VER-1), with the VER-2 diagnosis when it fails.

Built by the composition root (`certpilot.runtime`) and called by the deployment use case after a
target reloaded: `verifier(material, endpoints, target, old_fingerprint) -> VerifyResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
from certpilot.core.deployment import VerifyResult
from certpilot.core.verification import Endpoint


@dataclass
class ProbeVerifier:
    """VER-1 by TLS probe, with the VER-2 diagnosis when it fails.

    Polls every endpoint with `certpilot.adapters.probe.verify_served` until each steadily
    serves the new leaf (a graceful reload interleaves old and new answers for ~100 ms) or the
    deadline passes; then diagnoses the first endpoint still wrong, with the target's facts when
    it offers them (`deployed_fingerprint()`, `last_reload()`, `reload_hint`), before any rollback.

    Args:
        trust: the bundle served chains must reach (CA file, SSLContext, TrustBundle; None: system).
        deadline: seconds to wait for every endpoint.
        settle: seconds the new certificate must be served without interruption.
        timeout: seconds per probe.
    """

    trust: Any = None
    deadline: float = 10.0
    settle: float = 0.25
    timeout: float = 3.0

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
        report = verify_served(list(endpoints), material.fingerprint, material.not_after, deadline=self.deadline,
                               settle=self.settle, trust=self.trust, timeout=self.timeout)
        if report.all_served:
            names = ", ".join(str(e) for e in endpoints)
            return VerifyResult(True, f"{len(endpoints)} endpoint(s) serve {material.fingerprint[:16]}…: {names}")
        first = report.failures[0].result
        if isinstance(target, InspectableTarget):
            cert_file = getattr(target, "deployed_file", None)
            inspection = inspect_target(target, deployed_at=file_mtime(cert_file) if cert_file else None)
        else:
            inspection = Inspection()
        diag = diagnose_endpoint(first.endpoint, new_fingerprint=material.fingerprint,
                                 old_fingerprint=old_fingerprint, target=target.describe(),
                                 inspection=inspection, trust=self.trust, probe=first)
        return VerifyResult(False, f"{len(report.failures)} of {len(endpoints)} endpoint(s) do not serve the new "
                                   f"certificate after {self.deadline:g}s; {diag}")
