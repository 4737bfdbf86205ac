"""An AWS ALB/ELBv2 HTTPS listener: the new certificate imported into ACM, then set as the
listener's default certificate or added as an SNI certificate.

The old certificate is removed from the listener only in `finalize()`, after verification;
`rollback()` restores the old default (or removes the added SNI certificate) and deletes the
certificate this deployment imported.

Crash-safe across reruns of one task: the import is tagged with the target and the certificate's
fingerprint, so a run that died between the import and the record of its ARN leaves nothing a
rerun imports twice (it finds the tagged import again); a recorded ARN that no longer exists (a
run died after deleting it) is forgotten, not reused; and `rollback()` reads the listener as it
is, so it restores what an earlier, dead run of the task attached.
"""

from __future__ import annotations

from certpilot.adapters.deploy.aws_acm import aws_error
from certpilot.adapters.deploy.base import DeployError, DeployMaterial, key_matches_certificate

MODES = ("default", "sni")
TAG_TARGET = "certpilot-target"
"""ACM tag naming the deployment target an import was made for (found again after a crash)."""
TAG_FINGERPRINT = "certpilot-fingerprint"
"""ACM tag holding the imported certificate's SHA-256 fingerprint."""


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code", "")


class ElbListenerTarget:
    """Deploys to one listener.

    Args:
        target_id: the deployment target's id.
        elbv2: a boto3 ELBv2 client.
        acm: a boto3 ACM client (the new certificate is imported there first).
        listener_arn: the HTTPS listener.
        mode: "default" (replace the default certificate) or "sni" (add beside it).
        old_certificate_arn: in "sni" mode, the certificate to remove after verification
            (default: none is removed).
    """

    kind = "aws-elb"

    def __init__(self, target_id: str, elbv2, acm, listener_arn: str, *, mode: str = "default",
                 old_certificate_arn: str | None = None):
        if mode not in MODES:
            raise DeployError(f"listener target {target_id}: mode {mode!r} is not one of {', '.join(MODES)}",
                              step="stage")
        self.target_id = target_id
        self.elbv2 = elbv2
        self.acm = acm
        self.listener_arn = listener_arn
        self.mode = mode
        self.old_certificate_arn = old_certificate_arn
        self.new_certificate_arn: str | None = None
        self._material: DeployMaterial | None = None
        self._old_default: str | None = None
        self._attached = False
        self.checkpoint: dict = {}
        """Kept by the deployment task across a crash: the previous default and the imported ARN."""

    def describe(self) -> str:
        """E.g. "AWS load balancer listener arn:… (default certificate)"."""
        what = "default certificate" if self.mode == "default" else "SNI certificate"
        return f"AWS load balancer listener {self.listener_arn} ({what})"

    def _call(self, step: str, what: str, fn, **kwargs):
        try:
            return fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to the product's errors
            raise aws_error(exc, step=step, what=f"{self.describe()}: {what}") from None

    def stage(self, material: DeployMaterial) -> None:
        """Read the listener's current default certificate (for rollback) and hold the material."""
        got = self._call("stage", "describing the listener", self.elbv2.describe_listeners,
                         ListenerArns=[self.listener_arn])
        listeners = got.get("Listeners", [])
        if not listeners:
            raise DeployError(f"{self.describe()}: no such listener; fix the target's listener ARN", step="stage")
        certs = listeners[0].get("Certificates") or []
        if "old_default" not in self.checkpoint:  # a rerun after a crash keeps the first run's
            self.checkpoint["old_default"] = certs[0]["CertificateArn"] if certs else None
        self._old_default = self.checkpoint["old_default"]
        self.new_certificate_arn = self.new_certificate_arn or self.checkpoint.get("new_certificate_arn")
        if self.new_certificate_arn and not self._exists(self.new_certificate_arn):
            # A run died after deleting its import (rollback) but before recording that: forget it.
            self.new_certificate_arn = None
            self.checkpoint.pop("new_certificate_arn", None)
        self._material = material

    def validate(self) -> None:
        """Check the key belongs to the certificate (ACM would accept a mismatch)."""
        m = self._require("validate")
        try:
            ok = key_matches_certificate(m.leaf_pem, m.open_key())
        except ValueError:
            ok = False
        if not ok:
            raise DeployError(f"{self.describe()}: the private key does not belong to certificate "
                              f"{m.common_name}; nothing was changed — re-import the correct pair",
                              step="validate")

    def commit(self) -> None:
        """Import the new certificate into ACM and attach it to the listener."""
        m = self._require("commit")
        if self.new_certificate_arn is None:
            # A run that died after importing and before its checkpoint was recorded left a tagged import.
            self.new_certificate_arn = self._tagged_import(m.fingerprint)
            if self.new_certificate_arn:
                self.checkpoint["new_certificate_arn"] = self.new_certificate_arn
        if self.new_certificate_arn is None:
            kwargs = {"Certificate": m.leaf_pem, "PrivateKey": m.open_key(),
                      "Tags": [{"Key": TAG_TARGET, "Value": self.target_id},
                               {"Key": TAG_FINGERPRINT, "Value": m.fingerprint}]}
            if m.chain_pem.strip():
                kwargs["CertificateChain"] = m.chain_pem
            got = self._call("commit", "importing the new certificate into ACM", self.acm.import_certificate,
                             **kwargs)
            kwargs.clear()
            self.new_certificate_arn = got["CertificateArn"]
            self.checkpoint["new_certificate_arn"] = self.new_certificate_arn
        new = [{"CertificateArn": self.new_certificate_arn}]
        if self.mode == "default":
            self._call("commit", "setting the default certificate", self.elbv2.modify_listener,
                       ListenerArn=self.listener_arn, Certificates=new)
        else:
            self._call("commit", "adding the SNI certificate", self.elbv2.add_listener_certificates,
                       ListenerArn=self.listener_arn, Certificates=new)
        self._attached = True

    def reload(self) -> None:
        """Nothing to do: the listener serves the new certificate once modified."""

    def rollback(self) -> None:
        """Restore the old default (or detach the added SNI certificate) and delete the import.

        Reads the listener as it is (an earlier run of the task may have attached the import and
        died), so it works from the checkpoint alone; an import already deleted counts as deleted.
        """
        new = self.new_certificate_arn or self.checkpoint.get("new_certificate_arn")
        if new is None and self._material is not None:
            new = self._tagged_import(self._material.fingerprint)
        if new:
            got = self._call("rollback", "describing the listener", self.elbv2.describe_listeners,
                             ListenerArns=[self.listener_arn])
            certs = (got.get("Listeners") or [{}])[0].get("Certificates") or []
            default = certs[0]["CertificateArn"] if certs else None
            old_default = self._old_default or self.checkpoint.get("old_default")
            if self.mode == "default" and old_default and default != old_default:
                self._call("rollback", "restoring the previous default certificate", self.elbv2.modify_listener,
                           ListenerArn=self.listener_arn, Certificates=[{"CertificateArn": old_default}])
            elif self.mode == "sni":
                listed = self._call("rollback", "listing the listener's certificates",
                                    self.elbv2.describe_listener_certificates, ListenerArn=self.listener_arn)
                if new in {c["CertificateArn"] for c in listed.get("Certificates", [])}:
                    self._call("rollback", "removing the new SNI certificate",
                               self.elbv2.remove_listener_certificates, ListenerArn=self.listener_arn,
                               Certificates=[{"CertificateArn": new}])
            self._attached = False
            self._delete(new)
            self.new_certificate_arn = None
            self.checkpoint.pop("new_certificate_arn", None)

    def check(self) -> list[tuple[str, str]]:
        """The listener exists and these credentials may read it and list ACM (nothing changes)."""
        try:
            got = self.elbv2.describe_listeners(ListenerArns=[self.listener_arn])
        except Exception as exc:  # noqa: BLE001 - reported as the field's problem
            return [("listener_arn", str(aws_error(exc, step="check", what=self.describe())))]
        if not got.get("Listeners"):
            return [("listener_arn", f"{self.describe()}: no such listener")]
        try:
            self.acm.list_certificates(MaxItems=1)
        except Exception as exc:  # noqa: BLE001 - reported as the field's problem
            return [("credentials", str(aws_error(exc, step="check", what="ACM (where the new certificate is "
                                                                           "imported)")))]
        return []

    def _exists(self, arn: str) -> bool:
        try:
            self.acm.describe_certificate(CertificateArn=arn)
        except Exception as exc:  # noqa: BLE001 - only "not found" means gone
            if _code(exc) == "ResourceNotFoundException":
                return False
            raise aws_error(exc, step="stage", what=f"{self.describe()}: reading the recorded import") from None
        return True

    def _delete(self, arn: str) -> None:
        try:
            self.acm.delete_certificate(CertificateArn=arn)
        except Exception as exc:  # noqa: BLE001 - already deleted (a dead run did it) is deleted
            if _code(exc) != "ResourceNotFoundException":
                raise aws_error(exc, step="rollback", what=f"{self.describe()}: deleting the imported certificate"
                                ) from None

    def _tagged_import(self, fingerprint: str) -> str | None:
        """The ACM certificate this target imported for `fingerprint` (by its tags), if any."""
        pages = self.acm.get_paginator("list_certificates").paginate()
        for page in pages:
            for summary in page.get("CertificateSummaryList", []):
                arn = summary["CertificateArn"]
                try:
                    tags = self.acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
                except Exception:  # noqa: BLE001 - deleted meanwhile: not ours to reuse
                    continue
                got = {t["Key"]: t.get("Value") for t in tags}
                if got.get(TAG_TARGET) == self.target_id and got.get(TAG_FINGERPRINT) == fingerprint:
                    return arn
        return None

    def finalize(self) -> None:
        """After verification: remove the old certificate from the listener's certificate list."""
        old = self._old_default if self.mode == "default" else self.old_certificate_arn
        if not old or old == self.new_certificate_arn:
            return
        listed = self._call("finalize", "listing the listener's certificates",
                            self.elbv2.describe_listener_certificates, ListenerArn=self.listener_arn)
        held = {c["CertificateArn"] for c in listed.get("Certificates", []) if not c.get("IsDefault")}
        if old in held:
            self._call("finalize", "removing the previous certificate", self.elbv2.remove_listener_certificates,
                       ListenerArn=self.listener_arn, Certificates=[{"CertificateArn": old}])

    def _require(self, step: str) -> DeployMaterial:
        if self._material is None:
            raise DeployError(f"{self.describe()}: nothing staged", step=step)
        return self._material

    def __repr__(self) -> str:
        return f"ElbListenerTarget({self.target_id!r}, {self.listener_arn!r}, mode={self.mode!r})"
