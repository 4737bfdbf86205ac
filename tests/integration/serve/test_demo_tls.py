"""The demo sites' TLS endpoint (`certpilot up`): it says so when its port is taken, instead of
`up` announcing sites that nothing serves (every demo renewal then fails its TLS check)."""

from __future__ import annotations

import socket
import ssl

import pytest

from certpilot.core.errors import PermanentError
from certpilot.serve import DemoTlsServer


def test_a_taken_port_is_an_error_naming_it_and_what_to_do(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PermanentError) as exc:
            DemoTlsServer(tmp_path, port=port).start()
    message = str(exc.value)
    assert f"cannot listen on 127.0.0.1:{port}" in message
    assert "`certpilot up --no-demo`" in message


def test_a_free_port_listens_once_start_returns(tmp_path):
    """start() returns only once the endpoint accepts connections (an unknown SNI name is refused
    in the handshake: the endpoint answers only the names it serves)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    DemoTlsServer(tmp_path, port=port).start()
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="nobody.example.com").do_handshake()
