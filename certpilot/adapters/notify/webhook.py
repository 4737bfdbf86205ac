"""Webhook notifications: the event as JSON in an HTTP POST, optionally HMAC-signed."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
from pydantic import SecretStr

from certpilot.adapters.notify.base import NotificationEvent
from certpilot.core.errors import PermanentError, TransientError
from certpilot.core.secrets import Sensitive

SIGNATURE_HEADER = "X-Certpilot-Signature"


class WebhookNotifier:
    """POSTs each event as JSON to `url`.

    Args:
        url: the receiver.
        secret: when given, the body is signed: header `X-Certpilot-Signature: sha256=<hex HMAC>`.
        headers: extra headers (e.g. an Authorization the receiver needs).
        client: an httpx.Client to reuse (tests, connection pooling); one is made per send otherwise.
        timeout: seconds per request.
    """

    name = "webhook"

    def __init__(self, url: str, *, secret: SecretStr | None = None, headers: dict[str, str] | None = None,
                 client: httpx.Client | None = None, timeout: float = 10.0):
        self.url = url
        self._secret = secret
        # Extra headers often carry a token (Authorization): wrapped so no repr or traceback shows them.
        self._headers = {k: Sensitive(v, f"header {k}") for k, v in (headers or {}).items()}
        self._client = client
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.url!r}, signed={self._secret is not None})"

    def payload(self, event: NotificationEvent) -> bytes:
        """The JSON body for `event` (stable key order, so signatures are reproducible)."""
        return json.dumps(event.model_dump(mode="json"), sort_keys=True).encode()

    def send(self, event: NotificationEvent) -> None:
        """POST `event`.

        Raises:
            TransientError: network failure, timeout, 429 or 5xx (a retry may succeed).
            PermanentError: any other non-2xx answer (the receiver refuses this request).
        """
        body = self.payload(event)
        headers = {"Content-Type": "application/json", "User-Agent": "certpilot",
                   **{k: str(v.reveal()) for k, v in self._headers.items()}}
        if self._secret is not None:
            mac = hmac.new(self._secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={mac}"
        try:
            if self._client is not None:
                response = self._client.post(self.url, content=body, headers=headers, timeout=self.timeout)
            else:
                with httpx.Client(timeout=self.timeout) as client:
                    response = client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"webhook {self.url} could not be reached: {type(exc).__name__}: {exc}; "
                                 "certpilot will retry.") from None
        if response.is_success:
            return
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientError(f"webhook {self.url} answered {status}; certpilot will retry.")
        raise PermanentError(f"webhook {self.url} refused the notification with {status}; "
                             "check the URL and the receiver's authentication.")
