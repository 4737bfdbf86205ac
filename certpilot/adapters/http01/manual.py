"""HTTP-01 by a person (DV-3 file validation, NT-2): the system cannot write the web server's files.

`ManualFile` is one file a person must place (its URL, its path under the site's root and its exact
content); `ManualFileRequired` carries the files still missing, raised before the CA is told to
validate; `file_served` checks over plain HTTP, as the CA will, that a file answers with its content.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from certpilot.adapters.http01.webroot import CHALLENGE_PATH, _check_token
from certpilot.core.errors import CertpilotError


@dataclass(frozen=True)
class ManualFile:
    """One HTTP-01 file a person places on the web server of `domain`."""

    domain: str
    token: str
    content: str
    port: int = 80

    @property
    def path(self) -> str:
        """The path under the site's root: ``/.well-known/acme-challenge/TOKEN``."""
        return f"/{CHALLENGE_PATH}/{_check_token(self.token)}"

    @property
    def url(self) -> str:
        """Where the CA fetches it (plain HTTP, port 80 outside tests)."""
        port = "" if self.port == 80 else f":{self.port}"
        return f"http://{self.domain}{port}{self.path}"

    @property
    def instruction(self) -> str:
        """A sentence for the operator: where, and exactly what."""
        return (f"Place a file at {self.url} (on the web server of {self.domain}: the path {self.path} under "
                f"the site's root) containing exactly: {self.content}")


class ManualFileRequired(CertpilotError):
    """A person must place HTTP-01 files before the CA is told to validate (DV-3); not retried."""

    def __init__(self, files: Sequence[ManualFile]):
        self.files = tuple(files)
        super().__init__("; ".join(f.instruction for f in self.files))


def file_served(file: ManualFile, *, host: str | None = None, timeout: float = 3.0) -> bool:
    """True when ``GET`` of the file's URL answers 200 with exactly its content (whitespace around it
    ignored, as CAs do). `host` connects elsewhere than the domain (tests: loopback), keeping the Host
    header."""
    url = file.url if host is None else f"http://{host}:{file.port}{file.path}"
    request = urllib.request.Request(url, headers={"Host": file.domain})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http only, by design
            return response.status == 200 and response.read().decode(errors="replace").strip() == file.content
    except (urllib.error.URLError, OSError, ValueError):
        return False
