"""Notifications delivered to real receivers: aiosmtpd (SMTP, STARTTLS + AUTH) and an HTTP server.

DEP-3: a failed deployment notifies the owner with the certificate, the target and the
diagnosis — and never with key material (CSR-5).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr, ValidationError

from certpilot.adapters.notify import EventKind, NotificationEvent, notify_all
from certpilot.adapters.notify.email import EmailNotifier
from certpilot.adapters.notify.webhook import SIGNATURE_HEADER, WebhookNotifier
from certpilot.core.errors import PermanentError, TransientError
from certpilot.core.models import Certificate, CertType, Contact, Origin, Status
from certpilot.core.verification import (
    ChainStatus,
    Diagnosis,
    DiagnosisCode,
    DiagnosisFacts,
    Endpoint,
    ProbeOutcome,
    ProbeResult,
    diagnose,
)
from certpilot.operations.notices import deployment_failed
from tests.servers.base import free_port
from tests.servers.certs import make_ca, make_leaf
from tests.servers.smtp import PASSWORD, USER

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OLD_FP, NEW_FP = "a" * 64, "b" * 64

CERT = Certificate(id="c-42", common_name="shop.example.test", names=["shop.example.test", "www.example.test"],
                   cert_type=CertType.MULTI, origin=Origin.OFFICIAL, state=Status.ISSUED, serial="1f2e",
                   fingerprint_sha256=NEW_FP, not_after=datetime(2027, 3, 31, tzinfo=UTC))
TARGET = "nginx at 127.0.0.1:8443"


def not_reloaded():
    probe = ProbeResult(Endpoint("127.0.0.1", 8443, "shop.example.test"), ProbeOutcome.OK, fingerprint=OLD_FP,
                        chain=ChainStatus.COMPLETE)
    return diagnose(DiagnosisFacts(probe=probe, new_fingerprint=NEW_FP, old_fingerprint=OLD_FP, target=TARGET,
                                   deployed_fingerprint=NEW_FP, deployed_at=NOW,
                                   reloaded_at=datetime(2026, 3, 1, 11, tzinfo=UTC),
                                   reload_hint="run `nginx -s reload`"))


def failed(cert: Certificate, diagnosis: Diagnosis | str | None) -> NotificationEvent:
    """The DEP-3 notice of a failed deployment of `cert` to TARGET, built by the one notice builder."""
    return deployment_failed(cert, TARGET, None if diagnosis is None else str(diagnosis), now=NOW)


def test_dep3_failed_deployment_email_names_certificate_target_and_diagnosis(smtp_server):
    """DEP-3: the owner's email holds the certificate, the target and the VER-2 diagnosis."""
    smtp_server.clear()
    diagnosis = not_reloaded()
    assert diagnosis.code is DiagnosisCode.NOT_RELOADED
    notifier = EmailNotifier(smtp_server.host, smtp_server.port, sender="certpilot@example.test",
                             recipients=["owner@example.test"], allow_insecure=True)
    event = failed(CERT, diagnosis)
    failures = notify_all([notifier], event)
    assert failures == {}
    assert len(smtp_server.messages) == 1
    got = smtp_server.messages[0]
    assert got.rcpt_tos == ["owner@example.test"]
    msg = got.message
    assert msg["Subject"] == "certpilot: deployment of shop.example.test to nginx at 127.0.0.1:8443 failed"
    assert msg["X-Certpilot-Certificate"] == "c-42"
    assert msg["X-Certpilot-Event"] == "deployment_failed"
    text = got.text
    for expected in ("shop.example.test", "id c-42", NEW_FP, "1f2e", "2027-03-31", TARGET,
                     "Diagnosis: [not_reloaded]", "run `nginx -s reload`"):
        assert expected in text, expected
    assert b"PRIVATE KEY" not in got.raw
    assert event.kind is EventKind.DEPLOYMENT_FAILED


def test_dep3_email_over_starttls_with_auth(smtp_tls_server):
    """DEP-3: delivery through STARTTLS + AUTH; the password is a SecretStr and never printed."""
    smtp_tls_server.clear()
    notifier = EmailNotifier(smtp_tls_server.host, smtp_tls_server.port, sender="certpilot@example.test",
                             recipients=["ops@example.test"], security="starttls", username=USER,
                             password=SecretStr(PASSWORD), ssl_context=smtp_tls_server.client_context())
    assert PASSWORD not in repr(notifier)
    notifier.send(failed(CERT, not_reloaded()))
    assert [m.rcpt_tos for m in smtp_tls_server.messages] == [["ops@example.test"]]


@pytest.mark.parametrize("security, password, expected", [
    ("starttls", "wrong-password", PermanentError),   # bad credentials: retrying will not help
    ("none", PASSWORD, PermanentError),               # server requires STARTTLS first: config error
])
def test_dep3_email_refusals_are_permanent(smtp_tls_server, security, password, expected):
    """DEP-3: configuration faults are PermanentError and never echo the password."""
    notifier = EmailNotifier(smtp_tls_server.host, smtp_tls_server.port, sender="certpilot@example.test",
                             recipients=["ops@example.test"], security=security, username=USER,
                             password=SecretStr(password), ssl_context=smtp_tls_server.client_context(),
                             allow_insecure=True)
    with pytest.raises(expected) as info:
        notifier.send(failed(CERT, "x"))
    assert password not in str(info.value)


def test_dep3_email_server_down_is_transient():
    """DEP-3: an SMTP server that is not there is a TransientError (the task retries)."""
    notifier = EmailNotifier("127.0.0.1", free_port(), sender="a@example.test", recipients=["b@example.test"],
                             timeout=2, allow_insecure=True)
    with pytest.raises(TransientError, match="could not be reached"):
        notifier.send(failed(CERT, None))


def test_dep3_event_refuses_key_material():
    """CSR-5/DEP-3: an event carrying a PEM private key cannot even be built; the key is not echoed."""
    key_pem = make_leaf(make_ca("k"), ["k.example.test"]).key_pem.decode()
    with pytest.raises(ValidationError) as info:
        failed(CERT, f"config had {key_pem}")
    assert "private key material" in str(info.value)
    assert key_pem.splitlines()[1] not in str(info.value)


class _Receiver(BaseHTTPRequestHandler):
    status = 204
    received: list[tuple[dict, bytes]] = []

    def do_POST(self):  # noqa: N802 - http.server's hook name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def webhook_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Receiver
    server.shutdown()
    server.server_close()


def test_dep3_webhook_posts_signed_json(webhook_receiver):
    """DEP-3: the webhook receives the event as JSON, HMAC-signed, with certificate, target, diagnosis."""
    url, receiver = webhook_receiver
    receiver.received.clear()
    receiver.status = 204
    notifier = WebhookNotifier(url, secret=SecretStr("hook-secret"))
    notifier.send(failed(CERT, not_reloaded()))
    [(headers, body)] = receiver.received
    data = json.loads(body)
    assert (data["kind"], data["certificate_id"], data["common_name"], data["target"]) == (
        "deployment_failed", "c-42", "shop.example.test", TARGET)
    assert data["diagnosis"].startswith("[not_reloaded] ")
    assert data["occurred_at"] == "2026-03-01T12:00:00Z"
    expected = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"


@pytest.mark.parametrize("status, expected", [(503, TransientError), (429, TransientError),
                                              (404, PermanentError), (401, PermanentError)])
def test_dep3_webhook_errors_say_whether_to_retry(webhook_receiver, status, expected):
    """DEP-3: 5xx/429 are retried (TransientError), other refusals are permanent."""
    url, receiver = webhook_receiver
    receiver.status = status
    with pytest.raises(expected, match=str(status)):
        WebhookNotifier(url).send(failed(CERT, None))


def test_dep3_one_channel_down_does_not_stop_the_other(smtp_server):
    """DEP-3: email still goes out when the webhook is unreachable; the failure is reported."""
    smtp_server.clear()
    email = EmailNotifier(smtp_server.host, smtp_server.port, sender="c@example.test", recipients=["o@example.test"],
                          allow_insecure=True)
    hook = WebhookNotifier(f"http://127.0.0.1:{free_port()}/x", timeout=2)
    failures = notify_all([hook, email], failed(CERT, "down"))
    assert list(failures) == ["webhook"] and isinstance(failures["webhook"], TransientError)
    assert len(smtp_server.messages) == 1


def test_notification_event_is_plain_data():
    """The event is frozen data a task may pass around (no key, no client objects)."""
    event = NotificationEvent(kind=EventKind.EXPIRING, certificate_id="c", common_name="a.test",
                              subject="s", body="b", occurred_at=NOW)
    assert event.model_dump()["target"] is None


def test_nt1_dep3_owner_receives_the_email_besides_the_configured_recipients(smtp_server):
    """NT-1/DEP-3: "the owner is told": the certificate owner's address is added to the
    channel's configured recipients (once, even when it is one of them)."""
    smtp_server.clear()
    notifier = EmailNotifier(smtp_server.host, smtp_server.port, sender="certpilot@example.test",
                             recipients=["noc@example.test", "shop-owner@example.test"], allow_insecure=True)
    owned = CERT.model_copy(update={"owner": Contact(email="shop-owner@example.test")})
    notify_all([notifier], failed(owned, "diagnosis"))
    other = CERT.model_copy(update={"owner": Contact(email="dev@example.test")})
    notify_all([notifier], failed(other, "diagnosis"))
    assert [m.rcpt_tos for m in smtp_server.messages] == [
        ["noc@example.test", "shop-owner@example.test"],
        ["noc@example.test", "shop-owner@example.test", "dev@example.test"],
    ]


def test_dep3_plain_smtp_refused_unless_allowed(smtp_server):
    """DEP-3/issue 15: plain SMTP is refused (nothing sent, the password never leaves) unless allowed."""
    smtp_server.clear()
    notifier = EmailNotifier(smtp_server.host, smtp_server.port, sender="certpilot@example.test",
                             recipients=["ops@example.test"], username=USER, password=SecretStr(PASSWORD))
    with pytest.raises(PermanentError) as info:
        notifier.send(failed(CERT, "x"))
    assert "is configured for plain SMTP" in info.value.message and "allow_insecure" in info.value.message
    assert PASSWORD not in str(info.value)
    assert smtp_server.messages == []


def test_dep3_hostile_common_name_cannot_inject_headers(smtp_server):
    """Issue 15: CR/LF in a (legacy, unvalidated) common name reaches the subject as visible escapes."""
    smtp_server.clear()
    notifier = EmailNotifier(smtp_server.host, smtp_server.port, sender="certpilot@example.test",
                             recipients=["ops@example.test"], allow_insecure=True)
    event = NotificationEvent(kind=EventKind.EXPIRING, certificate_id="c-1\r\nBcc: x@evil.test",
                              common_name="a.test\r\nBcc: evil@evil.test",
                              subject="certpilot: a.test\r\nBcc: evil@evil.test expires", body="b", occurred_at=NOW)
    notifier.send(event)
    got = smtp_server.messages[0]
    assert got.rcpt_tos == ["ops@example.test"]
    assert got.message["Subject"] == "certpilot: a.test\\r\\nBcc: evil@evil.test expires"
    assert got.message["Bcc"] is None


def test_dep3_webhook_channel_from_the_config_file_posts_signed_json(webhook_receiver, tmp_path, monkeypatch):
    """DEP-3: `[webhook-notices.NAME]` in `certpilot setup --config` builds the block the runtime loads
    for `webhook-notices/NAME`; its notifier signs with the secret from the environment."""
    from certpilot.setup_config import read_config_file

    url, receiver = webhook_receiver
    receiver.received.clear()
    receiver.status = 204
    monkeypatch.setenv("CERTPILOT_TEST_HOOK_SECRET", "hook-secret")
    f = tmp_path / "c.toml"
    f.write_text(f'[certpilot]\nnotification_blocks = ["webhook-notices/ops"]\n[webhook-notices.ops]\nurl = "{url}"\n'
                 'secret = { env = "CERTPILOT_TEST_HOOK_SECRET" }\n')
    plan = read_config_file(f)
    (spec,) = plan.blocks
    assert spec.ref == "certpilot-webhook-notices/ops" and "webhook-notices/ops" in plan.defined()
    notifier = spec.build().notifier()
    assert "hook-secret" not in repr(notifier)
    notifier.send(failed(CERT, None))
    [(headers, body)] = receiver.received
    expected = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"


def test_webhook_extra_headers_are_sent_and_never_shown(webhook_receiver):
    """Issue 15: an Authorization header reaches the receiver; no repr of the notifier shows it."""
    url, receiver = webhook_receiver
    receiver.received.clear()
    receiver.status = 204
    notifier = WebhookNotifier(url, headers={"Authorization": "Bearer tok-123"})
    assert "tok-123" not in repr(notifier) + repr(vars(notifier))
    notifier.send(failed(CERT, None))
    [(headers, _)] = receiver.received
    assert headers["Authorization"] == "Bearer tok-123"
