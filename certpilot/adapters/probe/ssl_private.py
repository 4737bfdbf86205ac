"""The one place certpilot reaches into CPython's private `_ssl` (issue 15's shim).

Python 3.11's public `ssl` API hands over only the leaf of a served chain; the private
`_ssl._SSLSocket.get_unverified_chain()` (public as `SSLObject.get_unverified_chain()` from 3.13)
returns the certificates as served, each an `_ssl.Certificate` whose `public_bytes(encoding)`
takes the private `_ssl.ENCODING_DER`. `check()` tells what differs from what this module was
written against; tests/unit/test_private_api_shims.py fails on any difference.
"""

from __future__ import annotations

import ssl
from typing import Any

_PRIVATE = getattr(ssl, "_ssl", None)
ENCODING_DER = getattr(_PRIVATE, "ENCODING_DER", None)
"""The private DER encoding constant (2 in CPython 3.10-3.13), None when gone."""


def served_chain_ders(sslobj: Any) -> list[bytes] | None:
    """The served certificates as DER, leaf first, or None when this Python cannot say.

    Args:
        sslobj: an `ssl.SSLObject` (an asyncio transport's "ssl_object") or `ssl.SSLSocket`.
    """
    inner = getattr(sslobj, "_sslobj", None)
    getter = getattr(sslobj, "get_unverified_chain", None) or getattr(inner, "get_unverified_chain", None)
    if getter is None:
        return None
    chain = getter() or []
    return [c if isinstance(c, bytes) else c.public_bytes(ENCODING_DER) for c in chain]


def check() -> list[str]:
    """What differs from what this module expects (empty: nothing)."""
    problems = []
    if _PRIVATE is None:
        problems.append("ssl._ssl is gone")
    if ENCODING_DER != 2:
        problems.append(f"ssl._ssl.ENCODING_DER is {ENCODING_DER!r} (expected 2)")
    sock_type = getattr(_PRIVATE, "_SSLSocket", None)
    if sock_type is None or not hasattr(sock_type, "get_unverified_chain"):
        problems.append("_ssl._SSLSocket.get_unverified_chain is gone")
    cert_type = getattr(_PRIVATE, "Certificate", None)
    if cert_type is None or not hasattr(cert_type, "public_bytes"):
        problems.append("_ssl.Certificate.public_bytes is gone")
    return problems
