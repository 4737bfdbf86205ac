"""A locked Prefect API that refuses the CLI says which credential is missing, not "does not answer"."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from certpilot import runtime as rt
from certpilot.core.errors import PermanentError


class _Locked(BaseHTTPRequestHandler):
    """Answers every request as Prefect does without the auth string: 401."""

    def _refuse(self):
        body = b'{"exception_message": "Unauthorized"}'
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def locked_api(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Locked)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api"
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url
    server.shutdown()


def test_lock_for_cli_names_the_auth_setting_when_refused(locked_api):
    """HTTP 401 from the configured API → PermanentError naming PREFECT_API_AUTH_STRING and the file."""
    with pytest.raises(PermanentError) as caught:
        rt.for_cli(database_url="sqlite://")
    text = str(caught.value)
    assert f"the Prefect API at {locked_api} refused this client (HTTP 401)" in text
    assert "PREFECT_API_AUTH_STRING" in text and "prefect-api-auth" in text
    assert "does not answer" not in text
