"""Builds the deploy adapter of a target from its record (kind and config).

The composition root (`certpilot.runtime`) makes one factory and hands it to the deployment use
case, which calls it once per run: `factory(record, key_opener) -> DeployTarget`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from certpilot.adapters.deploy.alibaba_jobs import CasUploadTarget, DeploymentJobTarget
from certpilot.adapters.deploy.aws_acm import AcmTarget, aws_client
from certpilot.adapters.deploy.aws_elb import ElbListenerTarget
from certpilot.adapters.deploy.base import DeployTarget
from certpilot.adapters.deploy.files import FilesTarget
from certpilot.adapters.deploy.nginx import PemFilesTarget
from certpilot.core.deployment import KeyOpenerById, TargetKind, TargetRecord
from certpilot.core.errors import BadInputError, MissingBlockError

AwsClients = Callable[[str, dict[str, Any]], Any]
"""`aws(service, config) -> boto3 client` for the AWS targets."""
AlibabaApis = Callable[[dict[str, Any]], Any]
"""`alibaba(config) -> AlibabaApi` (CAS) for the Alibaba Cloud targets; the config's `connection`
names the connection block (default "default")."""


def default_target_factory(*, aws: AwsClients | None = None,
                           root: Path | Callable[[], Path] | None = None,
                           alibaba: AlibabaApis | None = None
                           ) -> Callable[[TargetRecord, KeyOpenerById], DeployTarget]:
    """Builds adapters from a target's kind and config.

    A relative path in a target's config (files, directory) is relative to the deploying host's
    root: `root`, by default that host's `CERTPILOT_HOME` (read when a target is built, on the
    worker that deploys it) — so a target that lives on `web-3` names paths of web-3.

    Config per kind:
        nginx: files [{cert, key}], check_argv, reload_argv, timeout, name, pid_file.
        files: directory, post_command.
        aws-acm: certificate_arn, endpoint_url, region.
        aws-elb: listener_arn, mode (default|sni), old_certificate_arn, endpoint_url, region.
        alibaba-deployment-job: resource_ids, cert_id (informational), connection, contact_ids, timeout.
    Args:
        aws: `aws(service, config) -> boto3 client`; default `aws_client` with the config's
            endpoint_url and region (credentials from the environment).
        root: where relative paths live (a path, or a callable giving it); default the settings' home.
        alibaba: `alibaba(config) -> AlibabaApi` of the CAS API for an alibaba-deployment-job
            target (the composition root builds it from the connection block the config names);
            None: such a target cannot be built.
    Returns:
        `build(record, key_opener) -> DeployTarget`; the key opener reaches only the ACM target
        (which restores the old key on rollback), as a reference, never as key material.
        `build` raises `BadInputError` for a kind without an adapter, `KeyError` for a missing
        required config entry, `MissingBlockError` for an Alibaba Cloud target without `alibaba`.
    """

    def client(service: str, cfg: dict[str, Any]):
        if aws is not None:
            return aws(service, cfg)
        return aws_client(service, endpoint_url=cfg.get("endpoint_url"), region=cfg.get("region", "us-east-1"))

    def here(path: str) -> Path:
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        if root is None:
            from certpilot.settings import get_settings

            return get_settings().home / p
        return (root() if callable(root) else Path(root)) / p

    def build(record: TargetRecord, key_opener: KeyOpenerById) -> DeployTarget:
        cfg = record.config
        if record.kind is TargetKind.NGINX:
            files = [{"cert": here(f["cert"]), "key": here(f["key"])} for f in cfg["files"]]
            return PemFilesTarget(record.id, files, check_argv=cfg.get("check_argv"),
                                  reload_argv=cfg.get("reload_argv"), timeout=float(cfg.get("timeout", 30)),
                                  name=cfg.get("name", record.name or "nginx"), pid_file=cfg.get("pid_file"))
        if record.kind is TargetKind.FILES:
            return FilesTarget(record.id, here(cfg["directory"]), post_command=cfg.get("post_command"))
        if record.kind is TargetKind.AWS_ACM:
            previous = partial(key_opener, record.certificate_id)
            return AcmTarget(record.id, client("acm", cfg), cfg["certificate_arn"], previous_key=previous)
        if record.kind is TargetKind.AWS_ELB:
            return ElbListenerTarget(record.id, client("elbv2", cfg), client("acm", cfg), cfg["listener_arn"],
                                     mode=cfg.get("mode", "default"), old_certificate_arn=cfg.get("old_certificate_arn"))
        if record.kind is TargetKind.ALIBABA_JOB:
            if alibaba is None:
                raise MissingBlockError(
                    f"target {record.id} deploys through an Alibaba Cloud CAS deployment job and needs an Alibaba "
                    f"Cloud connection block ({cfg.get('connection', 'default')!r}, block type "
                    "certpilot-alibaba-cloud); create it with `certpilot setup`")
            if cfg.get("upload_only"):
                return CasUploadTarget(record.id, alibaba(cfg), name=record.name)
            return DeploymentJobTarget(record.id, alibaba(cfg), cfg["resource_ids"], name=record.name,
                                       contact_ids=cfg.get("contact_ids"), timeout=float(cfg.get("timeout", 300)))
        raise BadInputError(f"no adapter for target kind {record.kind.value}")

    return build
