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


def _with_serial_zero(pem: bytes) -> bytes:
    """The same certificate with its serial number rewritten to 0, as legacy roots have it (Go
    Daddy Class 2, Starfield Class 2, SECOM RootCA1/2 in Debian's bundle); the signature no
    longer matches, which loading does not look at."""
    import base64
    import re

    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(Encoding.DER)
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")
    encoded = bytes([0x02, len(serial)]) + serial
    assert der.count(encoded) == 1
    zero = der.replace(encoded, bytes([0x02, 0x01, 0x00]))
    # the TBSCertificate and Certificate SEQUENCE lengths shrink by what the serial lost
    shrink = len(encoded) - 3
    tbs_len = int.from_bytes(der[6:8], "big") if der[5] == 0x82 else None
    outer = int.from_bytes(der[2:4], "big")
    assert der[1] == 0x82 and tbs_len is not None
    zero = der[:2] + (outer - shrink).to_bytes(2, "big") + der[4:6] + (tbs_len - shrink).to_bytes(2, "big") + zero[8:]
    body = base64.encodebytes(zero).replace(b"\n", b"")
    lines = b"\n".join(re.findall(rb".{1,64}", body))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


def test_a_legacy_root_with_serial_zero_loads_quietly_and_an_unparseable_one_is_left_out(recwarn):
    from cryptography import x509

    legacy = _with_serial_zero(_pem("legacy root"))
    assert x509.load_pem_x509_certificate(legacy).serial_number == 0  # the bytes are what we meant
    recwarn.clear()
    broken = b"-----BEGIN CERTIFICATE-----\nTUlJQm9vcHM=\n-----END CERTIFICATE-----\n"
    bundle = TrustBundle.from_pem(legacy + broken + _pem("current root"))
    assert len(bundle) == 2  # the legacy root and the current one; the broken block left out
    assert not [w for w in recwarn if "serial number" in str(w.message)]
