"""HTTP-01 by files: write the key authorization under a webroot, and a tiny responder to serve it.

`WebrootResponder` is for hosts whose web server already serves a directory at
``/.well-known/acme-challenge/``. `ChallengeHttpServer` is a minimal HTTP server (a thread) that
serves only that path from a webroot: for tests, and for hosts without a web server.
"""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

from certpilot.core.errors import BadInputError, PermanentError
from certpilot.crypto.safefile import atomic_write

CHALLENGE_PATH = ".well-known/acme-challenge"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # base64url (RFC 8555 section 8.1): no path tricks


def _check_token(token: str) -> str:
    if not _TOKEN.match(token):
        raise BadInputError(f"the HTTP-01 token {token[:40]!r} is not base64url; refusing to use it as a file name")
    return token


class WebrootResponder:
    """Places ``/.well-known/acme-challenge/TOKEN`` files under a webroot (DV-3 file validation)."""

    name = "webroot"

    def __init__(self, webroot: str | Path):
        """Args:
            webroot: the directory the web server serves at ``/``.
        """
        self.webroot = Path(webroot)

    def path_for(self, token: str) -> Path:
        """The file that answers `token`."""
        return self.webroot / CHALLENGE_PATH / _check_token(token)

    def present(self, token: str, key_authorization: str) -> Path:
        """Write the key authorization at the token's path (mode 0644, directories 0755).

        Returns:
            The file written.

        Raises:
            BadInputError: the token is not base64url.
            PermanentError: the webroot cannot be written.
        """
        path = self.path_for(token)
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            # Atomic (the CA never reads a half-written file), 0644 whatever our umask (the web
            # server's user must read it), through an unpredictable O_EXCL|O_NOFOLLOW temp file.
            atomic_write(path, key_authorization.encode(), mode=0o644)
        except OSError as exc:  # UnsafeLocationError (a PermanentError) passes through as it is
            raise PermanentError(f"cannot write the HTTP-01 file under {self.webroot} ({exc.strerror}); "
                                 "make the webroot writable by certpilot or use DNS validation") from exc
        return path

    def cleanup(self, token: str) -> None:
        """Remove the token's file (absent: no-op)."""
        try:
            self.path_for(token).unlink()
        except FileNotFoundError:
            pass


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "certpilot-http01"
    webroot: Path

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        prefix = "/" + CHALLENGE_PATH + "/"
        token = self.path.split("?", 1)[0][len(prefix):] if self.path.startswith(prefix) else ""
        body = None
        if token and _TOKEN.match(token):
            try:
                body = (self.webroot / CHALLENGE_PATH / token).read_bytes()
            except OSError:
                body = None
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet: tokens are not secrets, but noise
        return


class ChallengeHttpServer:
    """Serves ``/.well-known/acme-challenge/*`` from a webroot on host:port, in a daemon thread."""

    def __init__(self, webroot: str | Path, host: str = "127.0.0.1", port: int = 80):
        """Args:
            webroot: the directory a `WebrootResponder` writes.
            host: address to bind.
            port: port to bind (0 picks a free one; see `port` after `start`).
        """
        self.webroot, self.host, self.port = Path(webroot), host, port
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ChallengeHttpServer:
        """Bind and serve; returns self.

        Raises:
            PermanentError: the port cannot be bound.
        """
        handler = type("Handler", (_Handler,), {"webroot": self.webroot})
        try:
            self._httpd = http.server.ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise PermanentError(f"cannot listen on {self.host}:{self.port} for HTTP-01 ({exc.strerror}); "
                                 "free the port or use the web server's webroot") from exc
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"http01-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ChallengeHttpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
