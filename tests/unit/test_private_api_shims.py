"""The private APIs certpilot uses sit behind one shim each (issue 15); these fail when an upgrade
of `acme` or of CPython changes them, before a renewal or a probe meets the change."""

from __future__ import annotations

import socket
import ssl
import threading

from certpilot.adapters.issuers import acme_private
from certpilot.adapters.probe import ssl_private


def test_acme_private_api_is_as_the_shim_expects():
    assert acme_private.check() == []


def test_acme_private_shim_is_the_only_user_of_the_private_names():
    """No other module calls the private `acme` names (`_post_as_get`, `_post`, `_authzr_from_response`,
    `_get_links`, `_renewal_info_path_component`), overrides `_check_response` or reaches into `_ssl`."""
    from pathlib import Path

    import certpilot

    private = ("_post_as_get", "_check_response", "._post(", "_authzr_from_response", "_get_links",
               "_renewal_info_path_component", "ssl._ssl", 'getattr(ssl, "_ssl")')
    root = Path(certpilot.__file__).parent
    users = {p.relative_to(root).as_posix() for p in root.rglob("*.py") if any(m in p.read_text() for m in private)}
    assert users == {"adapters/issuers/acme_private.py", "adapters/probe/ssl_private.py"}


def test_ssl_private_api_is_as_the_shim_expects_and_reads_a_served_chain(tmp_path):
    """`_ssl` still offers get_unverified_chain and ENCODING_DER, and the shim reads a real chain."""
    from tests.servers.certs import make_ca, make_leaf

    assert ssl_private.check() == []
    root = make_ca("shim root")
    leaf = make_leaf(make_ca("shim intermediate", issuer=root), ["shim.example.test"])
    (tmp_path / "chain.pem").write_bytes(leaf.fullchain_pem)
    (tmp_path / "key.pem").write_bytes(leaf.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            client_ctx.wrap_socket(raw, server_hostname="shim.example.test") as tls:
        ders = ssl_private.served_chain_ders(tls)
    listener.close()
    thread.join(5)
    assert ders is not None and len(ders) == 2
    assert ders[0] == ssl.PEM_cert_to_DER_cert(leaf.cert_pem.decode())
