"""The one place certpilot reaches into the `acme` library's private API (issue 15's shim).

certbot's `acme` client exposes no public call for RFC 8555's POST-as-GET of an arbitrary URL
(an order, an authorization, a certificate) and no hook to keep a problem's `Retry-After`.
Both are used through this module only; `check()` compares what the installed library offers
with what this module was written against, and tests/unit/test_private_api_shims.py fails on
any difference, so an upgrade that changes them is caught before a renewal meets it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import requests
from acme import messages
from acme.client import ClientNetwork, ClientV2

EXPECTED_SIGNATURES = {
    "ClientV2._post_as_get": "(self, *args: Any, **kwargs: Any) -> requests.models.Response",
    "ClientNetwork._check_response": "(response: requests.models.Response, content_type: Optional[str] = None)"
                                     " -> requests.models.Response",
}
"""The private signatures this module was written against (acme 5.x)."""


def post_as_get(client: ClientV2, url: str) -> requests.Response:
    """RFC 8555 section 6.3 POST-as-GET of `url` with the client's account (private `_post_as_get`)."""
    return client._post_as_get(url)


def network_keeping_retry_after(on_problem: Callable[[messages.Error, requests.Response], None]
                                ) -> type[ClientNetwork]:
    """A `ClientNetwork` subclass calling `on_problem(error, response)` before an ACME problem is raised.

    Overrides the private classmethod `_check_response`, the only place the library sees both
    the problem and the HTTP response (its headers hold Retry-After).
    """

    class _Network(ClientNetwork):
        @classmethod
        def _check_response(cls, response: requests.Response, content_type: str | None = None
                            ) -> requests.Response:
            try:
                return super()._check_response(response, content_type=content_type)
            except messages.Error as error:
                on_problem(error, response)
                raise

    return _Network


def check() -> list[str]:
    """What differs between the installed `acme` and `EXPECTED_SIGNATURES` (empty: nothing).

    A private method that is gone, is no longer a (class)method of the same kind, or whose
    signature changed is listed.
    """
    found = {
        "ClientV2._post_as_get": inspect.getattr_static(ClientV2, "_post_as_get", None),
        "ClientNetwork._check_response": inspect.getattr_static(ClientNetwork, "_check_response", None),
    }
    problems = []
    if not isinstance(found["ClientNetwork._check_response"], classmethod):
        problems.append("ClientNetwork._check_response is no longer a classmethod")
    for name, expected in EXPECTED_SIGNATURES.items():
        attr = found[name]
        if attr is None:
            problems.append(f"{name} is gone")
            continue
        func = attr.__func__ if isinstance(attr, classmethod) else attr
        actual = str(inspect.signature(func)).replace("(cls, ", "(")
        if actual != expected:
            problems.append(f"{name} is now {actual} (expected {expected})")
    return problems
