"""Email notifications over SMTP (DEP-3, NT-1, NT-2): STARTTLS or implicit TLS; plain only when allowed.

Configured from Prefect, the connection is prefect-email's `EmailServerCredentials.get_server()`
(it applies the block's server enum, default port, `verify` and login); built directly (tests,
scripts) it connects itself. Either way a connection that is not TLS-verified is refused before
anything is sent unless `allow_insecure` says so: credentials and notices would travel in clear.
Every header value built from a certificate (subject, ids) is rendered with
`core.text.header_value`, so a hostile common name cannot inject headers.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from typing import Any, Literal

from pydantic import SecretStr

from certpilot.adapters.notify.base import NotificationEvent
from certpilot.core.errors import PermanentError, TransientError
from certpilot.core.text import header_value

Security = Literal["none", "starttls", "tls"]
# Long subjects (certificate + target) stay on one line: folding after "Subject:" confuses parsers.
_POLICY = SMTP_POLICY.clone(max_line_length=998)


class EmailNotifier:
    """Sends each event as one plain-text email.

    Args:
        host, port: the SMTP server.
        sender: the From address.
        recipients: the To addresses (the certificate owners).
        security: "none", "starttls" (upgrade after EHLO) or "tls" (implicit TLS, port 465).
        username, password: SMTP AUTH credentials; the password stays a SecretStr until login.
        ssl_context: the context for STARTTLS/TLS (default: system trust, hostname checked).
        timeout: seconds for connect and each command.
        allow_insecure: send over plain SMTP ("none") at all; False refuses to (the default).
        connect: builds a connected, logged-in SMTP session (prefect-email's `get_server`);
            when given, host/port/security only describe the server in messages.
    """

    name = "email"

    def __init__(self, host: str, port: int, *, sender: str, recipients: list[str],
                 security: Security = "none", username: str | None = None,
                 password: SecretStr | None = None, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 10.0, allow_insecure: bool = False,
                 connect: Callable[[], smtplib.SMTP] | None = None):
        if not recipients:
            raise ValueError("EmailNotifier needs at least one recipient")
        self.host, self.port = host, port
        self.sender, self.recipients = sender, list(recipients)
        self.security = security
        self.username, self._password = username, password
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.allow_insecure = allow_insecure
        self._connector = connect

    @classmethod
    def from_credentials(cls, server: Any, *, sender: str, recipients: list[str],
                         allow_insecure: bool = False, timeout: float = 10.0) -> EmailNotifier:
        """A notifier connecting through prefect-email's `EmailServerCredentials.get_server()`.

        Args:
            server: the `EmailServerCredentials` block (its server enum, port default, `verify`
                and login are applied by `get_server`).
            sender, recipients, allow_insecure, timeout: as for the constructor.
        """
        smtp_type = str(getattr(server.smtp_type, "name", server.smtp_type)).lower()
        host = getattr(server.smtp_server, "value", server.smtp_server)
        port = server.smtp_port or getattr(server.smtp_type, "value", 0)
        security: Security = {"ssl": "tls", "starttls": "starttls"}.get(smtp_type, "none")  # type: ignore[assignment]
        notifier = cls(str(host), int(port), sender=sender, recipients=recipients, security=security,
                       username=server.username or None, timeout=timeout, allow_insecure=allow_insecure,
                       connect=server.get_server)
        notifier.verified = bool(getattr(server, "verify", True))
        return notifier

    verified: bool = True
    """False when the server's TLS certificate is not checked (prefect-email's `verify=False`)."""

    def __repr__(self) -> str:  # the password never shows
        return f"EmailNotifier({self.host}:{self.port}, security={self.security}, to={self.recipients})"

    def recipients_for(self, event: NotificationEvent) -> list[str]:
        """The configured recipients plus the certificate's owner (the one the rules say to tell)."""
        return list(dict.fromkeys([*self.recipients, *([event.owner_email] if event.owner_email else [])]))

    def message(self, event: NotificationEvent) -> EmailMessage:
        """The email for `event` (headers name the certificate for mail filters)."""
        msg = EmailMessage(policy=_POLICY)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients_for(event))
        msg["Subject"] = header_value(event.subject)
        msg["Date"] = format_datetime(event.occurred_at)
        msg["Message-ID"] = make_msgid(domain="certpilot")
        msg["X-Certpilot-Event"] = event.kind.value
        msg["X-Certpilot-Certificate"] = header_value(event.certificate_id, limit=100)
        msg.set_content(event.body)
        return msg

    def send(self, event: NotificationEvent) -> None:
        """Deliver `event` by SMTP.

        Raises:
            TransientError: the server is unreachable, timed out, or answered 4xx.
            PermanentError: authentication failed, or the server refused sender/recipients (5xx).
        """
        where = f"SMTP server {self.host}:{self.port}"
        self._refuse_insecure(where)
        message = self.message(event)
        try:
            with self._session() as smtp:
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"{where} refused the login of {self.username!r} (code {exc.smtp_code}); "
                                 "fix the SMTP credentials of the email notifier.") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"{where} does not support what the notifier asks ({exc}); "
                                 "change the notifier's security setting.") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"{where} refused the recipients {sorted(exc.recipients)}; "
                                 "fix the owner's email address.") from None
        except smtplib.SMTPResponseException as exc:
            cls = TransientError if 400 <= exc.smtp_code < 500 else PermanentError
            raise cls(f"{where} answered {exc.smtp_code}: {exc.smtp_error!r}") from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"{where} presented a certificate that does not verify "
                                 f"({exc.verify_message}); fix the server's certificate or the "
                                 "notifier's trusted CA.") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"{where} could not be reached: {type(exc).__name__}: {exc}; "
                                 "certpilot will retry.") from None

    def _refuse_insecure(self, where: str) -> None:
        """Plain SMTP, or TLS without certificate checks, only when explicitly allowed.

        Raises:
            PermanentError: the connection would be insecure and `allow_insecure` is False.
        """
        if (self.security == "none" or not self.verified) and not self.allow_insecure:
            how = "plain SMTP" if self.security == "none" else "TLS without certificate verification"
            raise PermanentError(f"{where} is configured for {how}: notices (and any SMTP password) would travel "
                                 "readable by anyone on the path, so nothing was sent. Use STARTTLS or SSL with "
                                 "verify on, or set allow_insecure on the email-notices block to accept that.")

    def _session(self) -> smtplib.SMTP:
        """A connected SMTP session, TLS started and logged in (prefect-email's `get_server` when configured)."""
        if self._connector is not None:
            smtp = self._connector()
            if smtp.sock is not None:
                smtp.sock.settimeout(self.timeout)  # get_server takes no timeout: bound what follows
            return smtp
        smtp = self._connect()
        try:
            if self.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username:
                secret = self._password.get_secret_value() if self._password else ""
                smtp.login(self.username, secret)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()
