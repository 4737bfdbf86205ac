"""Limits on everything that enters certpilot from outside (hostile input, issue 15).

Pure data and checks: the parsing layer (`crypto.pem`, `crypto.importer`), the CLI's file
reads and the demo endpoint apply them before any work whose cost grows with the input, so a
hostile file is refused in bounded time with nothing stored changed. Each limit is far above
what a real certificate, key or bundle needs (a certbot fullchain is about 5 KB and 2-3
certificates; public CAs issue at most a few hundred SANs).
"""

from __future__ import annotations

from certpilot.core.errors import BadInputError, Reason

MAX_INPUT_BYTES = 256 * 1024
"""One PEM input (a --cert, --key or --chain file, a flow parameter): 256 KiB."""
MAX_PEM_BLOCKS = 32
"""PEM blocks in one input: a leaf and its intermediates, never a trust store."""
MAX_BUNDLE_CERTS = 16
"""Certificates in one bundle (--cert and --chain together)."""
MAX_CHAIN_LENGTH = 8
"""Intermediates above the leaf once ordered (real chains have 1-3)."""
MAX_SANS = 1000
"""subjectAltName entries of one certificate (the name rules then apply their own, lower limits)."""
MAX_RAW_NAME = 1024
"""Characters of one name before IDNA mapping (a valid name is at most 253 once encoded)."""
MAX_COMMON_NAME = 64
"""RFC 5280's ub-common-name: the longest CN a certificate may hold."""
MAX_PEM_LABEL = 64
"""Characters of a PEM label (`-----BEGIN <label>-----`)."""
MAX_RETRY_AFTER_SECONDS = 24 * 3600
"""The longest Retry-After a CA's answer may impose on a run (longer is clamped to this)."""
MAX_HTTP_BODY_BYTES = 1024 * 1024
"""The largest answer body certpilot parses from a CA or other remote API."""


def check_size(data: bytes | str | None, *, what: str, limit: int = MAX_INPUT_BYTES) -> None:
    """Refuse an input larger than `limit` bytes (text is counted as UTF-8, at most 4 bytes a char).

    Args:
        data: the input (None counts as empty).
        what: its role for the message ("--cert", "parameter cert_pem").
        limit: the largest size allowed, in bytes.

    Raises:
        BadInputError(INPUT_TOO_LARGE): naming the size and the limit.
    """
    if data is None:
        return
    size = len(data) if isinstance(data, bytes | bytearray | memoryview) else _text_size(data, limit)
    if size > limit:
        raise BadInputError(
            f"{what} is {size} bytes, more than the {limit} bytes certpilot accepts for one input; "
            "give only the certificate, its key and its intermediates (PEM).",
            Reason.INPUT_TOO_LARGE,
        )


def _text_size(text: str, limit: int) -> int:
    # Without encoding a huge string: a str of n chars is n..4n bytes in UTF-8.
    if len(text) > limit:
        return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
    return len(text.encode("utf-8", "replace")) if len(text) * 4 > limit else len(text)


def too_many(count: int, limit: int, *, what: str, advice: str) -> BadInputError | None:
    """A BadInputError(INPUT_TOO_LARGE) when `count` exceeds `limit`, else None (the caller raises it)."""
    if count <= limit:
        return None
    return BadInputError(f"{what}: {count}, more than the {limit} certpilot accepts; {advice}",
                         Reason.INPUT_TOO_LARGE)
