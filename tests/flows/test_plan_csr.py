"""CSR modes end to end through the flows (CSR-2, CSR-3, CSR-4, NT-2, PL-5), on the embedded private
CA: a manual CSR is checked, kept with the order and submitted through the renewal run (the UI's
`csr_pem` parameter, the CLI's `--csr manual --csr-file F`); the issued certificate carries its
public key and certpilot holds no key for it. The mode carries to the plan's next certificate: its
managed start waits for the owner's CSR (told once, with the command), and a run given it issues it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509

from certpilot import runtime as rt
from certpilot.core.models import CsrMode, KeyAlgorithm, Status
from certpilot.crypto.csr import build_csr
from certpilot.crypto.keys import generate_key, public_fingerprint
from certpilot.store.repository import Repository
from tests.flows.plan_env import plan_site

pytestmark = [pytest.mark.flows]

DAY = timedelta(days=1)
NAME = "csr.example.test"


def owner_csr() -> tuple[str, str]:
    """A CSR the owner made with a key of their own (EC P-256, the original's algorithm), and the
    fingerprint of its public key."""
    key = generate_key(KeyAlgorithm.EC_P256)
    return build_csr(key, [NAME]).decode(), public_fingerprint(key.public_key())


def leaf_key(cert) -> str:
    return public_fingerprint(x509.load_pem_x509_certificate(cert.leaf_pem.encode()).public_key())


def test_csr2_csr3_manual_csr_issued_through_the_flow_and_carried_to_the_next_certificate(tmp_path, prefect_harness,
                                                                                         monkeypatch):
    """CSR-2/CSR-4: a 2-year renewal run with `csr_mode=manual` and the owner's CSR: the CSR is checked
    and kept with the order, certificate 1 is issued with its public key, no key is held (CSR-2).
    CSR-3/PL-5/NT-2: certificate 2 keeps the plan's manual mode: its managed start cannot make a key,
    so it waits and the owner is told once how to submit a CSR; the renewal run given the next CSR
    (the `apply --csr manual --csr-file` path) issues it with that key."""
    from flows.renewal import renewal
    from flows.scan import scan

    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "inline")
    site = plan_site(tmp_path, name="csr", common_name=NAME)
    csr1, fp1 = owner_csr()
    with rt.use(site.svc):
        out = renewal(site.cid, years=2, csr_mode="manual", csr_pem=csr1)
        assert out.state is Status.ISSUED
        first, second = [c for c in site.plan() if c.state is not Status.CANCELLED][:2]
        with site.session() as s:
            repo = Repository(s)
            order = repo.get_order(first.order_id)
            assert order.csr_mode is CsrMode.MANUAL and repo.order_csr(order.id) == csr1
            first = repo.get_certificate(first.id)
            assert leaf_key(first) == fp1 and first.key_held is False and first.key_id is None
        site.clock.now = first.not_after - 30 * DAY
        scan()
        assert [c.state for c in site.plan() if c.id == second.id] == [Status.NOT_ACTIVATED]
        told = [e for e in site.extra["notifier"].events if second.id in e.body]
        assert len(told) == 1 and f"certpilot apply {second.id} --csr manual --csr-file" in told[0].body
        csr2, fp2 = owner_csr()
        out = renewal(second.id, csr_mode="manual", csr_pem=csr2)
    assert out.state is Status.ISSUED
    with site.session() as s:
        second = Repository(s).get_certificate(second.id)
        assert leaf_key(second) == fp2 and second.key_held is False
        assert second.not_before == site.clock.now  # its window, from certificate 1's real expiry (VA-2)
