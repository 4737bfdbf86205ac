"""Deployment targets from the UI: add one (a typed form), test it, remove it — what
`certpilot target add|test|remove` do. A target on another host is tested by running
`target-test` on that host's work queue (the check reads that host's files)."""

from __future__ import annotations

from typing import Literal

from prefect import flow

from certpilot.core.secrets import TextParameter
from tasks import pipeline as tp
from tasks import targets as t


@flow(name="target-add", log_prints=True)
def target_add(certificate_id: TextParameter,
               kind: Literal["nginx", "files", "aws-acm", "aws-elb", "alibaba-deployment-job"],
               name: TextParameter = "", host: TextParameter | None = None,
               endpoints: list[TextParameter] | None = None, files: list[TextParameter] | None = None,
               check_command: TextParameter | None = None, reload_command: TextParameter | None = None,
               directory: TextParameter | None = None, post_command: TextParameter | None = None,
               arn: TextParameter | None = None, mode: Literal["default", "sni"] | None = None,
               not_verifiable: bool = False, trust: TextParameter | None = None, check: bool = True,
               resource_ids: list[int] | None = None, connection: TextParameter | None = None):
    """Add a deployment target to a certificate; its next renewal deploys there (DEP-1).

    Args:
        certificate_id: the certificate the target serves now.
        kind: nginx (PEM files + reload), files (a bundle directory), aws-acm, aws-elb,
            alibaba-deployment-job (Alibaba Cloud resources a CAS deployment job moves).
        name: what you call it.
        host: the host (work queue) whose worker deploys it, e.g. web-3 (empty: any worker).
        endpoints: HOST:PORT[/SNI] probed after each deployment (empty: its name on 443).
        files: nginx: CERT_PATH:KEY_PATH of each vhost.
        check_command, reload_command: nginx: default `nginx -t -q`, `nginx -s reload`.
        directory, post_command: files: the bundle's directory, a command run after each deployment.
        arn: aws-acm: the certificate ARN; aws-elb: the listener ARN.
        mode: aws-elb: replace the default certificate or add an SNI one.
        not_verifiable: nothing serves it (a manual bundle): never shown as verified (VER-1).
        trust: what its endpoints' chains must reach besides the system's CAs (VER-1 strict):
            `private-ca` and/or a PEM file of CA certificates on the worker, comma-separated.
        check: check it on this worker first (files, permissions, `nginx -t`, the ARN, the CAS resources).
        resource_ids: alibaba-deployment-job: the CAS cloud resource ids (ListCloudResources Id).
        connection: alibaba-deployment-job: the Alibaba Cloud connection block (empty: `default`).

    Returns:
        The stored target. A bad definition fails the run naming the field; nothing is stored.
    """
    config = t.config_of(kind, files or [], check_command, reload_command, directory, post_command, arn, mode,
                         not_verifiable, trust, resource_ids or [], connection)
    return t.add_target(certificate_id, kind, config, endpoints or [], name, host, check)


@flow(name="target-test", log_prints=True)
def target_test(target_id: TextParameter):
    """Check a target without changing anything; the run fails when something would stop a deployment."""
    result = t.test_target(target_id)
    for field, problem in result.problems:
        print(f"✗ {field}: {problem}")
    for endpoint, ok, detail in result.probes:
        print(f"{'✓' if ok else '✗'} {endpoint}: {detail}")
    if not result.ok:
        from certpilot.core.errors import PermanentError

        why = "; ".join(f"{f}: {p}" for f, p in result.problems) or "an endpoint does not serve its certificate"
        raise PermanentError(f"target {target_id} is not ready: {why}")
    return result


@flow(name="target-remove", log_prints=True)
def target_remove(target_id: TextParameter):
    """Stop deploying to a target (kept with its history; its pending tasks end failed)."""
    return t.remove_target(target_id)


@flow(name="deploy-target", log_prints=True)
def deploy_target(task_id: TextParameter):
    """Run one deployment task here: what a renewal starts on the worker of a target's host (its
    work queue), so that host's files are the ones written (DEP-1, DEP-5..DEP-7, VER-1)."""
    return tp.deploy(task_id)
