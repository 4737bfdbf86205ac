"""Untrusted text (CNs, CA messages) rendered safely into one-line messages, email headers and markdown."""

from __future__ import annotations

import pytest

from certpilot.core.text import header_value, md_escape, visible


@pytest.mark.parametrize("raw, shown", [
    ("a.example.com\r\nBcc: x@evil.test", "a.example.com\\r\\nBcc: x@evil.test"),
    ("nul\x00here", "nul\\x00here"),
    ("\u202eevil", "\\u202eevil"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("b\u00fccher.example", "b\u00fccher.example"),  # printable non-ASCII stays readable
])
def test_visible_escapes_control_and_invisible_characters(raw, shown):
    assert visible(raw) == shown == header_value(raw)


def test_visible_cuts_long_text():
    assert visible("x" * 500, limit=10) == "x" * 10 + "…"


@pytest.mark.parametrize("raw, shown", [
    ("**[click](http://evil)**", "\\*\\*\\[click\\]\\(http://evil\\)\\*\\*"),
    ("a | b", "a \\| b"),
    ("# heading", "\\# heading"),
    ("crt-1 shop.example.com", "crt-1 shop.example.com"),
    ("`code`<img>", "\\`code\\`\\<img\\>"),
])
def test_md_escape_neutralizes_markdown(raw, shown):
    assert md_escape(raw) == shown
