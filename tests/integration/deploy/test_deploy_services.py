"""The Services-level doors of certpilot.operations.deployments: plan, run one task, locate the
targets; each owns its transaction (DEP-1, DEP-2, DEP-3, DEP-7, EM-3)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certpilot.core.deployment import DeploymentOutcome, DeploymentState, TargetKind, VerifyResult
from certpilot.operations import deployments
from certpilot.operations.deployments import add_target
from certpilot.store.db import session_scope
from tests.flows.pipeline_env import CollectingNotifier
from tests.integration.deploy.conftest import NOW, add_cert
from tests.servers.certs import make_ca, make_leaf


def not_probed(material, endpoints, target, old_fingerprint):
    """A bundle has no endpoint to probe (DEP-4)."""
    return VerifyResult(True, "no endpoints recorded for this target: not probed")


@pytest.fixture(scope="module")
def ca():
    return make_ca("services intermediate", issuer=make_ca("services root"))


@pytest.fixture
def svc(deploy_db, vault):
    from certpilot.runtime import local_services

    recorder = CollectingNotifier()
    services = local_services(database_url=deploy_db, vault=vault, verifier=not_probed, notifiers=[recorder],
                              issuers={}, clock=lambda: NOW)
    return services, recorder


def _renewal(deploy_db, vault, ca, tmp_path, name, post_command=None):
    """An old certificate deployed to a files bundle and its issued renewal; returns (old, new, target)."""
    old = make_leaf(ca, [name], not_before=NOW - timedelta(days=80), not_after=NOW + timedelta(days=5))
    new = make_leaf(ca, [name], not_before=NOW, not_after=NOW + timedelta(days=395))
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        target = add_target(s, old_id, TargetKind.FILES, name=f"bundle of {name}", now=NOW,
                            config={"directory": str(tmp_path / "bundle"), "post_command": post_command})
        new_id = add_cert(s, vault, new, parent_id=old_id)
    return old_id, new_id, target


def test_dep1_dep2_em3_plan_run_and_locate(svc, deploy_db, vault, ca, tmp_path):
    """DEP-1/DEP-2: one task per target of the old certificate, planned once; the run ends
    SUCCEEDED as a typed outcome; EM-3: the targets are located as kind:name, and moved (DEP-1)."""
    services, recorder = svc
    old_id, new_id, target = _renewal(deploy_db, vault, ca, tmp_path, "svc-ok.example.test")
    assert deployments.locate_targets(services, old_id) == ("files:bundle of svc-ok.example.test",)
    (task_id,) = deployments.plan(services, new_id)
    assert deployments.plan(services, new_id) == (task_id,)
    out = deployments.run_deployment(services, task_id)
    assert out == DeploymentOutcome(task_id=task_id, target_id=target.id, state=DeploymentState.SUCCEEDED,
                                    details=out.details)
    assert out.succeeded and out.details.endswith("succeeded")
    assert deployments.locate_targets(services, old_id) == ()
    assert deployments.locate_targets(services, new_id) == ("files:bundle of svc-ok.example.test",)
    assert recorder.events == []
    assert deployments.run_deployment(services, task_id) == out  # a rerun is a no-op


def test_dep3_dep7_failure_rolls_back_and_is_told_by_the_one_notice(svc, deploy_db, vault, ca, tmp_path):
    """DEP-7: a failed verification rolls the bundle back; DEP-3: the notice built by
    `notices.deployment_failed` (with the VER-2 diagnosis) reaches the channels and the inbox."""
    from certpilot.store.ports import messages

    services, recorder = svc
    services.verifier = lambda *_: VerifyResult(False, "[not_reloaded] the server still serves the old one")
    _old_id, new_id, _target = _renewal(deploy_db, vault, ca, tmp_path, "svc-bad.example.test")
    (task_id,) = deployments.plan(services, new_id)
    out = deployments.run_deployment(services, task_id)
    assert out.state is DeploymentState.ROLLED_BACK and not out.succeeded
    assert not (tmp_path / "bundle" / "cert.pem").exists()  # nothing was there before: nothing is now
    (event,) = recorder.events
    assert event.subject == (f"certpilot: deployment of svc-bad.example.test to files bundle in "
                             f"{tmp_path / 'bundle'} failed")
    assert event.diagnosis == "[not_reloaded] the server still serves the old one"
    assert new_id in event.body and "verification failed" in event.body
    with session_scope(deploy_db) as s:
        inbox = [m for m in messages(s) if m.certificate_id == new_id]
    assert [(m.kind, m.subject) for m in inbox] == [("deployment_failed", event.subject)]
