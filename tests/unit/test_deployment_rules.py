"""Pure deployment decisions (certpilot.core.deployment): DEP-1, DEP-2, DEP-7, CSR-2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certpilot.core.deployment import (
    DeploymentState,
    TargetKind,
    default_endpoints,
    final_state,
    is_terminal,
    may_deploy,
    may_run,
    target_free,
    targets_to_plan,
    verifiable,
)
from certpilot.core.errors import Reason
from certpilot.core.models import Certificate, CertType, Origin, Status

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def cert(state=Status.ISSUED, key_held=True) -> Certificate:
    return Certificate(id="c-new", common_name="www.example.com", names=["www.example.com"],
                       cert_type=CertType.SINGLE, origin=Origin.OFFICIAL, state=state, key_held=key_held)


@pytest.mark.parametrize("state, key_held, kind, expected", [
    (Status.ISSUED, True, TargetKind.NGINX, None),
    (Status.UPLOADED, True, TargetKind.AWS_ACM, None),
    (Status.ISSUED, False, TargetKind.NGINX, Reason.KEY_NOT_HELD),
    (Status.ISSUED, False, TargetKind.AWS_ACM, Reason.KEY_NOT_HELD),
    (Status.ISSUED, False, TargetKind.AWS_ELB, Reason.KEY_NOT_HELD),
    (Status.ISSUED, False, TargetKind.FILES, None),            # DEP-4: a bundle without the key
    (Status.UNDER_REVIEW, True, TargetKind.NGINX, Reason.NOT_DEPLOYABLE),
    (Status.NOT_ACTIVATED, True, TargetKind.FILES, Reason.NOT_DEPLOYABLE),
])
def test_csr2_dep4_may_deploy(state, key_held, kind, expected):
    """CSR-2: no managed deployment without the key; DEP-4: the manual bundle stays possible."""
    refusal = may_deploy(cert(state, key_held), kind)
    assert (refusal.reason if refusal else None) is expected
    if refusal:
        assert "www.example.com" in refusal.message and "c-new" in refusal.message


def test_csr2_refusal_says_what_to_do_instead():
    """EL-5 style: the sentence names the failure and the alternative."""
    refusal = may_deploy(cert(key_held=False), TargetKind.NGINX)
    assert refusal.rule == "CSR-2"
    assert refusal.message == (
        "certificate www.example.com (id c-new) was requested with your own CSR, so certpilot does not hold "
        "its private key and cannot deploy it to the nginx target; install it there yourself (a files bundle "
        "without the key is available), or renew with a system-generated key (`certpilot renew c-new --csr "
        "system --dry-run` previews it).")


def test_not_deployable_without_pem():
    assert may_deploy(cert(), TargetKind.FILES, has_pem=False).reason is Reason.NOT_DEPLOYABLE


@pytest.mark.parametrize("state, started_ago, expected", [
    (DeploymentState.PENDING, None, None),
    (DeploymentState.FAILED, timedelta(minutes=1), None),        # retry after a fix
    (DeploymentState.ROLLED_BACK, timedelta(minutes=1), None),
    (DeploymentState.RUNNING, timedelta(minutes=1), Reason.DEPLOYMENT_IN_PROGRESS),
    (DeploymentState.RUNNING, timedelta(minutes=1, seconds=59), Reason.DEPLOYMENT_IN_PROGRESS),
    (DeploymentState.RUNNING, timedelta(minutes=2), None),       # no lease recorded: 2 min from its start
    (DeploymentState.SUCCEEDED, timedelta(minutes=1), Reason.DEPLOYMENT_IN_PROGRESS),
])
def test_dep2_may_run(state, started_ago, expected):
    """DEP-2: one run at a time per task; a crashed run's task is taken over after the lease."""
    started = NOW - started_ago if started_ago else None
    refusal = may_run(state, started_at=started, now=NOW)
    assert (refusal.reason if refusal else None) is expected


@pytest.mark.parametrize("lease_left, expected", [
    (timedelta(seconds=1), Reason.DEPLOYMENT_IN_PROGRESS),  # the heartbeat renewed it: the run lives
    (timedelta(0), None),                                    # lapsed: the heartbeat stopped, the run died
    (-timedelta(seconds=1), None),
])
def test_dep2_may_run_follows_the_heartbeat_lease_not_the_start(lease_left, expected):
    """DEP-2: a run started an hour ago whose heartbeat keeps its lease holds the task; once the
    lease lapses its task is taken over."""
    refusal = may_run(DeploymentState.RUNNING, started_at=NOW - timedelta(hours=1), now=NOW,
                      lease_until=NOW + lease_left)
    assert (refusal.reason if refusal else None) is expected


@pytest.mark.parametrize("holder, until, expected", [
    (None, None, True),                                        # free
    ("dep-me", NOW + timedelta(minutes=1), True),              # its own (a takeover of the same task)
    ("dep-other", NOW + timedelta(seconds=1), False),          # another task's live run: wait
    ("dep-other", NOW, True),                                  # its lock lapsed
])
def test_dep2_one_deployment_at_a_time_per_target(holder, until, expected):
    """DEP-2: a target's lock is taken by one task; another waits until it is freed or lapses."""
    assert target_free(holder, until, task_id="dep-me", now=NOW) is expected


@pytest.mark.parametrize("names, config, endpoints, verifiable_", [
    (["www.example.test"], {}, [("www.example.test", 443, "www.example.test")], True),
    (["*.example.test", "example.test"], {}, [("example.test", 443, "example.test")], True),
    (["*.example.test"], {}, [], True),
    (["www.example.test"], {"verify": False}, [("www.example.test", 443, "www.example.test")], False),
])
def test_ver1_default_endpoint_and_not_verifiable(names, config, endpoints, verifiable_):
    """VER-1: a target without endpoints is probed at https://<name>:443 (the first non-wildcard
    name); only a target marked `verify: false` is not verifiable."""
    assert [(e.host, e.port, e.sni) for e in default_endpoints(names)] == endpoints
    assert verifiable(config) is verifiable_


@pytest.mark.parametrize("state, terminal", [
    ("pending", False), ("running", False), ("succeeded", True), ("failed", True), ("rolled_back", True)])
def test_dep2_terminal_states(state, terminal):
    assert is_terminal(state) is terminal


@pytest.mark.parametrize("parents, planned, expected", [
    (["t1", "t2"], [], ["t1", "t2"]),
    (["t1", "t2"], ["t1"], ["t2"]),
    (["t1", "t2"], ["t1", "t2"], []),                  # a rerun plans nothing twice
    (["t2", "t1", "t2"], [], ["t2", "t1"]),            # order kept, duplicates dropped
    ([], ["t9"], []),
])
def test_dep1_dep2_targets_to_plan(parents, planned, expected):
    """DEP-1: every target of the old certificate; DEP-2: one task each, never twice."""
    assert targets_to_plan(parents, planned) == expected


@pytest.mark.parametrize("verified, rolled_back, expected", [
    (True, False, DeploymentState.SUCCEEDED),
    (False, True, DeploymentState.ROLLED_BACK),
    (False, False, DeploymentState.FAILED),
])
def test_dep7_final_state(verified, rolled_back, expected):
    """DEP-7: a failed run that restored the previous certificate ends rolled back, else failed."""
    assert final_state(verified=verified, rolled_back=rolled_back) is expected


@pytest.mark.parametrize("claimed_ago, expected", [
    (None, Reason.DEPLOYMENT_IN_PROGRESS),                         # no claim recorded: the lease rules
    (timedelta(minutes=3), Reason.DEPLOYMENT_IN_PROGRESS),         # claimed before the task started: its holder
    (timedelta(minutes=2), Reason.DEPLOYMENT_IN_PROGRESS),         # claimed the same instant: still its holder
    (timedelta(minutes=1), None),                                  # claimed after: a relaunch, the holder died
])
def test_dep2_may_run_takes_over_at_once_when_the_work_was_claimed_after_the_task_started(claimed_ago, expected):
    """DEP-2 after a crash: a RUNNING task (started 2 min ago, inside its lease) is taken over
    at once when the certificate's work was claimed after the task started (the relaunched run)."""
    claimed = NOW - claimed_ago if claimed_ago else None
    refusal = may_run(DeploymentState.RUNNING, started_at=NOW - timedelta(minutes=2), now=NOW, claimed_at=claimed,
                      lease_until=NOW + timedelta(minutes=1))
    assert (refusal.reason if refusal else None) is expected
