"""Alibaba Cloud OpenAPI clients (CAS 2020-04-07, AliDNS 2015-01-09) and their errors, mapped.

Every Alibaba Cloud adapter (the CAS issuer, AliDNS, deployment jobs, the inventory reader)
calls the official SDK through `AlibabaApi.call`, which maps the SDK's exceptions onto
certpilot's family: throttling and 5xx answers (and network failures) are `TransientError`
(tasks retry them, after the service's Retry-After when it sent one); any other answer is a
`PermanentError` that carries the service's code and message. The AccessKey secret is held by
the SDK's credential object only: it is in no message, `repr` or log line of this module, and
an SDK message that echoed it back would be masked before it is raised.

The clients are built from an `AlibabaConnection` (what the Prefect block holds: AccessKey id
and secret, region, optional endpoint override and protocol for an emulator or a VPC endpoint).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from certpilot.core.errors import PermanentError, Reason, TransientError

log = logging.getLogger(__name__)

CAS_ENDPOINT = "cas.aliyuncs.com"
"""CAS (SSL Certificates Service) endpoint; the API is served from the central endpoint."""
ALIDNS_ENDPOINT = "alidns.{region}.aliyuncs.com"
"""AliDNS regional endpoint."""

TRANSIENT_CODES = frozenset({
    "Throttling", "Throttling.User", "Throttling.Api", "Throttling.Concurrency", "ServiceUnavailable",
    "InternalError", "UnknownError", "ServiceUnavailableTemporary", "LastOperationNotFinished",
    "OperationConflict", "RequestTimeout",
})
"""Error codes a retry may fix (besides any 5xx status and any code starting with Throttling)."""


@dataclass(frozen=True)
class AlibabaConnection:
    """How to reach one Alibaba Cloud account.

    Attributes:
        access_key_id: the RAM user's AccessKey id (not secret: it names the key).
        secret: a callable returning the AccessKey secret when a client is built (the block's
            `SecretStr.get_secret_value`), so that no dataclass field ever holds it.
        region: the region id (AliDNS endpoint, deployment resources), e.g. ``cn-hangzhou``.
        cas_endpoint / dns_endpoint: endpoint overrides (host[:port]): a VPC endpoint, or the
            local emulator the tests use.
        protocol: ``https`` (default) or ``http`` (the emulator only).
        timeout_ms: read and connect timeout of one call.
    """

    access_key_id: str
    secret: Callable[[], str] = field(repr=False, compare=False)
    region: str = "cn-hangzhou"
    cas_endpoint: str | None = None
    dns_endpoint: str | None = None
    protocol: str = "https"
    timeout_ms: int = 10_000

    def __repr__(self) -> str:
        return (f"AlibabaConnection(access_key_id={self.access_key_id!r}, region={self.region!r}, "
                f"cas_endpoint={self.cas_endpoint!r}, protocol={self.protocol!r})")

    def _config(self, endpoint: str):
        from alibabacloud_tea_openapi.utils_models import Config

        return Config(access_key_id=self.access_key_id, access_key_secret=self.secret(), region_id=self.region,
                      endpoint=endpoint, protocol=self.protocol, read_timeout=self.timeout_ms,
                      connect_timeout=self.timeout_ms)

    def cas(self) -> AlibabaApi:
        """The CAS (SSL Certificates Service) API of this account."""
        from alibabacloud_cas20200407.client import Client

        return AlibabaApi(Client(self._config(self.cas_endpoint or CAS_ENDPOINT)), "CAS", self)

    def alidns(self) -> AlibabaApi:
        """The AliDNS API of this account."""
        from alibabacloud_alidns20150109.client import Client

        endpoint = self.dns_endpoint or ALIDNS_ENDPOINT.format(region=self.region)
        return AlibabaApi(Client(self._config(endpoint)), "AliDNS", self)


class AlibabaApi:
    """One SDK client and the error mapping every call goes through."""

    def __init__(self, client: Any, service: str, connection: AlibabaConnection) -> None:
        self.client = client
        self.service = service
        self._connection = connection

    def __repr__(self) -> str:
        return f"AlibabaApi({self.service}, {self._connection.access_key_id!r})"

    def call(self, what: str, method: str, request: Any = None) -> Any:
        """Call `client.<method>_with_options(request, runtime)` and return the response body.

        The SDK's own retries are off: a transient failure is raised as `TransientError` (with
        the service's Retry-After) for the task's retry policy, so a retry is visible in the run.

        Args:
            what: what is being done, for the message ("adding the TXT record of …").
            method: the SDK method name (snake case, without ``_with_options``).
            request: the SDK request model (None for an action without parameters).

        Raises:
            TransientError: throttling, a 5xx answer, a timeout or a network failure.
            PermanentError: any other refusal, with the service's code and message (CA_REJECTED
                reason), never the AccessKey secret.
            Both carry the service's error code as `service_code` ("" for a network failure).
        """
        from darabonba.runtime import RuntimeOptions

        runtime = RuntimeOptions(autoretry=False, max_attempts=1, read_timeout=self._connection.timeout_ms,
                                 connect_timeout=self._connection.timeout_ms)
        fn = getattr(self.client, f"{method}_with_options")
        try:
            response = fn(request, runtime) if request is not None else fn(runtime)
        except Exception as exc:  # noqa: BLE001 - the SDK raises its own and requests' errors: mapped here
            raise self._mapped(what, exc) from None
        return response.body

    def _mapped(self, what: str, exc: Exception) -> Exception:
        """certpilot's error for an SDK exception (see `call`)."""
        code = str(getattr(exc, "code", "") or "")
        status = getattr(exc, "status_code", None)
        message = self._masked(str(getattr(exc, "message", "") or type(exc).__name__))
        retry_after = getattr(exc, "retry_after", None)
        if code or status:
            err: TransientError | PermanentError
            if status is not None and int(status) >= 500 or code.startswith("Throttling") or code in TRANSIENT_CODES:
                seconds = float(retry_after) / 1000 if retry_after else None  # the SDK counts milliseconds
                err = TransientError(f"{what}: Alibaba Cloud {self.service} answered {code or status} ({message}); "
                                     "retrying later", retry_after=seconds)
            else:
                err = PermanentError(f"{what}: Alibaba Cloud {self.service} refused ({code or status}): {message}",
                                     Reason.CA_REJECTED)
            err.service_code = code  # what adapters branch on (e.g. AliDNS's DomainRecordDuplicate)
            return err
        log.debug("Alibaba Cloud %s unreachable during %s: %s", self.service, what, type(exc).__name__)
        return TransientError(f"{what}: cannot reach Alibaba Cloud {self.service} ({type(exc).__name__}); "
                              "retrying later")

    def _masked(self, text: str) -> str:
        """`text` with the AccessKey secret replaced, should a message ever echo it."""
        secret = self._connection.secret()
        return text.replace(secret, "***") if secret else text
