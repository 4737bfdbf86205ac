"""HTTP-01 files: the webroot responder, the built-in responder, and DV-4's refusal."""

from __future__ import annotations

import stat

import httpx
import pytest

from certpilot.adapters.http01 import ChallengeHttpServer, WebrootResponder, http01_responder
from certpilot.core.errors import BadInputError, Reason, RefusedError


def test_webroot_writes_0644_and_serves_it(tmp_path):
    webroot = tmp_path / "www"
    responder = WebrootResponder(webroot)
    path = responder.present("tok_EN-123", "tok_EN-123.thumbprint")
    assert path == webroot / ".well-known" / "acme-challenge" / "tok_EN-123"
    assert path.read_text() == "tok_EN-123.thumbprint"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o755 == 0o755
    with ChallengeHttpServer(webroot, "127.0.0.1", 0) as server:
        base = f"http://127.0.0.1:{server.port}/.well-known/acme-challenge"
        ok = httpx.get(f"{base}/tok_EN-123", timeout=2)
        assert (ok.status_code, ok.text) == (200, "tok_EN-123.thumbprint")
        assert httpx.get(f"{base}/other", timeout=2).status_code == 404
        assert httpx.get(f"http://127.0.0.1:{server.port}/etc/passwd", timeout=2).status_code == 404
        responder.cleanup("tok_EN-123")
        assert httpx.get(f"{base}/tok_EN-123", timeout=2).status_code == 404
    responder.cleanup("tok_EN-123")  # already gone: no-op


@pytest.mark.parametrize("token", ["../../etc/passwd", "a/b", "", "tok.en"])
def test_token_that_is_not_base64url_is_refused(tmp_path, token):
    with pytest.raises(BadInputError, match="is not base64url"):
        WebrootResponder(tmp_path).present(token, "x")


def test_dv4_wildcard_refused_by_adapter_selection(tmp_path):
    """DV-4: the HTTP-01 responder is never built for a wildcard certificate."""
    with pytest.raises(RefusedError) as info:
        http01_responder(["*.example.test", "example.test"], tmp_path)
    assert info.value.refusal.reason is Reason.WILDCARD_FILE_VALIDATION
    assert isinstance(http01_responder(["www.example.test"], tmp_path), WebrootResponder)
