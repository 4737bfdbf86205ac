"""AWS Certificate Manager: re-import the new certificate into the same ARN.

Re-importing (`import_certificate(CertificateArn=...)`) keeps the ARN, so every load balancer
listener, CloudFront distribution or API Gateway domain bound to it serves the new certificate
without being touched (DEP-1). Rollback re-imports the previous certificate — but ACM never
returns an imported certificate's private key, so that needs the previous key from our vault;
without it, rollback is refused with a sentence saying so.

Clients are passed in (built by `acm_client`, or by a block); nothing here reads settings.
"""

from __future__ import annotations

from typing import Any

from certpilot.adapters.deploy.base import (
    DeployError,
    DeployMaterial,
    KeyOpener,
    RollbackImpossibleError,
    TransientDeployError,
    key_matches_certificate,
)

_TRANSIENT_CODES = {"ThrottlingException", "RequestLimitExceeded", "LimitExceededException",
                    "ServiceUnavailable", "InternalFailure", "RequestTimeout"}


def aws_client(service: str, *, endpoint_url: str | None = None, region: str = "us-east-1",
               max_attempts: int = 3, **credentials: Any):
    """A boto3 client for `service`; `max_attempts=1` where the service answers NotImplemented.

    (moto's `acm.renew_certificate` answers HTTP 500 and botocore would retry it three times.)
    """
    import boto3
    from botocore.config import Config

    return boto3.client(service, endpoint_url=endpoint_url, region_name=region,
                        config=Config(retries={"max_attempts": max_attempts, "mode": "standard"}),
                        **credentials)


def acm_client(*, endpoint_url: str | None = None, region: str = "us-east-1", **credentials: Any):
    """A boto3 ACM client (see `aws_client`)."""
    return aws_client("acm", endpoint_url=endpoint_url, region=region, **credentials)


def aws_error(exc: Exception, *, step: str, what: str) -> Exception:
    """Map a botocore error to `TransientDeployError` (throttling, network) or `DeployError`."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, ParamValidationError

    if isinstance(exc, ParamValidationError):
        # Its text echoes the offending parameter's value, which may be the private key (CSR-5).
        return DeployError(f"{what}: the request's parameters were invalid ({type(exc).__name__}); fix the "
                           "target's configuration", step=step)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        msg = exc.response.get("Error", {}).get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientDeployError(f"{what}: AWS answered {code or status} ({msg}); retry later", step=step)
        return DeployError(f"{what}: AWS refused with {code} ({msg}); fix the target's configuration or "
                           "permissions", step=step)
    if isinstance(exc, EndpointConnectionError | BotoCoreError):
        return TransientDeployError(f"{what}: {type(exc).__name__}: {exc}; retry later", step=step)
    return exc


class AcmTarget:
    """Re-imports into one ACM certificate ARN.

    Args:
        target_id: the deployment target's id.
        client: a boto3 ACM client.
        certificate_arn: the ARN to re-import into (the old certificate's).
        previous_key: opener of the previous certificate's key (from our vault), or None.
    """

    kind = "aws-acm"

    def __init__(self, target_id: str, client, certificate_arn: str, *, previous_key: KeyOpener | None = None):
        self.target_id = target_id
        self.client = client
        self.certificate_arn = certificate_arn
        self.previous_key = previous_key
        self._material: DeployMaterial | None = None
        self._previous: tuple[bytes, bytes] | None = None
        self._committed = False
        self.checkpoint: dict = {}
        """Kept by the deployment task across a crash: the certificate the ARN held before."""

    def describe(self) -> str:
        """E.g. "AWS ACM certificate arn:aws:acm:…"."""
        return f"AWS ACM certificate {self.certificate_arn}"

    def stage(self, material: DeployMaterial) -> None:
        """Fetch the certificate currently in the ARN (kept for rollback) and hold the new material."""
        if "previous_certificate" not in self.checkpoint:
            # (A rerun after a crash finds it in the checkpoint: the ARN may already hold the new one.)
            try:
                got = self.client.get_certificate(CertificateArn=self.certificate_arn)
            except Exception as exc:  # noqa: BLE001 - mapped to the product's errors
                raise aws_error(exc, step="stage",
                                what=f"{self.describe()}: reading the current certificate") from exc
            self.checkpoint.update(previous_certificate=got["Certificate"],
                                   previous_chain=got.get("CertificateChain", ""))
        self._previous = (self.checkpoint["previous_certificate"].encode(),
                          self.checkpoint["previous_chain"].encode())
        self._material = material

    def validate(self) -> None:
        """ACM accepts a key that does not match: check the pair here before importing."""
        m = self._require("validate")
        try:
            ok = key_matches_certificate(m.leaf_pem, m.open_key())
        except ValueError as exc:
            raise DeployError(f"{self.describe()}: the stored private key does not parse; re-import the "
                              "certificate with its key", step="validate") from exc
        if not ok:
            raise DeployError(f"{self.describe()}: the private key does not belong to certificate "
                              f"{m.common_name}; nothing was imported — re-import the correct pair",
                              step="validate")

    def commit(self) -> None:
        """Re-import leaf, key and chain into the same ARN."""
        m = self._require("commit")
        self._import(m.leaf_pem, m.open_key(), m.chain_pem, step="commit")
        self._committed = True

    def reload(self) -> None:
        """Nothing to do: services bound to the ARN pick up the re-imported certificate."""

    def rollback(self) -> None:
        """Re-import the previous certificate with its key from our vault (if we hold it)."""
        if not self._committed:
            return
        if self._previous is None or self.previous_key is None:
            raise RollbackImpossibleError(
                f"{self.describe()}: rollback is not possible — ACM never returns the private key of an "
                "imported certificate and certpilot does not hold the previous key; re-import the previous "
                "certificate and key into this ARN by hand if the new one must not stay")
        cert, chain = self._previous
        self._import(cert, self.previous_key(), chain, step="rollback")
        self._committed = False

    def finalize(self) -> None:
        """Nothing to drop: the ARN is the same."""

    def check(self) -> list[tuple[str, str]]:
        """The ARN exists and these credentials may read it (nothing is imported)."""
        try:
            self.client.describe_certificate(CertificateArn=self.certificate_arn)
        except Exception as exc:  # noqa: BLE001 - reported as the field's problem
            return [("certificate_arn", str(aws_error(exc, step="check", what=self.describe())))]
        return []

    def _import(self, cert: bytes, key: bytes, chain: bytes, *, step: str) -> None:
        kwargs = {"CertificateArn": self.certificate_arn, "Certificate": cert, "PrivateKey": key}
        if chain.strip():
            kwargs["CertificateChain"] = chain
        try:
            self.client.import_certificate(**kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped; the message never holds the key
            raise aws_error(exc, step=step, what=f"{self.describe()}: import") from None
        finally:
            kwargs.clear()

    def _require(self, step: str) -> DeployMaterial:
        if self._material is None:
            raise DeployError(f"{self.describe()}: nothing staged", step=step)
        return self._material

    def __repr__(self) -> str:
        return f"AcmTarget({self.target_id!r}, {self.certificate_arn!r})"
