"""The order book on the command line: `certpilot orders`, `certpilot order show ID`,
`certpilot order cancel ID`.

Registered by `certpilot.cli` (`register(module)`), whose output helpers, error shape and exit
codes these commands share: a refusal raises `RefusedError` and `cli.main` renders it like every
other (exit 3), an unknown id is `NotFoundError` (exit 4). Like the rest of the CLI this module
calls `certpilot.operations` only.
"""

from __future__ import annotations

from types import ModuleType
from typing import Annotated, Any, Literal

from cyclopts import App, Parameter

JsonFlag = Annotated[bool, Parameter(name="--json", negative="", help="Machine output (JSON).")]
AtOption = Annotated[
    str | None,
    Parameter(name="--at", help="List as of this ISO 8601 instant with a timezone, e.g. 2025-09-10T00:00:00Z."),
]
StateOption = Annotated[
    Literal["awaiting_payment", "paid", "declined", "cancelled", "expired"] | None,
    Parameter(help="Only orders in this state (unpaid orders past their expiry are `expired`)."),
]

_cli: ModuleType | None = None
"""`certpilot.cli` (or `__main__`), set by `register`: its helpers are read at call time."""


def register(cli: ModuleType) -> None:
    """Add `orders` and the `order` sub-commands to `cli.app`."""
    global _cli
    _cli = cli
    order_app = App(name="order", help="One order: show it, or cancel it while it is unpaid.")
    order_app.command(order_show, name="show")
    order_app.command(order_cancel, name="cancel")
    cli.app.command(orders, name="orders")
    cli.app.command(order_app)


def _at(at: str | None):
    """`--at` parsed, or None: the services' clock (what the operations default to)."""
    return _cli._now(at) if at is not None else None


def _line_dict(line) -> dict[str, Any]:
    from certpilot.operations.common import iso

    return {"id": line.id, "kind": line.kind.value, "state": line.state.value, "certificate_id": line.certificate_id,
            "spec": line.spec_key, "years": line.years, "names": list(line.names),
            "created_at": iso(line.created_at), "certificates": line.certificates}


def _detail_dict(d) -> dict[str, Any]:
    from certpilot.operations.common import iso

    o = d.order
    return {"order": {**_cli.order_dict(o), "names": list(o.names), "owner": o.owner.email if o.owner else None},
            "at": iso(d.at), "expires_at": iso(d.expires_at), "charged": d.charged,
            "certificates": [_cli.view_dict(v) for v in d.certificates],
            "ledger": [_cli.ledger_dict(e) for e in d.ledger], "next_step": d.next_step}


def orders(*, state: StateOption = None,
           limit: Annotated[int, Parameter(help="Show at most this many, newest first (0: all).")] = 50,
           at: AtOption = None, as_json: JsonFlag = False) -> int:
    """List orders, newest first, with the count per state; unpaid orders expire after 30 days."""
    from certpilot.operations import orders as ops

    r = ops.list_orders(_cli._ctx.services(), state=state, now=_at(at), limit=limit)
    from certpilot.operations.common import iso

    data = {"at": iso(r.at), "state": state, "total": r.total, "shown": len(r.orders),
            "counts": {k.value: v for k, v in r.counts.items()}, "expiry_days": r.expiry_days,
            "orders": [_line_dict(x) for x in r.orders]}

    def render(con):
        from rich.table import Table

        e = _cli._e
        if not r.orders:
            what = f"no {state} orders" if state else "no orders yet"
            con.print(f"{what}; `certpilot buy --name NAME` places a purchase, `certpilot renew ID` a renewal")
        else:
            t = Table(title="Orders" + (f" ({state})" if state else ""))
            for col in ("id", "kind", "state", "names / certificate", "spec", "years", "placed", "certs"):
                t.add_column(col, no_wrap=col in ("id", "state", "placed"))
            for x in r.orders:
                t.add_row(x.id, x.kind.value, x.state.value, e(", ".join(x.names) or x.certificate_id or "-"),
                          e(x.spec_key), str(x.years), _cli._fmt_date(x.created_at), str(x.certificates))
            con.print(t)
        if r.total > len(r.orders):
            con.print(f"showing the newest {len(r.orders)} of {r.total}; `--limit 0` lists them all")
        if not r.counts:  # nothing stored at all: the tallies would say nothing
            return
        counts = ", ".join(f"{k.value} {v}" for k, v in r.counts.items())
        con.print(f"orders by state: {counts} (unpaid orders expire after {r.expiry_days} days); "
                  f"`certpilot order show {r.orders[0].id if r.orders else 'ID'}` for one")

    _cli._emit(data, render, as_json)
    return _cli.EXIT_OK


def order_show(order_id: str, /, *, at: AtOption = None, as_json: JsonFlag = False) -> int:
    """Show one order: its state, names, bill, certificates, ledger entries and the next step."""
    from certpilot.operations import orders as ops

    d = ops.show_order(_cli._ctx.services(), order_id, now=_at(at))
    _cli._emit(_detail_dict(d), lambda con: _render_detail(con, d), as_json)
    return _cli.EXIT_OK


def order_cancel(order_id: str, /, *, as_json: JsonFlag = False) -> int:
    """Cancel an unpaid order (awaiting payment or expired); nothing was debited, nothing to restore.

    A paid order is refused: its certificates exist; cancel its not-activated ones with
    `certpilot cancel CRT` (PL-7) instead.
    """
    from certpilot.operations import orders as ops

    d = ops.cancel_order(_cli._ctx.services(), order_id, actor="cli")
    data = {**_detail_dict(d), "cancelled": d.changed}

    def render(con):
        con.print(f"order {d.order.id}: " + ("cancelled; nothing was debited" if d.changed
                                             else "was already cancelled; nothing changed"))

    _cli._emit(data, render, as_json)
    return _cli.EXIT_OK


def _render_detail(con, d) -> None:
    e, o = _cli._e, d.order
    what = ", ".join(o.names) if o.names else f"renewal of {o.certificate_id}" if o.certificate_id else "-"
    con.print(f"order [bold]{o.id}[/]: {o.kind.value}, {o.years} year(s), [bold]{o.state.value}[/]")
    con.print(f"  for: {e(what)}  spec: {e(o.spec.key)}  placed: {o.created_at:%Y-%m-%d %H:%M}Z"
              + (f"  expires unpaid: {d.expires_at:%Y-%m-%d}" if d.expires_at else ""))
    if d.charged:
        con.print(f"  charged: {d.charged}")
    if d.certificates:
        con.print(_cli._inventory_table(d.certificates, "Its certificates"))
    con.print(f"next: {e(d.next_step)}")
