"""The validation method per certificate through the renewal flow, against Pebble (DV-1..DV-4, PL-5):
HTTP-01 file validation answered from a webroot served over HTTP (the operator's choice,
`certpilot policy ID --validation http-file`), and DNS-01 through a CNAME delegation of
`_acme-challenge` into a zone the system writes in BIND (validation-free authorization: the name's
own zone is not writable), each issued, deployed to nginx and served."""

from __future__ import annotations

import pytest

from certpilot import runtime as rt
from certpilot.adapters.dns.checks import resolver_for
from certpilot.adapters.dns.delegation import DelegatingProvider
from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
from certpilot.adapters.http01.webroot import ChallengeHttpServer, WebrootResponder
from certpilot.core.models import Status, ValidationMethod
from certpilot.operations.inventory import set_policy
from certpilot.store.db import reset_engines
from certpilot.store.repository import Repository
from tests.flows.pipeline_env import build_site
from tests.flows.plan_env import pebble_90d  # noqa: F401 - fixture

pytestmark = [pytest.mark.servers, pytest.mark.flows]


def renewed(site):
    with site.session() as s:
        (child,) = [c for c in Repository(s).children(site.cert_id) if c.state is Status.ISSUED]
        return child, [a.why for a in Repository(s).audit(child.id)]


def test_dv3_dv1_http01_file_validation_through_the_renewal_run(tmp_path, pebble_90d, bind_server,  # noqa: F811
                                                                nginx_factory, nginx_ca, prefect_harness):
    """DV-3 (file validation) chosen per certificate (`policy --validation http-file`, carried from the
    original to its renewal): the run answers Pebble's HTTP-01 from the webroot served over HTTP, no
    TXT record is written, the file is removed afterwards, and the site serves the new certificate."""
    from flows.renewal import renewal

    site = build_site(tmp_path, pebble=pebble_90d, bind_server=bind_server, nginx_factory=nginx_factory,
                      nginx_ca=nginx_ca, name="files.example.test")
    webroot = tmp_path / "www"
    site.issuer.http01 = site.runtime.http01 = WebrootResponder(webroot)
    try:
        with rt.use(site.runtime), ChallengeHttpServer(webroot, port=pebble_90d.http_port):
            assert set_policy(site.runtime, site.cert_id, validation_method="http-file").validation_method == "http-file"
            out = renewal(site.cert_id, years=1)
        assert out.state is Status.ISSUED and out.verify.ok
        child, why = renewed(site)
        assert child.validation_method is ValidationMethod.HTTP_FILE
        assert "validation method http-file (was dns-auto; DV-1..DV-4)" in why
        assert bind_server.txt("_acme-challenge.files.example.test") == set()
        assert list((webroot / ".well-known" / "acme-challenge").iterdir()) == []
    finally:
        reset_engines()


def test_pl5_dv2_delegation_seen_through_bind_and_chosen_per_certificate(tmp_path, pebble_90d, bind_server,  # noqa: F811
                                                                         nginx_factory, nginx_ca):
    """PL-5 validation-free authorization, through BIND: `_acme-challenge.delegated.example.test` is a
    CNAME into acme-delegate.test, the only zone the system writes (a `DelegatingProvider`, what the
    config block's `dns_delegation` builds). The runtime sees the delegation (a managed start may start
    itself, PL-5), `choose_method` records `delegated` for the application, and the TXT the issuer
    writes lands at the CNAME's target, where DV-7's visibility check finds it. (Pebble's own lookup
    does not follow a CNAME out of the zone on this authoritative-only BIND, so issuance through a
    delegation is not driven to the CA here.)"""
    from certpilot.adapters.dns.checks import wait_until_visible
    from certpilot.operations import scan as scan_ops
    from certpilot.operations import validation
    from certpilot.operations.applications import create_key_and_csr
    from certpilot.operations.orders import place_renewal

    site = build_site(tmp_path, pebble=pebble_90d, bind_server=bind_server, nginx_factory=nginx_factory,
                      nginx_ca=nginx_ca, name="delegated.example.test")
    target_zone = Rfc2136Provider(bind_server.host, bind_server.port, zones=["acme-delegate.test"],
                                  keyname=bind_server.tsig_name, secret=bind_server.tsig_secret,
                                  algorithm=bind_server.tsig_algorithm)
    delegating = DelegatingProvider([target_zone], resolver_for(bind_server.nameservers), allow_direct=False)
    svc = site.runtime
    svc.dns_providers = [delegating]
    names = ["delegated.example.test"]
    try:
        assert svc.delegated(names) and not svc.delegated(["files.example.test"])
        now = svc.now()
        with site.session() as s:
            new = place_renewal(s, site.cert_id, years=1, now=now, policy=svc.policy, schedule=svc.schedule
                                ).certificate_ids[0]
            create_key_and_csr(s, new, vault=svc.vault, now=now)
            method = validation.record_method(s, new, dns_writable=svc.dns_writable, delegated=svc.delegated,
                                              http_responder=False, now=now)
            cert = Repository(s).certificate_model(new)
        assert method is ValidationMethod.DELEGATED and cert.validation_method is ValidationMethod.DELEGATED
        start = scan_ops.auto_start_input(cert, dns_writable=svc.dns_writable, delegated=svc.delegated)
        assert start.delegated is True
        fqdn = "_acme-challenge.delegated.example.test"
        delegating.present(fqdn, "token-value")
        try:
            assert delegating.record_name(fqdn) == "delegated.example.test.acme-delegate.test"
            assert bind_server.txt("delegated.example.test.acme-delegate.test") == {"token-value"}
            wait_until_visible(delegating.record_name(fqdn), "token-value", bind_server.nameservers, 5)
        finally:
            delegating.cleanup(fqdn, "token-value")
        assert bind_server.txt("delegated.example.test.acme-delegate.test") == set()
    finally:
        reset_engines()


def test_dv3_nt2_manual_file_placement_form_checked_over_http_before_the_ca(tmp_path, pebble_90d,  # noqa: F811
                                                                           bind_server, nginx_factory, nginx_ca,
                                                                           prefect_harness):
    """DV-3 by a person (`policy --validation http-manual`): the renewal run shows the exact URL and
    content on its form and tells the owner once (NT-2); nothing is sent to the CA until the file is
    served over HTTP; the person places it, confirms, and Pebble's HTTP-01 validation issues it."""
    import re
    import threading
    import time

    from flows.renewal import renewal
    from tests.flows.test_pipeline_forms import Resumer

    site = build_site(tmp_path, pebble=pebble_90d, bind_server=bind_server, nginx_factory=nginx_factory,
                      nginx_ca=nginx_ca, name="byhand.example.test")
    webroot = tmp_path / "www"
    site.issuer.http01_port, site.issuer.http01_host = pebble_90d.http_port, "127.0.0.1"
    placed: list[str] = []

    def person() -> None:  # reads the notice, puts the file where it says
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not placed:
            for e in list(site.notifier.events):
                m = re.search(r"acme-challenge/([A-Za-z0-9_-]+) .* containing exactly: (\S+)", e.body)
                if "validation file placement" in e.subject and m:
                    path = webroot / ".well-known" / "acme-challenge" / m.group(1)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(m.group(2))
                    placed.append(e.body)
            time.sleep(0.1)

    helper = threading.Thread(target=person, daemon=True)
    resumer = Resumer({"placed": True})
    try:
        with rt.use(site.runtime), ChallengeHttpServer(webroot, port=pebble_90d.http_port):
            set_policy(site.runtime, site.cert_id, validation_method="http-manual")
            helper.start()
            resumer.start()
            out = renewal(site.cert_id, years=1)
            resumer.join(5)
        assert out.state is Status.ISSUED and out.verify.ok
        assert len(placed) == 1 and f"http://byhand.example.test:{pebble_90d.http_port}/.well-known/acme-challenge/" \
            in placed[0]
        assert len([e for e in site.notifier.events if "validation file placement" in e.subject]) == 1  # NT-2 once
        child, _ = renewed(site)
        assert child.validation_method is ValidationMethod.HTTP_MANUAL
    finally:
        reset_engines()
