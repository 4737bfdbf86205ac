"""A CA file is parsed once per process while it is unchanged (`TrustBundle.from_path`): the
system bundle costs ~0.15 s of CPU to parse and every deployment check and verify stage asks."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.serialization import Encoding

from certpilot.adapters.probe.tls import TrustBundle
from certpilot.demo import make_ca


def _pem(name: str) -> bytes:
    from datetime import UTC, datetime

    _key, cert = make_ca(name, datetime(2026, 1, 1, tzinfo=UTC), 365)
    return cert.public_bytes(Encoding.PEM)


def test_a_ca_file_is_parsed_once_while_unchanged_and_again_once_changed(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_bytes(_pem("cache test one"))
    first = TrustBundle.from_path(path)
    assert TrustBundle.from_path(str(path)) is first and len(first) == 1
    path.write_bytes(_pem("cache test one") + _pem("cache test two"))
    os.utime(path, ns=(1, 1))  # a changed file, whatever the clock's resolution
    second = TrustBundle.from_path(path)
    assert second is not first and len(second) == 2
