"""TLS probe: what an endpoint serves (leaf, chain, fingerprint, expiry) and why (VER-1, VER-2)."""

from certpilot.adapters.probe.scale import (
           VerificationReport,
           aprobe_many,
           averify_served,
           probe_many,
           verify_served,
)
from certpilot.adapters.probe.tls import Prober, TrustBundle, probe, probe_sync
from certpilot.core.verification import ChainStatus, Endpoint, Family, ProbeOutcome, ProbeResult

__all__ = ["ChainStatus", "Endpoint", "Family", "ProbeOutcome", "ProbeResult", "Prober", "TrustBundle",
           "VerificationReport", "aprobe_many", "averify_served", "probe", "probe_many", "probe_sync",
           "verify_served"]
