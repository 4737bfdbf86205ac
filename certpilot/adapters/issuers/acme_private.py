"""The one place certpilot reaches into the `acme` library's private API (issue 15's shim).

certbot's `acme` client exposes no public call for RFC 8555's POST-as-GET of an arbitrary URL
(an order, an authorization, a certificate), no hook to keep a problem's `Retry-After`, no
newOrder with ARI's `replaces` (a signed POST of our own order object, its authorizations read
back), no reader of a response's `Link` alternates (preferred chains) and no public ARI
certificate identifier. All are used through this module only; `check()` compares what the installed library offers
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
    "ClientV2._post": "(self, *args: Any, **kwargs: Any) -> requests.models.Response",
    "ClientV2._authzr_from_response": "(self, response: requests.models.Response, identifier: "
                                      "Optional[acme.messages.Identifier] = None, uri: Optional[str] = None)"
                                      " -> acme.messages.AuthorizationResource",
    "ClientV2._get_links": "(self, response: requests.models.Response, relation_type: str) -> list[str]",
    "client._renewal_info_path_component": "(cert: cryptography.hazmat.bindings._rust.x509.Certificate) -> str",
    "ClientNetwork._check_response": "(response: requests.models.Response, content_type: Optional[str] = None)"
                                     " -> requests.models.Response",
}
"""The private signatures this module was written against (acme 5.x)."""


def post_as_get(client: ClientV2, url: str) -> requests.Response:
    """RFC 8555 section 6.3 POST-as-GET of `url` with the client's account (private `_post_as_get`)."""
    return client._post_as_get(url)


def post(client: ClientV2, url: str, obj: object) -> requests.Response:
    """A signed POST of the ACME object `obj` to `url` with the client's account (private `_post`)."""
    return client._post(url, obj)


def authorization(client: ClientV2, url: str) -> messages.AuthorizationResource:
    """The authorization at `url`, read by POST-as-GET (private `_authzr_from_response`)."""
    return client._authzr_from_response(client._post_as_get(url), uri=url)


def alternate_links(client: ClientV2, response: requests.Response) -> list[str]:
    """The `Link: <url>;rel="alternate"` URLs of a certificate download (private `_get_links`)."""
    return client._get_links(response, "alternate")


def ari_cert_id(cert: object) -> str:
    """ARI's certificate identifier of `cert` (RFC 9773 section 4.1), the library's construction
    (private `acme.client._renewal_info_path_component`).

    Raises:
        cryptography.x509.ExtensionNotFound: the certificate has no Authority Key Identifier.
    """
    from acme import client as _client

    return _client._renewal_info_path_component(cert)


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
    from acme import client as _client

    found = {
        "ClientV2._post_as_get": inspect.getattr_static(ClientV2, "_post_as_get", None),
        "ClientNetwork._check_response": inspect.getattr_static(ClientNetwork, "_check_response", None),
        "ClientV2._post": inspect.getattr_static(ClientV2, "_post", None),
        "ClientV2._authzr_from_response": inspect.getattr_static(ClientV2, "_authzr_from_response", None),
        "ClientV2._get_links": inspect.getattr_static(ClientV2, "_get_links", None),
        "client._renewal_info_path_component": getattr(_client, "_renewal_info_path_component", None),
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
