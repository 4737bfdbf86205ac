"""Many endpoints at once: `probe_many` (bounded concurrency, results in input order) and
VER-1's `verify_served` (poll until every endpoint serves the new certificate or time is up).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from certpilot.adapters.probe.tls import EndpointProber, Prober, Trust
from certpilot.core.verification import Endpoint, ProbeResult, serves


async def aprobe_many(endpoints: Sequence[Endpoint], *, concurrency: int = 100, timeout: float = 5.0,
                      trust: Trust | EndpointProber = None, now: datetime | None = None) -> list[ProbeResult]:
    """Probe every endpoint with at most `concurrency` connections open; results in input order.

    Args:
        endpoints: what to probe (duplicates are probed twice).
        concurrency: the most connections in flight at once.
        timeout: seconds for connect + handshake, per connection.
        trust: the trust bundle (see `tls.trust_bundle`), or a ready Prober to reuse.
        now: the clock for expiry checks (default: wall clock at each handshake).
    Returns:
        one ProbeResult per endpoint; failures are outcomes, so the list is always complete.
    """
    prober = trust if isinstance(trust, EndpointProber) else Prober(trust, timeout=timeout)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(ep: Endpoint) -> ProbeResult:
        async with gate:
            return await prober.probe(ep, timeout=timeout, now=now)

    return list(await asyncio.gather(*(one(ep) for ep in endpoints)))


def fetch_many(endpoints: Sequence[Endpoint], *, concurrency: int = 50, timeout: float = 5.0,
               trust: Trust = None) -> list[tuple[ProbeResult, list[bytes]]]:
    """Blocking: every endpoint's probe and the certificates it served (DER, leaf first), in input
    order, at most `concurrency` connections at once (discovery: it stores what it finds)."""
    prober = Prober(trust, timeout=timeout)

    async def run() -> list[tuple[ProbeResult, list[bytes]]]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(ep: Endpoint) -> tuple[ProbeResult, list[bytes]]:
            async with gate:
                return await prober.fetch(ep, timeout=timeout)

        return list(await asyncio.gather(*(one(ep) for ep in endpoints)))

    return asyncio.run(run())


def probe_many(endpoints: Sequence[Endpoint], *, concurrency: int = 100, timeout: float = 5.0,
               trust: Trust | EndpointProber = None, now: datetime | None = None) -> list[ProbeResult]:
    """Blocking `aprobe_many` for callers outside an event loop."""
    return asyncio.run(aprobe_many(endpoints, concurrency=concurrency, timeout=timeout, trust=trust, now=now))


@dataclass(frozen=True)
class Served:
    """VER-1's answer for one endpoint: the last probe, whether it shows the new certificate,
    how many probes it took, and whether the served chain verifies for the name (strict)."""

    result: ProbeResult
    served: bool
    attempts: int

    @property
    def verified(self) -> bool:
        """VER-1 passed here: the new certificate is served AND its chain verifies for the SNI name."""
        return self.served and self.result.verified


@dataclass(frozen=True)
class VerificationReport:
    """VER-1 over every endpoint of a deployment."""

    endpoints: tuple[Served, ...]

    @property
    def all_served(self) -> bool:
        """True when every endpoint serves the new certificate (whether or not its chain verifies)."""
        return all(s.served for s in self.endpoints)

    @property
    def all_verified(self) -> bool:
        """VER-1: every endpoint serves the new certificate and its chain verifies for the name."""
        return all(s.verified for s in self.endpoints)

    @property
    def failures(self) -> list[Served]:
        """Endpoints where VER-1 fails: the new certificate not served, or served with a chain that
        does not verify for the name."""
        return [s for s in self.endpoints if not s.verified]


async def averify_served(endpoints: Sequence[Endpoint], expected_fingerprint: str | None,
                         expected_not_after: datetime | None = None, *, deadline: float = 10.0,
                         first_delay: float = 0.02, max_delay: float = 0.5, settle: float = 0.25,
                         confirm_interval: float = 0.025, trust: Trust | EndpointProber = None,
                         timeout: float = 5.0, concurrency: int = 50,
                         clock: Callable[[], datetime] | None = None) -> VerificationReport:
    """VER-1: poll each endpoint until it steadily serves the new certificate or `deadline` passes.

    A server serves a reloaded certificate some 100 ms after the reload, so each endpoint is
    probed at once and then after `first_delay`, growing ×1.5 up to `max_delay` — no fixed
    sleep. Seeing the new certificate once is not enough: during a graceful nginx reload the old
    worker keeps accepting for ~100 ms (measured: old and new certificates interleave from ~30 ms
    to ~125 ms after `nginx -s reload`). So an endpoint counts as served only after it served
    the new certificate on every probe for `settle` seconds (probes every `confirm_interval`);
    any other answer in that window starts the wait over. Once it is steadily served the endpoint
    is done, verified or not: a chain that does not verify will not mend itself by waiting.

    Args:
        endpoints: every place the certificate must now be served (each SNI name).
        expected_fingerprint: SHA-256 hex of the new leaf (exact match), or None to match by expiry.
        expected_not_after: the new leaf's expiry (the seed's criterion when no fingerprint).
        deadline: seconds from now after which endpoints not serving it are reported as failures.
        settle: seconds the new certificate must be served without interruption.
        clock: the instant chains are verified at (the services' clock; the real time by default).
    Returns:
        a VerificationReport with the last probe of every endpoint (diagnose the failures).
    Raises:
        ValueError: neither the fingerprint nor the expiry was given.
    """
    if expected_fingerprint is None and expected_not_after is None:
        raise ValueError("verify_served needs the new certificate's fingerprint or expiry")
    prober = trust if isinstance(trust, EndpointProber) else Prober(trust, timeout=timeout)
    end = time.monotonic() + deadline
    gate = asyncio.Semaphore(max(1, concurrency))

    async def poll(ep: Endpoint) -> Served:
        delay, attempts, since = first_delay, 0, None
        while True:
            left = end - time.monotonic()
            async with gate:
                result = await prober.probe(ep, timeout=max(0.05, min(timeout, left)),
                                            now=clock() if clock else None)
            attempts += 1
            now = time.monotonic()
            if serves(result, fingerprint=expected_fingerprint, not_after=expected_not_after):
                since = now if since is None else since
                if now - since >= settle:
                    return Served(result, True, attempts)
                wait = confirm_interval
            else:
                since, wait = None, delay
                delay = min(delay * 1.5, max_delay)
            left = end - now
            if left <= 0:
                return Served(result, False, attempts)
            await asyncio.sleep(min(wait, left))

    return VerificationReport(tuple(await asyncio.gather(*(poll(ep) for ep in endpoints))))


def verify_served(endpoints: Sequence[Endpoint], expected_fingerprint: str | None,
                  expected_not_after: datetime | None = None, *, deadline: float = 10.0,
                  first_delay: float = 0.02, max_delay: float = 0.5, settle: float = 0.25,
                  confirm_interval: float = 0.025, trust: Trust | EndpointProber = None,
                  timeout: float = 5.0, concurrency: int = 50,
                  clock: Callable[[], datetime] | None = None) -> VerificationReport:
    """Blocking `averify_served` (VER-1) for tasks and the CLI."""
    return asyncio.run(averify_served(endpoints, expected_fingerprint, expected_not_after, deadline=deadline,
                                      first_delay=first_delay, max_delay=max_delay, settle=settle,
                                      confirm_interval=confirm_interval, trust=trust, timeout=timeout,
                                      concurrency=concurrency, clock=clock))
