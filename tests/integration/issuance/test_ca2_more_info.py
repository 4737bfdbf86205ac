"""CA-2 "more information needed": the CA does not refuse outright but asks; the owner is told what it
asks for (not "rejected"), the application can be resubmitted, and then it is issued."""

from __future__ import annotations

from certpilot.adapters.issuers.private_ca import PrivateCaPolicy
from certpilot.core.models import Status
from certpilot.core.outcomes import SubmitKind
from certpilot.operations import orders, pipeline
from certpilot.store.db import reset_engines
from tests.flows.plan_env import plan_site


def test_ca2_more_information_needed_is_told_as_such_and_resubmitted(tmp_path):
    """CA-2: the private CA's review asks for more information about the name: the certificate is
    REJECTED (no process waits), the owner's notice says the CA needs more information and what, and
    once given, `apply` (prepare + submit) resubmits and the certificate is ISSUED."""
    site = plan_site(tmp_path, name="moreinfo", common_name="info.example.test")
    site.ca.policy = PrivateCaPolicy(review_more_info=("info.example.test",))
    svc = site.svc
    try:
        new = orders.renew(svc, site.cid, years=1).certificate_ids[0]
        pipeline.prepare(svc, new)
        out = pipeline.submit(svc, new)
        assert out.kind is SubmitKind.REJECTED
        (told,) = site.extra["notifier"].events
        assert told.subject == "certpilot: the CA needs more information about info.example.test"
        assert "needs more information about info.example.test" in told.body and f"certpilot apply {new}" in told.body
        site.ca.policy = PrivateCaPolicy()  # the owner gave the CA what it asked for
        assert pipeline.prepare(svc, new).state is Status.PENDING_APPLICATION  # resubmitted (LC-5, CA-2)
        assert pipeline.submit(svc, new).kind is SubmitKind.ISSUED
    finally:
        reset_engines()
