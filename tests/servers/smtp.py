"""An SMTP server for tests (aiosmtpd in a thread): records every message it accepts.

`port=0` fails aiosmtpd's self-check, so a free port is picked first (see base.free_port).
`smtp_server` is plain SMTP; `smtp_tls_server` offers STARTTLS and requires AUTH after it.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.servers.base import free_port, missing

USER, PASSWORD = "certpilot", "smtp-test-password"


@dataclass
class Received:
    """One accepted message: envelope and parsed content."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        """The parsed message."""
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def text(self) -> str:
        """The plain-text body."""
        return self.message.get_content()


@dataclass
class SmtpServer:
    """A running aiosmtpd controller and the messages it has received."""

    host: str
    port: int
    controller: object
    messages: list[Received] = field(default_factory=list)
    ca_pem: bytes | None = None

    def clear(self) -> None:
        """Forget received messages."""
        self.messages.clear()

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting this server's test CA (STARTTLS servers only)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode()) if self.ca_pem else ssl.create_default_context()


class _Handler:
    def __init__(self, sink: list[Received]):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.sink.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def start_smtp(*, starttls: bool = False) -> SmtpServer:
    """Start aiosmtpd on 127.0.0.1; with `starttls`, offer STARTTLS (test CA) and require AUTH."""
    from aiosmtpd.controller import Controller

    messages: list[Received] = []
    kwargs: dict = {}
    ca_pem = None
    if starttls:
        from tests.servers.certs import make_ca, make_leaf

        ca = make_ca("certpilot SMTP test CA")
        now = datetime.now(UTC)
        leaf = make_leaf(ca, ["127.0.0.1", "localhost"], now - timedelta(days=1), now + timedelta(days=30))
        tmp = Path(tempfile.mkdtemp(prefix="smtp-tls-"))
        (tmp / "cert.pem").write_bytes(leaf.fullchain_pem)
        key_file = tmp / "key.pem"
        key_file.touch(mode=0o600)
        key_file.write_bytes(leaf.key_pem)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tmp / "cert.pem", key_file)
        shutil.rmtree(tmp)  # loaded into the context: no key file left behind
        kwargs = {"tls_context": ctx, "require_starttls": True, "authenticator": _authenticator,
                  "auth_required": True, "auth_require_tls": True}
        ca_pem = ca.root_pem
    port = free_port()
    controller = Controller(_Handler(messages), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return SmtpServer(host="127.0.0.1", port=port, controller=controller, messages=messages, ca_pem=ca_pem)


def _fixture(starttls: bool):
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        missing("aiosmtpd (pip install aiosmtpd)")
    server = start_smtp(starttls=starttls)
    yield server
    server.controller.stop()


@pytest.fixture(scope="session")
def smtp_server():
    """A plain SMTP server for the session; call `.clear()` before asserting on `.messages`."""
    yield from _fixture(starttls=False)


@pytest.fixture(scope="session")
def smtp_tls_server():
    """An SMTP server that requires STARTTLS then AUTH (user `USER`, password `PASSWORD`)."""
    yield from _fixture(starttls=True)
