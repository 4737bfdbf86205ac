"""Email notifications over SMTP (DEP-3, NT-1, NT-2): plain, STARTTLS or implicit TLS."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from typing import Literal

from pydantic import SecretStr

from certpilot.adapters.notify.base import NotificationEvent
from certpilot.core.errors import PermanentError, TransientError

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
    """

    name = "email"

    def __init__(self, host: str, port: int, *, sender: str, recipients: list[str],
                 security: Security = "none", username: str | None = None,
                 password: SecretStr | None = None, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 10.0):
        if not recipients:
            raise ValueError("EmailNotifier needs at least one recipient")
        self.host, self.port = host, port
        self.sender, self.recipients = sender, list(recipients)
        self.security = security
        self.username, self._password = username, password
        self.ssl_context = ssl_context
        self.timeout = timeout

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
        msg["Subject"] = event.subject
        msg["Date"] = format_datetime(event.occurred_at)
        msg["Message-ID"] = make_msgid(domain="certpilot")
        msg["X-Certpilot-Event"] = event.kind.value
        msg["X-Certpilot-Certificate"] = event.certificate_id
        msg.set_content(event.body)
        return msg

    def send(self, event: NotificationEvent) -> None:
        """Deliver `event` by SMTP.

        Raises:
            TransientError: the server is unreachable, timed out, or answered 4xx.
            PermanentError: authentication failed, or the server refused sender/recipients (5xx).
        """
        where = f"SMTP server {self.host}:{self.port}"
        try:
            with self._connect() as smtp:
                if self.security == "starttls":
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if self.username:
                    secret = self._password.get_secret_value() if self._password else ""
                    smtp.login(self.username, secret)
                smtp.send_message(self.message(event))
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

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()
