"""NT-1 through real channels in the `scan` flow (issue 15): the expiry notice reaches aiosmtpd over
STARTTLS through prefect-email's `EmailServerCredentials.get_server()` (the email-notices block),
and when every channel fails the scan still completes and the undelivered notice is recorded.
"""

from __future__ import annotations

import dataclasses

import pytest
from prefect_email import EmailServerCredentials

from blocks import SmtpNotifierBlock
from certpilot import runtime as rt
from certpilot.core.models import Origin, Status
from certpilot.operations import inbox
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository
from tests.flows.test_scan import DAY, NOW, certificate, run_scan
from tests.flows.test_scan import env as _env  # noqa: F401 - registers test_scan's `env` fixture as `_env`
from tests.servers.smtp import PASSWORD, USER

pytestmark = pytest.mark.flows


@pytest.fixture
def scan_env(request):
    """test_scan's environment: a SQLite store, a private CA, a clock; the scans launch nothing."""
    return request.getfixturevalue("_env")


def _due(env, cid: str) -> None:
    with session_scope(env.url) as s:
        Repository(s).add_certificate(certificate(cid, left=5 * DAY, origin=Origin.UPLOADED, state=Status.UPLOADED),
                                      now=NOW)


def test_nt1_expiry_notice_reaches_smtp_over_starttls_via_get_server(scan_env, smtp_tls_server, tmp_path, monkeypatch):
    """NT-1: the scan's expiry notice is delivered by the email-notices block (STARTTLS + AUTH,
    the server's certificate verified against the test CA), the port given as the block's field."""
    ca = tmp_path / "smtp-ca.pem"
    ca.write_bytes(smtp_tls_server.ca_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # get_server's create_default_context() trusts it
    smtp_tls_server.clear()
    block = SmtpNotifierBlock(server=EmailServerCredentials(
        smtp_server=smtp_tls_server.host, smtp_port=smtp_tls_server.port, smtp_type="STARTTLS",
        username=USER, password=PASSWORD), sender="certpilot@example.test", recipients=["noc@example.test"])
    _due(scan_env, "mailed")
    with rt.use(dataclasses.replace(scan_env.make(), notifiers=[block.notifier()])):
        summary, _ = run_scan()
    assert (summary.notices, summary.errors) == (1, 0)
    [got] = smtp_tls_server.messages
    assert got.message["Subject"] == "certpilot: mailed.example.test expires in 5 days"
    assert "noc@example.test" in got.rcpt_tos


def test_nt1_every_channel_fails_scan_completes_and_records_the_undelivered_notice(scan_env, smtp_server):
    """NT-1: the only channel refuses (plain SMTP not allowed): the scan completes its work, the
    failure is a problem of its summary, and the owner's inbox records the notice it could not send."""
    smtp_server.clear()
    block = SmtpNotifierBlock(server=EmailServerCredentials(
        smtp_server=smtp_server.host, smtp_port=smtp_server.port, smtp_type="INSECURE"),
        sender="certpilot@example.test", recipients=["noc@example.test"])
    _due(scan_env, "unsent")
    with rt.use(dataclasses.replace(scan_env.make(), notifiers=[block.notifier()])):
        summary, _ = run_scan()
        messages = inbox.messages(rt.services(), limit=10)
    assert (summary.notices, summary.errors) == (0, 1)
    [problem] = summary.problems
    assert (problem.certificate_id, problem.action) == ("unsent", "send its expiry notice")
    assert "PermanentError: no notification channel can deliver expiring for unsent.example.test" in problem.error
    assert "configured for plain SMTP" in problem.error
    assert smtp_server.messages == []
    recorded = [m for m in messages if m.certificate_id == "unsent"]
    assert recorded and "send its expiry notice" in recorded[0].body
