"""`certpilot list` pages and streams (issue 16): `--limit/--offset` pages add up to the streamed
`--json` answer, which is one valid document; the table says where the next page starts."""

from __future__ import annotations

AT = "2025-09-10T00:00:00Z"


def test_list_pages_add_up_to_the_streamed_json(cp, imported):
    ids = [imported([f"p{i}.example.com"], "2025-01-01", f"2025-{10 + i % 3:02d}-{1 + i:02d}") for i in range(5)]
    whole = cp("list", "--json", "--at", AT).json
    assert (whole["total"], whole["matched"], whole["next_offset"]) == (5, 5, None)
    assert sorted(c["id"] for c in whole["certificates"]) == sorted(ids)
    pages, offset = [], 0
    while offset is not None:
        page = cp("list", "--json", "--at", AT, "--limit", "2", "--offset", str(offset)).json
        pages += page["certificates"]
        offset = page["next_offset"]
    assert pages == whole["certificates"]
    soon = cp("list", "--json", "--at", AT, "--status", "expiring_soon", "--limit", "1").json
    assert (soon["matched"], soon["next_offset"], len(soon["certificates"])) == (
        sum(c["status"] == "expiring_soon" for c in whole["certificates"]), 1, 1)
    table = cp("list", "--at", AT, "--limit", "2")
    assert table.code == 0 and "1..2 of 5: next page with `--offset 2`" in table.out
    assert cp("list", "--limit", "0").code == 2 and cp("list", "--offset", "-1").code == 2
