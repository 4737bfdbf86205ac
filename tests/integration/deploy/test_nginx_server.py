"""Self-test of the nginx launcher (tests/servers/nginx.py) that the deploy and probe tests use."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time

import pytest

from tests.servers.certs import make_leaf
from tests.servers.nginx import DEFAULT_NAMES, VHost, start_nginx

pytestmark = pytest.mark.servers


def served_fingerprint(port: int, name: str) -> str:
    """SHA-256 of the leaf served for SNI `name` (launcher self-test only; the product probes)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def test_session_server_serves_each_sni_name(nginx_server):
    leaves = nginx_server.extra["leaves"]
    assert nginx_server.names == list(DEFAULT_NAMES)
    for name in DEFAULT_NAMES:
        assert served_fingerprint(nginx_server.port, name) == leaves[name].fingerprint
    assert nginx_server.test_config().returncode == 0
    assert (nginx_server.key_path("a.example.test").stat().st_mode & 0o777) == 0o600


def test_reload_serves_new_files_and_renews_workers(nginx_factory, nginx_ca):
    server = nginx_factory()
    started = server.master_start_time()
    loaded = server.last_load_time()
    new = make_leaf(nginx_ca, ["b.example.test"])
    server.cert_path("b.example.test").write_bytes(new.fullchain_pem)
    server.key_path("b.example.test").write_bytes(new.key_pem)
    time.sleep(0.02)  # proc start times tick at 10 ms: make the new worker's start time differ
    server.reload()
    assert served_fingerprint(server.port, "b.example.test") == new.fingerprint
    assert server.master_start_time() == started
    assert server.last_load_time() > loaded


def test_mismatched_key_fails_nginx_t(nginx_factory, nginx_ca):
    server = nginx_factory()
    other = make_leaf(nginx_ca, ["a.example.test"])
    server.key_path("a.example.test").write_bytes(other.key_pem)
    result = server.test_config()
    assert result.returncode != 0
    assert "key values mismatch" in result.stderr


def test_many_vhosts_start_quickly(tmp_path, nginx_ca):
    """Config generation scales (the probe bench uses 1,000 vhosts; 200 here keep the suite fast)."""
    leaf = make_leaf(nginx_ca, ["*.bench.test"])
    vhosts = [VHost(f"h{i}.bench.test", leaf.fullchain_pem, leaf.key_pem) for i in range(200)]
    t0 = time.monotonic()
    server = start_nginx(tmp_path, vhosts)
    try:
        elapsed = time.monotonic() - t0
        assert served_fingerprint(server.port, "h199.bench.test") == leaf.fingerprint
        assert elapsed < 10, elapsed
    finally:
        server.stop()
