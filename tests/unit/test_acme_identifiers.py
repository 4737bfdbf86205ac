"""The ACME adapter answers only for the certificate's own names (issue 13): an order or an
authorization naming anything else is refused before any challenge is answered."""

from __future__ import annotations

import pytest
from acme import messages

from certpilot.adapters.issuers.acme import AcmeIssuer
from certpilot.adapters.issuers.base import Application
from certpilot.core.errors import PermanentError


def _order(*values: str) -> messages.Order:
    return messages.Order(identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=v) for v in values])


def _authz(value: str, wildcard: bool = False) -> messages.AuthorizationResource:
    body = messages.Authorization(identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=value),
                                  wildcard=wildcard or None)
    return messages.AuthorizationResource(body=body, uri=f"https://ca.test/authz/{value}")


APP = Application(names=("*.shop.example.test", "shop.example.test"), csr_pem=b"")


def test_matching_identifiers_pass():
    AcmeIssuer._check_identifiers(_order("*.shop.example.test", "shop.example.test"), APP,
                                  [_authz("shop.example.test", wildcard=True), _authz("shop.example.test")])


@pytest.mark.parametrize("order, authzs, stray", [
    (("shop.example.test", "evil.example.test"), (), "evil.example.test"),
    (("shop.example.test",), ("bank.example.test",), "bank.example.test"),
])
def test_stray_identifier_refused(order, authzs, stray):
    with pytest.raises(PermanentError) as refused:
        AcmeIssuer._check_identifiers(_order(*order), APP, [_authz(a) for a in authzs])
    assert stray in refused.value.message and "nothing was answered" in refused.value.message
