"""Rendering untrusted text (names, CNs, CA messages) safely into messages, email and markdown.

Pure. A certificate's common name or subject comes from whoever made the certificate: it may
hold CR/LF (email header injection), NUL, terminal escapes, bidi overrides or markdown. Every
channel renders through these functions, so such text shows as visible escapes instead of
acting on the reader.
"""

from __future__ import annotations

import re
import unicodedata

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>|~])")
_MD_LEADING = re.compile(r"^([#+\-!>=])")


def is_unsafe_char(ch: str) -> bool:
    """True for control, format (bidi overrides, zero-width), surrogate, private-use and unassigned chars."""
    return unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def has_unsafe_chars(text: str) -> bool:
    """True when `text` holds any character `is_unsafe_char` flags."""
    return any(is_unsafe_char(ch) for ch in text)


def visible(text: str, *, limit: int = 200) -> str:
    """`text` with every unsafe character shown as its escape (`\\n`, `\\x00`, `\\u202e`), cut at `limit`.

    The result holds no line break and no control character: safe in a one-line message, a
    log line, an email header or a terminal.
    """
    out: list[str] = []
    for ch in text[: limit + 1]:
        out.append(ch.encode("unicode_escape").decode("ascii") if is_unsafe_char(ch) else ch)
    result = "".join(out)
    return result if len(text) <= limit else result[:limit] + "…"


def header_value(text: str, *, limit: int = 900) -> str:
    """A value safe for an email header: one line, no control characters (see `visible`)."""
    return visible(text, limit=limit)


def md_escape(text: str, *, limit: int = 500) -> str:
    """`text` for a markdown cell or line: unsafe characters escaped, markdown syntax backslashed."""
    return _MD_LEADING.sub(r"\\\1", _MD_SPECIAL.sub(r"\\\1", visible(text, limit=limit)))
