"""The `certpilot` command: the operator's door to the use cases in `certpilot.operations`.

Every command prints a rich table for people or, with ``--json``, stable machine output (ISO 8601
dates, no markup). Exit codes: 0 ok, 1 the environment failed (database unreachable, master key
missing or wrong, configuration block missing), 2 usage, 3 refused by a rule, 4 bad input
(missing file, bad PEM, unknown id), 5 the Prefect server could not be reached (commands that
start runs). Every refusal and error is, with ``--json``, one document
``{"error": {"exit_code", "reason", "rule", "message", "instead"}}``, dry run or not.

Reads and previews (`list`, `show`, `orders`, `order show`, `renew --dry-run`) take ``--at`` (an ISO 8601 instant
with its timezone) so that any answer can be reproduced; actions (`demo`, `renew`, `buy`, `pay`,
`cancel`, `quota add|remove`, `import`, ...) happen now: ``--at`` on an action is a usage error.

Each command calls one use case of `certpilot.operations` with the `Services` of
`certpilot.runtime` (built once per command, lazily): commands that seal or open keys use the
services the workers use (`runtime.for_cli`: the Prefect blocks when a Prefect API holds the
certpilot-config block), the others the local defaults. This module imports no store, no
adapters, no crypto and no SQLAlchemy; importing it is cheap: all of that (and Prefect) loads
only inside commands.
"""

from __future__ import annotations

import json as _json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import App, CycloptsError, Parameter

from certpilot.core.errors import BadInputError, CertpilotError, Reason, Refusal, RefusedError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_BAD_INPUT = 4
EXIT_ERROR = 1
EXIT_SERVER = 5

JsonFlag = Annotated[bool, Parameter(name="--json", negative="", help="Machine output (JSON).")]
AtOption = Annotated[
    str | None,
    Parameter(name="--at", help="Decide as of this ISO 8601 instant with a timezone, e.g. 2025-09-10T00:00:00Z."),
]

app = App(
    name="certpilot",
    help="Self-hosted TLS certificate renewal orchestrator: inventory, orders, renewals.",
    help_on_error=False,
)
quota_app = App(name="quota", help="Remaining certificate quota and managed-service credits (PAY-3).")
db_app = App(name="db", help="Database schema.")
app.command(quota_app)
app.command(db_app)


class UsageError(Exception):
    """A command line that cannot be acted on as written (exit code 2)."""


class _Refused(Exception):
    """A command already printed its refusal (e.g. a dry run): exit 3 without printing again."""


class ServerUnreachable(Exception):
    """No Prefect API is configured, or it did not answer (exit code 5, not a usage error)."""


# ---------------------------------------------------------------- context and output


class _Ctx:
    """Per-invocation state: settings, output mode and consoles (made fresh for each `main`)."""

    def __init__(self) -> None:
        self.json = False
        self._settings = None
        self._services = None
        self._local = None

    @property
    def settings(self):
        if self._settings is None:
            from certpilot.settings import Settings

            self._settings = Settings()
        return self._settings

    def services(self, *, keys: bool = False):
        """This command's `Services`, built on first use (a command refused on its arguments builds none).

        Args:
            keys: the command seals or opens private keys: it needs the vault the workers use,
                so the services come from `runtime.for_cli` (the Prefect blocks when a Prefect
                API holds the certpilot-config block, else the local defaults). Other commands
                touch only the store: the local defaults, without asking Prefect.
        """
        from certpilot import runtime

        if keys:
            if self._services is None:
                self._services = runtime.for_cli(database_url=self.settings.db_url)
            return self._services
        if self._services is not None:
            return self._services
        if self._local is None:
            self._local = runtime.local_services(database_url=self.settings.db_url)
        return self._local

    def console(self, stderr: bool = False):
        from rich.console import Console

        # Not a terminal (a pipe, a log): wide enough that ids are never cut.
        return Console(stderr=stderr, width=None if sys.stdout.isatty() else 200, highlight=False)


_ctx = _Ctx()


def _emit(data: Any, render: Callable[[Any], None], as_json: bool) -> None:
    """Print `data` as JSON, or call `render(console)` for people."""
    if as_json:
        sys.stdout.write(_json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    else:
        render(_ctx.console())


def _now(at: str | None) -> datetime:
    """`--at` parsed (aware UTC), or the wall clock; a naive or malformed value is a usage error."""
    from certpilot.operations.common import parse_instant

    if at is None:
        return datetime.now(UTC)
    try:
        return parse_instant(at)
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from exc


def _no_at(at: str | None) -> None:
    """Actions happen now: `--at` on one is a usage error saying why (an order placed "as of"
    another day would get around the rules that read the date, e.g. EL-2). Returns None, the
    `now` an operation takes to mean the services' clock."""
    if at is not None:
        raise UsageError("--at: injected time is for previews and reads (list, show, orders, order show, "
                         "renew --dry-run); this command acts now: drop --at")


def _level(value: str):
    """`--level` in any case (``dv`` → DV, UP-2); anything else is a usage error listing the levels."""
    from certpilot.core.names import canonical_level

    try:
        return canonical_level(value)
    except ValueError as exc:
        raise UsageError(f"--level: {exc}") from None


def _cert_type(value: str):
    """`--type` in any case; anything else is a usage error listing the types."""
    from certpilot.core.names import canonical_type

    try:
        return canonical_type(value)
    except ValueError as exc:
        raise UsageError(f"--type: {exc}") from None


def _brand(value: str) -> str:
    """`--brand` in any case mapped to its canonical name (UP-2: ``digicert`` → ``DigiCert``).

    Raises:
        RefusedError: UNKNOWN_BRAND, listing the brands offered (exit 3).
    """
    from certpilot.core.names import canonical_brand

    return canonical_brand(value)


LevelOption = Annotated[str, Parameter(help="Validation level (UP-2): DV, OV or EV, any case.")]
BrandOption = Annotated[str, Parameter(help="Brand (UP-2), any case: Alibaba Cloud, DigiCert, GlobalSign, or "
                                            "certpilot (its own issuers); matched by quota (PAY-1).")]


def _read(path: Path | None, what: str) -> bytes | None:
    """Read an input file; a missing, unreadable or oversized file is bad input (exit 4), naming the path.

    At most `core.limits.MAX_INPUT_BYTES` + 1 bytes are read: a huge file (or /dev/zero) is
    refused without being read whole.
    """
    from certpilot.core.limits import MAX_INPUT_BYTES

    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise BadInputError(f"{what} file {path} is larger than the {MAX_INPUT_BYTES} bytes certpilot accepts for "
                                "one input (nothing was read further); give only the certificate, its key and its "
                                "intermediates (PEM).", Reason.INPUT_TOO_LARGE)
        return data
    except FileNotFoundError as exc:
        raise BadInputError(f"{what} file {path} does not exist; check the path") from exc
    except OSError as exc:
        raise BadInputError(f"{what} file {path} cannot be read ({exc.strerror}); check its permissions") from exc


def _e(text: str) -> str:
    """Escape text from data (names, messages) so rich prints it as is, brackets included."""
    from rich.markup import escape

    return escape(text)


def _fmt_date(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d") if dt else "-"


def _status_style(status) -> str:
    return {"expired": "bold red", "expiring_soon": "yellow", "valid": "green"}.get(str(status), "cyan")


# ---------------------------------------------------------------- serialisers (stable keys)


def view_dict(v) -> dict[str, Any]:
    """A `CertificateView` as machine output."""
    from certpilot.operations.common import iso

    return {
        "id": v.id,
        "common_name": v.common_name,
        "names": list(v.names),
        "type": v.cert_type.value,
        "origin": v.origin.value,
        "level": v.level.value,
        "brand": v.brand,
        "key_algorithm": v.key_algorithm.value,
        "state": v.state.value,
        "status": v.status.value,
        "not_before": iso(v.not_before),
        "not_after": iso(v.not_after),
        "days_left": v.days_left,
        "parent_id": v.parent_id,
        "order_id": v.order_id,
        "plan_index": v.plan_index,
        "serial": v.serial,
        "fingerprint_sha256": v.fingerprint_sha256,
        "owner": v.owner,
        "renewal": v.renewal,
    }


def planned_dict(p) -> dict[str, Any]:
    """A `PlannedCertificate` as machine output (with its length in days)."""
    from certpilot.operations.common import iso

    return {"index": p.index, "state": p.state.value, "not_before": iso(p.not_before),
            "not_after": iso(p.not_after), "days": p.days, "reissue": p.reissue}


def payment_dict(line) -> dict[str, Any]:
    """A `PaymentLine` as machine output."""
    return {"kind": line.kind.value, "spec": line.spec_key, "needed": line.needed,
            "from_balance": line.from_balance, "shortfall": line.shortfall,
            "unit_price": line.unit_price, "amount": line.shortfall * line.unit_price,
            "description": line.description}


def ledger_dict(e) -> dict[str, Any]:
    """A `LedgerEntry` as machine output."""
    from certpilot.operations.common import iso

    return {"id": e.id, "kind": e.kind.value, "spec": e.spec_key, "delta": e.delta,
            "amount": getattr(e, "amount", 0), "order_id": e.order_id,
            "idempotency_key": e.idempotency_key, "created_at": iso(e.created_at), "note": e.note}


def order_dict(o) -> dict[str, Any]:
    """An `Order` as machine output."""
    from certpilot.operations.common import iso

    return {"id": o.id, "kind": o.kind.value, "certificate_id": o.certificate_id, "spec": o.spec.key,
            "years": o.years, "csr_mode": o.csr_mode.value, "state": o.state.value,
            "managed_services": o.managed_services, "managed_fee": o.managed_fee,
            "planned": [planned_dict(p) for p in o.planned], "payment": [payment_dict(x) for x in o.payment],
            "created_at": iso(o.created_at), "names": list(o.names)}


def balances_dict(b) -> dict[str, Any]:
    """`Balances` as machine output (PAY-3)."""
    return {"quota": dict(sorted(b.quota.items())), "managed": b.managed}


def preview_dict(p) -> dict[str, Any]:
    """A `RenewalPreview` as machine output."""
    from certpilot.operations.common import iso, refusal_dict

    plan = None
    if p.plan is not None:
        plan = {
            "certificates": [planned_dict(c) for c in p.plan.certificates],
            "managed_services": p.plan.managed_services,
            "managed_fee": p.plan.managed_fee,
            "coverage": {"not_before": iso(p.plan.coverage.not_before), "not_after": iso(p.plan.coverage.not_after),
                         "days": p.plan.coverage.days},
            "reissues": p.plan.reissues,
        }
    return {
        "certificate_id": p.certificate.id,
        "common_name": p.certificate.common_name,
        "kind": p.kind.value,
        "years": p.years,
        "at": iso(p.now),
        "eligible": p.eligible,
        "refusal": refusal_dict(p.refusal),
        "plan": plan,
        "payment": [payment_dict(x) for x in p.payment],
        "quota_used": sum(x.from_balance for x in p.payment if x.kind.value == "quota"),
        "credits_used": sum(x.from_balance for x in p.payment if x.kind.value == "managed"),
        "shortfall": p.shortfall,
        "managed_fee": p.managed_fee,
        "needs_approval": p.shortfall > 0,
        "warnings": list(p.warnings),
    }


def _error_dict(exc: BaseException, code: int) -> dict[str, Any]:
    """The one JSON shape of every refusal and error, dry run or not:
    ``{"error": {"exit_code", "reason", "rule", "message", "instead"}}`` (``instead``: the
    commands the message suggests, ids filled in)."""
    from certpilot.operations.common import refusal_dict

    refusal: Refusal | None = getattr(exc, "refusal", None)
    if refusal is not None:
        return {"error": {"exit_code": code, **refusal_dict(refusal)}}
    from certpilot.operations.common import suggested_commands

    reason = getattr(exc, "reason", None)
    message = getattr(exc, "message", None) or str(exc)
    fallback = {EXIT_USAGE: "Usage", EXIT_SERVER: "ServerUnreachable"}.get(code)
    return {"error": {
        "exit_code": code,
        "reason": reason.value if isinstance(reason, Reason) else fallback,
        "rule": None,
        "message": message,
        "instead": suggested_commands(message),
    }}


# ---------------------------------------------------------------- rich renderers


def _inventory_table(views, title: str = "Inventory"):
    """The inventory as a table that fits the console (100 columns included): names and dates
    are never cut (a name longer than 30 characters folds onto a second line, whole), the id and
    the specification (level, type, brand in one column) fold when space runs out."""
    return _InventoryTable(list(views), title)


class _InventoryTable:
    """A rich renderable: the inventory table with column widths chosen for the width it is
    printed at (rich alone squeezes every column, names and dates included)."""

    COLUMNS = ("id", "common name", "spec", "origin", "status", "not after", "days")

    def __init__(self, views, title: str):
        self.views, self.title = views, title

    def _rows(self) -> list[tuple[str, ...]]:
        return [(v.id, _name_cell(v), f"{v.level.value} {v.cert_type.value} {v.brand}", v.origin.value,
                 v.status.value, _fmt_date(v.not_after), "-" if v.days_left is None else str(v.days_left))
                for v in self.views]

    def _widths(self, rows, max_width: int) -> list[int]:
        natural = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(self.COLUMNS)]
        budget = max_width - (3 * len(self.COLUMNS) + 1)  # a border and two spaces of padding each
        widths = list(natural)
        widths[1] = min(natural[1], max(30, budget - sum(natural) + natural[1]))
        spare = budget - sum(w for i, w in enumerate(widths) if i not in (0, 2, 3))
        wanted = natural[0] + natural[2] + natural[3]
        if spare < wanted:  # the id, spec and origin share what is left, each at least 6 wide
            for i in (0, 2, 3):
                widths[i] = max(6, natural[i] * spare // wanted)
        # Still too wide (a very long name): that name folds sooner, never below 20 characters.
        widths[1] = max(min(20, widths[1]), widths[1] - max(0, sum(widths) - budget))
        return widths

    def __rich_console__(self, console, options):
        from rich.table import Table

        rows = self._rows()
        t = Table(title=self.title)
        for col, width in zip(self.COLUMNS, self._widths(rows, options.max_width), strict=True):
            t.add_column(col, width=width, overflow="fold", justify="right" if col == "days" else "left",
                         no_wrap=col in ("status", "not after"))
        for v, row in zip(self.views, rows, strict=True):
            t.add_row(row[0], _e(row[1]), _e(row[2]), row[3], f"[{_status_style(v.status)}]{row[4]}[/]", *row[5:])
        yield t


def _name_cell(v) -> str:
    """The common name, with how many more names the certificate holds."""
    return v.common_name + (f" (+{len(v.names) - 1})" if len(v.names) > 1 else "")


def _render_refusal(console, refusal: Refusal) -> None:
    rule = f" ({refusal.rule})" if refusal.rule else ""
    console.print(f"[bold red]refused[/] {_e('[' + refusal.reason.value + ']')}{rule}: {_e(refusal.message)}")


def _render_preview(console, p, *, title: str = "Renewal preview") -> None:
    from rich.table import Table

    console.print(f"[bold]{title}[/]: {_e(p.certificate.common_name)} ({p.certificate.id}), "
                  f"{p.years} year(s), as of {p.now:%Y-%m-%d %H:%M}Z")
    if not p.eligible:
        _render_refusal(console, p.refusal)
        return
    console.print("[green]eligible[/]")
    t = Table(title="Planned certificates")
    for col in ("#", "state", "not before", "not after", "days"):
        t.add_column(col)
    for c in p.plan.certificates:
        t.add_row(str(c.index), c.state.value + (" (reissue)" if c.reissue else ""),
                  _fmt_date(c.not_before), _fmt_date(c.not_after), str(c.days))
    console.print(t)
    pay = Table(title="Payment (PAY-1: balance first, shortfall charged)")
    for col in ("item", "spec", "needed", "from balance", "shortfall", "amount"):
        pay.add_column(col)
    for x in p.payment:
        pay.add_row(x.kind.value, x.spec_key or "-", str(x.needed), str(x.from_balance), str(x.shortfall),
                    str(x.shortfall * x.unit_price))
    console.print(pay)
    console.print(f"managed services: {p.plan.managed_services}; managed-service fee (PAY-2): "
                  f"{'yes' if p.managed_fee else 'no'}; shortfall to charge: {p.shortfall}")
    for w in p.warnings:
        console.print(f"[yellow]warning[/]: {_e(w)}")


# ---------------------------------------------------------------- commands


@app.command(name="import")
def import_(
    config_dir: Annotated[Path | None, Parameter(help="With --from certbot: certbot's config directory "
                                                      "(default /etc/letsencrypt).")] = None,
    /,
    *,
    cert: Annotated[Path | None, Parameter(help="Certificate PEM file (the leaf first).")] = None,
    dir_: Annotated[Path | None, Parameter(name="--dir", help="Import every bundle (certificate, key, chain "
                                                             "matched by keys) found in this folder.")] = None,
    from_: Annotated[Literal["acm", "certbot"] | None, Parameter(
        name="--from", help="Import a fleet: every ACM certificate, or every certbot lineage.")] = None,
    region: Annotated[str | None, Parameter(help="With --from acm: the AWS region (default the AWS "
                                                 "configuration's).")] = None,
    nginx_dir: Annotated[Path | None, Parameter(help="With --from certbot: the nginx configuration whose sites "
                                                     "become targets (default /etc/nginx).")] = None,
    key: Annotated[Path | None, Parameter(help="Private key PEM file (sealed in the vault).")] = None,
    chain: Annotated[Path | None, Parameter(help="Intermediate chain PEM file.")] = None,
    origin: Literal["official", "uploaded", "private-ca"] = "uploaded",
    level: LevelOption = "DV",
    brand: BrandOption = "certpilot",
    owner: Annotated[str | None, Parameter(help="Owner e-mail: hears of expiry (NT-1).")] = None,
    key_passphrase_env: Annotated[str | None, Parameter(
        name="--key-passphrase-env",
        help="Name of an environment variable holding the key's passphrase (never on the command line).")] = None,
    at: AtOption = None,
    as_json: JsonFlag = False,
) -> int:
    """Import a certificate (and its key and chain) into the inventory (UP-3); or a whole fleet:
    `--dir DIR` (a folder of PEM files), `--from acm [--region R]`, `--from certbot [CONFIG_DIR]`
    (exit 3 when any bundle was refused; the others are imported)."""
    from certpilot.core.models import Origin
    from certpilot.operations.importing import import_bundle

    now = _no_at(at)
    wanted_level = _level(level)
    if sum(x is not None for x in (cert, dir_, from_)) != 1 or (config_dir is not None and from_ != "certbot") \
            or (region is not None and from_ != "acm") or (nginx_dir is not None and from_ != "certbot"):
        raise UsageError("give one of --cert FILE, --dir DIR, --from acm [--region R] or --from certbot [CONFIG_DIR]")
    if cert is None:
        return _cli_import.run(dir_=dir_, from_=from_, config_dir=config_dir, region=region, origin=origin,
                               level=wanted_level, brand=brand, owner=owner, as_json=as_json,
                               passphrase_env=key_passphrase_env, nginx_dir=nginx_dir)
    cert_pem = _read(cert, "certificate")
    key_pem = _read(key, "key")
    chain_pem = _read(chain, "chain")
    passphrase = None
    if key_passphrase_env:
        import os

        if key_passphrase_env not in os.environ:
            raise UsageError(f"--key-passphrase-env names {key_passphrase_env}, which is not set")
        passphrase = os.environ[key_passphrase_env]
    result = import_bundle(_ctx.services(keys=True), cert_pem=cert_pem, key_pem=key_pem, chain_pem=chain_pem,
                           origin=Origin(origin), level=wanted_level, brand=brand, owner=owner, now=now, actor="cli",
                           passphrase=passphrase)
    c = result.certificate
    warnings = [getattr(w, "message", str(w)) for w in result.warnings]
    from certpilot.operations.common import iso

    data = {"id": c.id, "common_name": c.common_name, "names": list(c.names), "type": c.cert_type.value,
            "origin": c.origin.value, "level": c.level.value, "brand": c.brand, "state": c.state.value,
            "not_before": iso(c.not_before), "not_after": iso(c.not_after),
            "fingerprint_sha256": c.fingerprint_sha256, "key_held": c.key_held, "warnings": warnings}

    def render(con):
        con.print(f"imported [bold]{c.id}[/]: {_e(', '.join(c.names))} ({c.cert_type.value}, {c.origin.value}, "
                  f"{c.level.value}), expires {_fmt_date(c.not_after)}")
        for w in warnings:
            con.print(f"[yellow]warning[/]: {_e(w)}")

    _emit(data, render, as_json)
    return EXIT_OK


@app.command(name="list")
def list_(
    *,
    status: Annotated[str | None, Parameter(help="Only this status, e.g. expiring_soon, expired, valid.")] = None,
    expiring_within: Annotated[int | None, Parameter(
        help="Only certificates expiring within DAYS, those already expired included.")] = None,
    hide_expired: Annotated[bool, Parameter(negative="", help="With --expiring-within: leave expired ones out.")
                            ] = False,
    limit: Annotated[int | None, Parameter(help="Show at most N certificates (a page).")] = None,
    offset: Annotated[int, Parameter(help="Skip the first N certificates (the next page: the offset printed).")
                      ] = 0,
    at: AtOption = None,
    as_json: JsonFlag = False,
) -> int:
    """List the inventory with statuses derived at `--at` (LC-4), soonest expiry first; filtered,
    sorted and paged by the database, `--json` streamed as it is read."""
    from certpilot.core.models import Status
    from certpilot.operations.inventory import listing

    now = _now(at)
    wanted = None
    if status is not None:
        try:
            wanted = Status(status.strip().lower().replace("-", "_"))
        except ValueError as exc:
            raise UsageError(f"--status {status!r} is not a status; use one of: "
                             + ", ".join(s.value for s in Status)) from exc
    if expiring_within is not None and expiring_within < 0:
        raise UsageError("--expiring-within takes a number of days, 0 or more")
    if offset < 0 or (limit is not None and limit < 1):
        raise UsageError("--offset takes 0 or more and --limit 1 or more")
    if as_json and limit is None and not offset:
        return _stream_listing(now, wanted, expiring_within, hide_expired)
    found = listing(_ctx.services(), now=now, status=wanted, expiring_within_days=expiring_within,
                    hide_expired=hide_expired, offset=offset, limit=limit)
    views = found.certificates
    _emit({"at": _iso(now), "database": found.database, "total": found.total, "matched": found.matched,
           "offset": found.offset, "limit": found.limit, "next_offset": found.next_offset,
           "certificates": [view_dict(v) for v in views]},
          lambda con: _render_listing(con, found, now), as_json)
    return EXIT_OK


def _stream_listing(now: datetime, status, expiring_within: int | None, hide_expired: bool) -> int:
    """`list --json` of a whole answer: the same document as a page, written one certificate per
    line as the rows are read (bounded memory; 100,000 certificates in a few seconds)."""
    from certpilot.operations.inventory import listing_stream

    out = sys.stdout
    with listing_stream(_ctx.services(), now=now, status=status, expiring_within_days=expiring_within,
                        hide_expired=hide_expired) as found:
        head = {"at": _iso(now), "database": found.database, "total": found.total, "matched": found.matched,
                "offset": 0, "limit": None, "next_offset": None}
        encode = _json.JSONEncoder(ensure_ascii=False).encode
        out.write(encode(head)[:-1] + ', "certificates": [')
        sep = "\n"
        for v in found.certificates:
            out.write(sep + encode(view_dict(v)))
            sep = ",\n"
        out.write("\n]}\n")
    out.flush()
    return EXIT_OK


def _render_listing(con, found, now: datetime) -> None:
    """The `list` table, the renewal markers under it, and for an empty answer what was read and
    what to do next."""
    views = found.certificates
    if not views:
        if found.total == 0:
            con.print(f"The inventory at {_e(found.database)} holds no certificates yet. Import one with "
                      "`certpilot import --cert CERT.pem --key KEY.pem --chain CHAIN.pem`, or load the demo "
                      "inventory with `certpilot demo`.")
        else:
            con.print(f"None of the {found.total} certificate(s) at {_e(found.database)} match; "
                      "`certpilot list` shows them all.")
        return
    con.print(_inventory_table(views, f"Inventory as of {now:%Y-%m-%d %H:%M}Z"))
    for v in views:
        if v.renewal:
            con.print(f"{_e(v.common_name)} ({v.id}): {_e(v.renewal)}")
    if found.next_offset is not None:
        con.print(f"{found.offset + 1}..{found.next_offset} of {found.matched}: next page with "
                  f"`--offset {found.next_offset}`")


def _iso(dt: datetime) -> str | None:
    from certpilot.operations.common import iso

    return iso(dt)


@app.command
def show(cert_id: str, /, *, at: AtOption = None, as_json: JsonFlag = False) -> int:
    """Show one certificate: derived status, lineage (parent and children, LC-2), order, audit trail."""
    from certpilot.operations.inventory import show_certificate

    now = _now(at)
    d = show_certificate(_ctx.services(), cert_id, now=now)
    data = {
        "at": _iso(now),
        "certificate": view_dict(d.view),
        "parent": view_dict(d.parent) if d.parent else None,
        "children": [view_dict(c) for c in d.children],
        "order": order_dict(d.order) if d.order else None,
        "renewal_orders": [order_dict(o) for o in d.renewal_orders],
        "audit": [{"at": _iso(a.at), "actor": a.actor, "from": a.from_state, "to": a.to_state, "why": a.why}
                  for a in d.audit],
        "coverage_not_after": _iso(d.coverage_not_after) if d.coverage_not_after else None,
        "plan_vs_issued": _plan_vs_issued_dict(d.plan_vs_issued),
    }

    def render(con):
        from rich.table import Table

        v = d.view
        con.print(f"[bold]{_e(v.common_name)}[/] ({v.id})")
        for label, value in (("names", _e(", ".join(v.names))), ("type", v.cert_type.value),
                             ("origin", v.origin.value), ("spec", f"{_e(v.brand)} / {v.level.value}"),
                             ("key", v.key_algorithm.value), ("state", v.state.value),
                             ("status", f"[{_status_style(v.status)}]{v.status.value}[/]"),
                             ("valid", f"{_fmt_date(v.not_before)} .. {_fmt_date(v.not_after)}"
                                       + ("" if v.days_left is None else f" ({v.days_left} days left)")),
                             ("serial", v.serial or "-"), ("sha256", v.fingerprint_sha256 or "-"),
                             ("owner", _e(v.owner or "-"))):
            con.print(f"  {label:>8}: {value}")
        if v.renewal:
            con.print(f"  {'renewal':>8}: {_e(v.renewal)}")
        if d.parent:
            con.print(f"  {'parent':>8}: {d.parent.id} ({_e(d.parent.common_name)}, {d.parent.status.value})")
        if d.children:
            con.print(_inventory_table(d.children, "Children (renewals of this certificate, LC-2)"))
        if d.order:
            con.print(f"  {'order':>8}: {d.order.id} ({d.order.kind.value}, {d.order.years} year(s), "
                      f"{d.order.state.value})")
        if d.coverage_not_after:
            con.print(f"  {'term':>8}: covered until {_fmt_date(d.coverage_not_after)} (VA-5)")
        if d.plan_vs_issued is not None:
            p = d.plan_vs_issued
            con.print(f"  {'planned':>8}: {_iso(p.planned.not_before)} .. {_iso(p.planned.not_after)}")
            con.print(f"  {'issued':>8}: {_iso(p.issued.not_before)} .. {_iso(p.issued.not_after)} "
                      f"({_e(p.describe())})")
        for o in d.renewal_orders:
            con.print(f"  renewal order {o.id}: {o.years} year(s), {o.state.value}")
        if d.audit:
            t = Table(title="Audit trail")
            for col in ("at", "actor", "from", "to", "why"):
                t.add_column(col)
            for a in d.audit:
                t.add_row(f"{a.at:%Y-%m-%d %H:%M:%S}", _e(a.actor), a.from_state or "-", a.to_state or "-", _e(a.why))
            con.print(t)

    _emit(data, render, as_json)
    return EXIT_OK


def _plan_vs_issued_dict(p) -> dict | None:
    """`show --json`'s plan vs issued (VA-5): both windows, how many seconds short, the sentence."""
    if p is None:
        return None
    return {"planned": {"not_before": _iso(p.planned.not_before), "not_after": _iso(p.planned.not_after)},
            "issued": {"not_before": _iso(p.issued.not_before), "not_after": _iso(p.issued.not_after)},
            "exact": p.exact, "short_seconds": p.short_seconds, "note": p.describe()}


@quota_app.default
def quota_show(*, as_json: JsonFlag = False) -> int:
    """Show remaining quota per specification and managed-service credits (PAY-3)."""
    from certpilot.operations.orders import quota

    # The issuers the workers use: a CA service that counts its own quota (CAS) is asked first.
    b = quota(_ctx.services(keys=True))

    def render(con):
        from rich.table import Table

        t = Table(title="Remaining quota (PAY-3)")
        t.add_column("specification")
        t.add_column("remaining", justify="right")
        for k, n in sorted(b.quota.items()):
            t.add_row(_e(k), str(n))
        con.print(t)
        con.print(f"managed-service credits: {b.managed}")

    _emit(balances_dict(b), render, as_json)
    return EXIT_OK


@quota_app.command(name="add")
def quota_add(
    *,
    level: Annotated[str | None, Parameter(help="Validation level (UP-2): DV, OV or EV, any case.")] = None,
    cert_type: Annotated[str, Parameter(name="--type", help="single, wildcard or multi.")] = "single",
    brand: BrandOption = "certpilot",
    count: int | None = None,
    managed: Annotated[int | None, Parameter(help="Add this many managed-service credits.")] = None,
    key: Annotated[str | None, Parameter(name="--idempotency-key", help="Retry-safe key.")] = None,
    at: AtOption = None,
    as_json: JsonFlag = False,
) -> int:
    """Add certificate quota of one specification (`--level --type --brand --count`) or `--managed N` credits."""
    from certpilot.operations import orders

    now = _no_at(at)
    spec = _quota_spec(level, cert_type, brand, count, managed)
    r = orders.top_up(_ctx.services(), count=managed if managed is not None else count, spec=spec, now=now,
                      idempotency_key=key)
    return _balance_changed("added", r.entry, r.balances, as_json)


def _quota_spec(level: str | None, cert_type: str, brand: str, count: int | None, managed: int | None):
    """The specification `quota add|remove` names (brand and level canonical, UP-2), or None for
    managed-service credits; a usage error unless exactly one of --count and --managed is given."""
    from certpilot.core.models import Spec

    if (managed is None) == (count is None):
        raise UsageError("give either --count N (with --level) for certificate quota, or --managed N for credits")
    if managed is not None:
        return None
    if level is None:
        raise UsageError("--count needs --level DV|OV|EV (and optionally --type and --brand)")
    return Spec(brand=_brand(brand), level=_level(level), cert_type=_cert_type(cert_type))


@quota_app.command(name="remove")
def quota_remove(
    *,
    level: Annotated[str | None, Parameter(help="Validation level (UP-2): DV, OV or EV, any case.")] = None,
    cert_type: Annotated[str, Parameter(name="--type", help="single, wildcard or multi.")] = "single",
    brand: BrandOption = "certpilot",
    count: int | None = None,
    managed: Annotated[int | None, Parameter(help="Remove this many managed-service credits.")] = None,
    key: Annotated[str | None, Parameter(name="--idempotency-key", help="Retry-safe key.")] = None,
    at: AtOption = None,
    as_json: JsonFlag = False,
) -> int:
    """Remove quota added by mistake (`--level --type --brand --count`) or `--managed N` credits;
    never below zero (PAY-3)."""
    from certpilot.operations import quota

    now = _no_at(at)
    spec = _quota_spec(level, cert_type, brand, count, managed)
    r = quota.remove(_ctx.services(), count=managed if managed is not None else count, spec=spec, now=now,
                     idempotency_key=key)
    return _balance_changed("removed", r.entry, r.balances, as_json)


def _balance_changed(verb: str, entry, b, as_json: bool) -> int:
    """Print a `quota add|remove` result: the entry, and what remains of that balance."""
    _emit({"entry": ledger_dict(entry), "balances": balances_dict(b)},
          lambda con: con.print(f"{verb} {abs(entry.delta)} {entry.kind.value}"
                                f"{' of ' + entry.spec_key if entry.spec_key else ''}; "
                                f"now {b.quota.get(entry.spec_key, 0) if entry.spec_key else b.managed} remaining"),
          as_json)
    return EXIT_OK


@app.command
def renew(
    cert_id: str,
    /,
    *,
    years: Literal[1, 2, 3] = 1,
    csr: Literal["system", "manual", "reuse"] = "system",
    csr_file: Annotated[Path | None, Parameter(help="The CSR for --csr manual (CSR-2).")] = None,
    dry_run: Annotated[bool, Parameter(negative="", help="Show the plan and the bill; change nothing.")] = False,
    approve_payment: Annotated[bool, Parameter(negative="", help="Approve charging the shortfall (PAY-1).")] = False,
    key: Annotated[str | None, Parameter(name="--idempotency-key", help="Retry-safe key.")] = None,
    prefect: Annotated[bool, Parameter(negative="", help="Run the `renewal` deployment instead: one run for the "
                                                         "whole renewal (payment form in the UI, CSR, validation, "
                                                         "CA review, deploy, verify).")] = False,
    at: AtOption = None,
    as_json: JsonFlag = False,
) -> int:
    """Renew a certificate (EL, VA, PL, PAY rules); `--dry-run` previews the plan and the bill."""
    if prefect:
        if dry_run:
            raise UsageError("--prefect runs the whole renewal; use it without --dry-run")
        _no_at(at)
        from certpilot.core.scan import renewal_key

        params = {"certificate_id": cert_id, "years": years, "csr_mode": csr, "approve_payment": approve_payment}
        params.update(_csr_parameter(csr, csr_file))
        cert = _known_certificate(cert_id)
        # The scanner's key for this renewal: the CLI and the scanner start one run between them. A
        # manual CSR travels with its own run (a run the scanner started has none to submit).
        return _trigger("renewal/renewal", params, as_json,
                        key=_csr_key(renewal_key(cert.id, cert.not_after), params))
    from certpilot.core.models import CsrMode
    from certpilot.operations import orders

    now = _now(at) if dry_run else _no_at(at)
    mode = CsrMode(csr)
    if mode is CsrMode.MANUAL and csr_file is None:
        raise UsageError("--csr manual needs --csr-file F (the CSR to submit)")
    if mode is not CsrMode.MANUAL and csr_file is not None:
        raise UsageError("--csr-file is only for --csr manual")
    csr_pem = _read(csr_file, "CSR")
    if dry_run:
        p = orders.preview(_ctx.services(), cert_id, years=years, now=now, csr_mode=mode, csr_pem=csr_pem)
        if not p.eligible and as_json:  # the one error shape, as for a real renewal refused
            raise RefusedError(p.refusal)
        _emit({**preview_dict(p), "dry_run": True}, lambda con: _render_preview(con, p), as_json)
        if not p.eligible:
            raise _Refused()
        return EXIT_OK
    r = orders.renew(_ctx.services(), cert_id, years=years, now=now, csr_mode=mode, csr_pem=csr_pem,
                     approve_payment=approve_payment, idempotency_key=key, actor="cli")
    if r.pending is not None:  # recorded, awaiting the charge's approval (PAY-1): refused as such
        raise RefusedError(r.pending)
    # An order found again by its idempotency key has no fresh preview: the order says it all.
    base = preview_dict(r.preview) if r.preview else {"certificate_id": r.order.certificate_id}
    data = {**base, "dry_run": False, "created": r.created, "order": order_dict(r.order),
            "certificates": [view_dict(v) for v in r.certificates], "ledger": [ledger_dict(e) for e in r.ledger]}

    def render(con):
        if r.preview:
            _render_preview(con, r.preview, title="Renewal ordered")
        con.print(f"order [bold]{r.order.id}[/]: {r.order.state.value}")
        con.print(_inventory_table(r.certificates, "New certificates (children of the original, LC-2)"))

    _emit(data, render, as_json)
    return EXIT_OK


@app.command
def buy(
    *,
    name: Annotated[list[str], Parameter(help="A name of the certificate (repeat for multi-domain, UP-1).")],
    level: LevelOption = "DV",
    brand: BrandOption = "certpilot",
    years: Literal[1, 2, 3] = 1,
    owner: Annotated[str | None, Parameter(help="Owner e-mail: hears of expiry (NT-1).")] = None,
    approve_payment: Annotated[bool, Parameter(negative="", help="Approve charging the shortfall (PAY-1).")] = False,
    key: Annotated[str | None, Parameter(name="--idempotency-key", help="Retry-safe key.")] = None,
    at: AtOption = None,
    as_json: JsonFlag = False,
) -> int:
    """Buy a new certificate (VA-3: 12 months from its own issue date per year, nothing carried over)."""
    from certpilot.operations import orders
    from certpilot.operations.importing import parse_owner

    now = _no_at(at)
    r = orders.buy(_ctx.services(), names=list(name), brand=_brand(brand), level=_level(level), years=years,
                   owner=parse_owner(owner), now=now, approve_payment=approve_payment, idempotency_key=key,
                   actor="cli")
    if r.pending is not None:  # recorded, awaiting the charge's approval (PAY-1): refused as such
        raise RefusedError(r.pending)
    data = {"order": order_dict(r.order), "certificates": [view_dict(v) for v in r.certificates],
            "ledger": [ledger_dict(e) for e in r.ledger]}

    def render(con):
        con.print(f"order [bold]{r.order.id}[/]: {r.order.kind.value}, {r.order.years} year(s), {r.order.state.value}")
        con.print(_inventory_table(r.certificates, "New certificates"))

    _emit(data, render, as_json)
    return EXIT_OK


@app.command
def pay(
    order_id: str,
    /,
    *,
    decline: Annotated[bool, Parameter(negative="", help="Decline the charge instead (nothing debited).")] = False,
    at: AtOption = None,
    as_json: JsonFlag = False,
) -> int:
    """Approve (or `--decline`) the shortfall charge of an order awaiting payment (PAY-1)."""
    from certpilot.operations import orders

    now = _no_at(at)
    r = orders.pay(_ctx.services(), order_id, approve=not decline, now=now, actor="cli")
    o = r.order

    def render(con):
        con.print(f"order {o.id}: {o.state.value}")
        if r.certificates:
            con.print(_inventory_table(r.certificates, "Its certificates (the scanner applies the pending one)"))

    _emit({"order": order_dict(o), "certificates": [view_dict(v) for v in r.certificates]}, render, as_json)
    return EXIT_OK


@app.command
def cancel(cert_id: str, /, *, at: AtOption = None, as_json: JsonFlag = False,
           prefect: Annotated[bool, Parameter(negative="", help="Run the `cancel` deployment instead.")] = False
           ) -> int:
    """Cancel a not-activated certificate and the later ones of its plan (PL-7): the plan ends with the
    certificate before it; each cancelled year's quota and managed credit come back (private CA: the
    credit), instead of the next certificate starting."""
    now = _no_at(at)
    if prefect:
        _known_certificate(cert_id)
        return _trigger("cancel/cancel", {"certificate_id": cert_id}, as_json, key=f"cancel:{cert_id}")
    from certpilot.operations import orders

    r = orders.cancel(_ctx.services(), cert_id, now=now, actor="cli")
    data = {"certificate_id": r.certificate.id, "state": r.certificate.state.value,
            "follow_ups": [c.id for c in r.follow_ups],
            "restored": [ledger_dict(e) for e in r.ledger], "balances": balances_dict(r.balances),
            "plan_after": r.plan_after,
            "coverage_not_after": _iso(r.coverage_not_after) if r.coverage_not_after else None}
    sums: dict[str, int] = {}
    for e in r.ledger:  # one line per balance, however many certificates went
        what = f"{e.kind.value}{' ' + e.spec_key if e.spec_key else ''}"
        sums[what] = sums.get(what, 0) + e.delta
    restored = ", ".join(f"{delta:+d} {what}" for what, delta in sums.items())
    _emit(data, lambda con: con.print(
        f"cancelled {r.certificate.id}" + (f" and its {len(r.follow_ups)} follow-up(s) "
                                           f"{', '.join(c.id for c in r.follow_ups)}" if r.follow_ups else "")
        + (f"; restored {restored}" if restored else "; nothing to restore (it cost no quota or credit)")
        + (f"\n{_e(r.plan_after)}" if r.plan_after else "")), as_json)
    return EXIT_OK


@db_app.command
def upgrade(*, as_json: JsonFlag = False) -> int:
    """Bring the database schema to every migration head (idempotent)."""
    from certpilot.operations.admin import upgrade_schema

    shown = upgrade_schema(_ctx.services()).database
    _emit({"database": shown, "schema": "up to date"}, lambda con: con.print(f"{shown}: schema up to date"),
          as_json)
    return EXIT_OK


def _show_demo(report, as_json: bool) -> None:
    """Print what the demo loaded, the inventory and the renewal preview (`demo`, `up`)."""
    now = report.at
    data = {
        "at": _iso(now),
        "home": str(_ctx.settings.home),
        "imported": report.load.imported,
        "already_present": report.load.skipped,
        "certificates": [view_dict(v) for v in report.inventory],
        "balances": balances_dict(report.balances),
        "preview": preview_dict(report.preview) if report.preview else None,
    }

    def render(con):
        con.print(f"certpilot home: {_e(str(_ctx.settings.home))}")
        con.print(f"demo: {len(report.load.imported)} certificate(s) imported, "
                  f"{len(report.load.skipped)} already present")
        con.print(_inventory_table(report.inventory, f"Inventory as of {now:%Y-%m-%d %H:%M}Z"))
        if report.preview:
            _render_preview(con, report.preview)
        con.print("Try: certpilot list --expiring-within 30, certpilot show ID, "
                  "certpilot renew ID --years 2 --dry-run")

    _emit(data, render, as_json)


@app.command
def up(*, no_demo: Annotated[bool, Parameter(negative="", help="Do not load the demo inventory.")] = False) -> int:
    """Run certpilot locally: a Prefect server on 127.0.0.1:4200 (UI), the blocks, the demo
    inventory, every deployment served, and a first scan that renews what is due. Ctrl-C stops it."""
    from certpilot.serve import up as serve_up

    serve_up(with_demo=not no_demo, on_demo=lambda report: _show_demo(report, False))
    return EXIT_OK


def _prefect_api() -> str:
    """Point this process at the Prefect API and return its URL (before it first talks to Prefect).

    The user's choice wins: PREFECT_API_URL, else the active Prefect profile's API URL, never
    overridden. With neither, the local server `certpilot up` runs from CERTPILOT_HOME (its URL
    and auth string); that server's auth string is added when the configured URL is its URL and
    no auth string is configured (`prefect_server.cli_env`).

    Raises:
        ServerUnreachable: no API is configured and `certpilot up` never ran from CERTPILOT_HOME.
    """
    from certpilot.prefect_server import cli_env, use_client_env

    use_client_env(cli_env(_ctx.settings.home))
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ServerUnreachable("no Prefect API is configured: set PREFECT_API_URL (or `prefect profile use` a "
                                "profile that sets it), or start a local one with `certpilot up`")
    return url


def _known_certificate(cert_id: str):
    """Check locally, before asking a server, that the certificate exists; returns it.

    Raises:
        NotFoundError: no such certificate (exit 4, saying how to list the valid ids).
    """
    from certpilot.operations.inventory import show_certificate

    return show_certificate(_ctx.services(), cert_id).certificate


def _trigger(deployment: str, parameters: dict[str, Any], as_json: bool, *, key: str) -> int:
    """Start a run of deployment `deployment` (`flow/name`): `certpilot up` or a worker runs it.

    Args:
        key: the run's idempotency key: the same command again (a retry, a double press, the
            scanner for the same renewal) gets the run already started, never a second one.

    Raises:
        BadInputError(KEY_IN_PARAMETER): a parameter holds a private key (nothing is started).
    """
    from certpilot.core.secrets import refuse_key_material

    refuse_key_material(parameters, where=f"the {deployment} deployment")
    url = _prefect_api()
    from prefect.deployments import run_deployment

    try:
        run = run_deployment(deployment, parameters=parameters, timeout=0, idempotency_key=key)
    except Exception as exc:  # noqa: BLE001 - no server or no such deployment
        raise ServerUnreachable(f"could not start a run of the {deployment!r} deployment at {url} ({exc}); is "
                                "`certpilot up` running, or were `certpilot setup` and `prefect deploy --all` "
                                "run against this API, with a worker on the certpilot pool?") from exc
    data = {"deployment": deployment, "flow_run_id": str(run.id), "flow_run_name": run.name,
            "parameters": parameters, "idempotency_key": key}
    _emit(data, lambda con: con.print(f"started {deployment} run [bold]{run.name}[/] ({run.id}): watch it in the "
                                      "UI"), as_json)
    return EXIT_OK


@app.command
def inbox(*, all_: Annotated[bool, Parameter(name="--all", negative="", help="Read messages too.")] = False,
          mark_read: Annotated[bool, Parameter(negative="", help="Mark the listed messages read.")] = False,
          as_json: JsonFlag = False) -> int:
    """The in-product messages (DEP-3, NT-1, NT-2): failed deployments, steps needing a human, expiry."""
    from certpilot.operations import inbox as messages
    from certpilot.operations.common import iso

    svc = _ctx.services()
    found = messages.messages(svc, unread_only=not all_)
    if mark_read:
        messages.mark_read(svc, [m.id for m in found])
    data = [{"id": m.id, "at": iso(m.at), "kind": m.kind, "certificate_id": m.certificate_id,
             "common_name": m.common_name, "subject": m.subject, "body": m.body, "read": m.read} for m in found]

    def render(con):
        if not found:
            con.print("no unread messages" if not all_ else "no messages")
        for m in found:
            con.print(f"[bold]{_e(m.subject)}[/] ({m.at:%Y-%m-%d %H:%M}Z, {m.kind}, {m.certificate_id})")
            con.print(_e(m.body.rstrip()))
            con.print()

    _emit(data, render, as_json)
    return EXIT_OK


@app.command(name="setup")
def setup_(
    *,
    config: Annotated[Path | None, Parameter(
        name="--config", help="TOML file of the blocks to write: [certpilot] (the certpilot-config block) and "
                              "the issuer, DNS and notification blocks it names (config/setup.example.toml).")] = None,
    private_ca: Annotated[bool, Parameter(
        name="--private-ca", negative="", help="Issue from certpilot's embedded private CA (the config block "
                                               "names private-ca/default).")] = False,
    prefect_yaml: Annotated[Path, Parameter(
        name="--prefect-yaml", help="Where to write certpilot's prefect.yaml when no file is there.")] = Path(
        "prefect.yaml"),
    as_json: JsonFlag = False,
) -> int:
    """Make a Prefect server ready for `prefect deploy --all` and `prefect worker start --pool certpilot`
    (idempotent): migrate the database, register the block types, write the certpilot-config block,
    create the concurrency limits, the work pool and the automations, write prefect.yaml."""
    import httpx

    from certpilot import setup as s

    url = _prefect_api()
    try:
        report = s.setup(api_url=url, database_url=_ctx.settings.db_url, config_file=config,
                         private_ca=private_ca, prefect_yaml=prefect_yaml)
    except s.ConfigurationNeeded as exc:
        raise UsageError(str(exc)) from exc
    except httpx.HTTPError as exc:  # unreachable, or refused (401: no or a wrong auth string)
        raise ServerUnreachable(f"the Prefect API at {url} did not answer as expected ({exc}); check that it "
                                "runs, and PREFECT_API_URL and PREFECT_API_AUTH_STRING") from exc
    data = {"api_url": report.api_url, "database": report.database, "changed": report.changed,
            "steps": [{"kind": x.kind, "name": x.name, "change": x.change.value, "detail": x.detail}
                      for x in report.steps]}

    def render(con):
        from rich.table import Table

        t = Table(title=f"certpilot setup: {_e(report.api_url)}")
        for col in ("what", "name", "change", "detail"):
            t.add_column(col, no_wrap=col == "change")
        style = {"created": "green", "updated": "yellow", "unchanged": "dim"}
        for x in report.steps:
            t.add_row(x.kind, _e(x.name), f"[{style[x.change.value]}]{x.change.value}[/]", _e(x.detail))
        con.print(t)
        con.print("changed: " + ", ".join(sorted({x.kind for x in report.steps if x.change.value != "unchanged"}))
                  if report.changed else "nothing to change: already set up")
        con.print("Next: prefect deploy --all (here), then prefect worker start --pool certpilot (on each worker)")

    _emit(data, render, as_json)
    return EXIT_OK


@app.command(name="install-automations")
def install_automations(*, block: Annotated[str | None, Parameter(
        help="Notification block '<type slug>/<name>' (default: the first one certpilot-config names).")] = None,
        as_json: JsonFlag = False) -> int:
    """Install automations/*.yaml: notify on any failed or crashed certpilot flow run."""
    url = _prefect_api()
    import httpx

    from certpilot.automations import install

    try:
        names = install(block)
    except httpx.HTTPError as exc:  # unreachable, or refused (401: no or a wrong auth string)
        raise ServerUnreachable(f"the Prefect API at {url} did not answer as expected ({exc}); check that it "
                                "runs, and PREFECT_API_URL and PREFECT_API_AUTH_STRING") from exc
    if not names:
        raise UsageError("no notification block is configured: name one with --block TYPE/NAME (any Prefect "
                         "notification block) or in the certpilot-config block's notification_blocks")
    _emit({"installed": names}, lambda con: con.print(f"installed: {', '.join(names)}"), as_json)
    return EXIT_OK


def _csr_parameter(csr: str, csr_file: Path | None) -> dict:
    """The `renewal` run's `csr_pem` for `--csr manual --csr-file F` (CSR-2; a CSR is public), else
    nothing. Raises UsageError for a manual CSR without its file or a file without manual."""
    if csr == "manual" and csr_file is None:
        raise UsageError("--csr manual needs --csr-file F (the CSR to submit)")
    if csr != "manual" and csr_file is not None:
        raise UsageError("--csr-file is only for --csr manual")
    return {"csr_pem": _read(csr_file, "CSR").decode()} if csr_file is not None else {}


def _csr_key(key: str, params: dict) -> str:
    """The run's idempotency key: `key` (shared with the scanner), or, for a manual CSR, `key` and
    the CSR's digest (the same command again joins its run; a run the scanner started has no CSR
    to submit, so it is never joined)."""
    import hashlib

    pem = params.get("csr_pem")
    return key if pem is None else f"{key}-csr-{hashlib.sha256(pem.encode()).hexdigest()[:16]}"


@app.command
def apply(cert_id: str, /, *, csr: Literal["plan", "system", "reuse", "manual"] = "plan",
          csr_file: Annotated[Path | None, Parameter(help="The CSR for --csr manual (CSR-2).")] = None,
          as_json: JsonFlag = False) -> int:
    """Submit a pending application now (PL-1: the first certificate of a 1-year renewal is submitted
    by hand): key + CSR, validation, CA review, then deployment (a run of the `renewal` deployment).
    `--csr plan` (default) keeps the mode its plan was ordered with (CSR-3); `--csr manual --csr-file F`
    submits your CSR (CSR-2)."""
    from certpilot.core.scan import work_key

    params = {"certificate_id": cert_id, "csr_mode": csr, **_csr_parameter(csr, csr_file)}
    cert = _known_certificate(cert_id)
    # The scanner's key for work on this certificate and order: one run between them (a manual
    # CSR travels with its own run).
    return _trigger("renewal/renewal", params, as_json, key=_csr_key(work_key(cert.id, cert.order_id), params))


@app.command
def policy(cert_id: str, /, *,
           auto_renew: Annotated[bool | None, Parameter(help="Renew automatically when due (the scanner).")] = None,
           years: Annotated[Literal[1, 2, 3] | None, Parameter(help="Plan length of automatic renewals.")] = None,
           start_days: Annotated[int | None, Parameter(
               help="Start automatic renewal at this many days left (default 30: no managed-service fee, "
                    "PAY-2; more than 30 pays it).")] = None,
           default_start: Annotated[bool, Parameter(help="Go back to the default start (30 days).")] = False,
           validation: Annotated[Literal["auto", "dns-auto", "dns-manual", "http-file", "http-manual",
                                         "delegated"] | None, Parameter(
               help="Validation method of its next applications (auto: DV-1..DV-4 decide).")] = None,
           issuer: Annotated[str | None, Parameter(help="The issuer it is applied to (see `certpilot issuers`).")] = None,
           fallback: Annotated[list[str] | None, Parameter(help="Issuers tried in order when it cannot take the order "
                                                                "(repeat; `none` removes them).")] = None,
           as_json: JsonFlag = False) -> int:
    """Show or set a certificate's renewal policy: automatic renewal on/off, when it starts (PL-1/PAY-2),
    plan length, validation method (DV-1..DV-4), issuer and fallbacks."""
    from certpilot.operations.inventory import set_policy

    p = set_policy(_ctx.services(), cert_id, auto_renew=auto_renew, years=years, start_days=start_days,
                   default_start=default_start, validation_method=validation)
    data = {"certificate_id": p.certificate_id, "auto_renew": p.auto_renew, "years": p.years, "default": p.default,
            "start_days": p.start_days, "start_days_set": p.start_days_set, "pays_fee": p.pays_fee,
            "validation": p.validation_method or "auto"}
    if issuer is not None or fallback is not None:  # the issuer in force: `certpilot issuers ID`
        data.update(_cli_issuers.policy_issuer(cert_id, issuer, fallback))
    fee = ("pays the managed-service fee (PAY-2: more than 30 days left)" if p.pays_fee
           else "no managed-service fee (PAY-2)")
    _emit(data, lambda con: con.print(
        f"{cert_id}: automatic renewal {'on' if data['auto_renew'] else 'off'}, {data['years']} year(s), starts at "
        f"{p.start_days} days left ({fee}), validation {data['validation']}"
        + (" (defaults)" if data["default"] else "") + _cli_issuers.policy_issuer_line(data)), as_json)
    return EXIT_OK


@app.command
def emergency(cert_id: str, /, *, as_json: JsonFlag = False) -> int:
    """EM-1..3: restore a site down with an expired certificate (runs the `emergency` deployment)."""
    cert = _known_certificate(cert_id)
    expiry = cert.not_after.date().isoformat() if cert.not_after else ""
    return _trigger("emergency/emergency", {"certificate_id": cert_id}, as_json, key=f"emergency:{cert_id}:{expiry}")


@app.command
def scan(*, as_json: JsonFlag = False) -> int:
    """Run the scanner now (a run of the `scan` deployment, which is also scheduled hourly)."""
    # One scan per minute from the command line: a double press or a retry joins the first one.
    return _trigger("scan/scan", {}, as_json, key=f"scan:cli:{datetime.now(UTC):%Y-%m-%dT%H:%M}")


@app.command
def demo(*, at: AtOption = None, as_json: JsonFlag = False) -> int:
    """Load the demo inventory (idempotent) and show it with a renewal preview.

    Loading writes certificates, quota and credits, so it happens at the real clock: `--at` is
    refused like on any action (`certpilot list --at ...` views the demo at another time)."""
    from certpilot.demo import run_demo

    _no_at(at)
    _show_demo(run_demo(_ctx.services(keys=True), settings=_ctx.settings), as_json)
    return EXIT_OK


# The order book (`orders`, `order show|cancel`) lives in its own module, registered here.
from certpilot import cli_orders as _cli_orders  # noqa: E402

_cli_orders.register(sys.modules[__name__])
from certpilot import cli_targets as _cli_targets  # noqa: E402 - targets, deployments, export (issue 11)

_cli_targets.register(sys.modules[__name__])
from certpilot import cli_metrics as _cli_metrics  # noqa: E402

_cli_metrics.register(sys.modules[__name__])
from certpilot import cli_discovery as _cli_discovery  # noqa: E402, I001

_cli_discovery.register(sys.modules[__name__])
# Issuers (`issuers`, `revoke`, `renewal-info`; the issuer part of `policy`), likewise.
from certpilot import cli_issuers as _cli_issuers  # noqa: E402

_cli_issuers.register(sys.modules[__name__])
from certpilot import cli_vault as _cli_vault  # noqa: E402 - key custody: vault, backup, restore

_cli_vault.register(sys.modules[__name__])
from certpilot import cli_import as _cli_import  # noqa: E402  (import --dir / --from: moving a fleet in)

_cli_import.register(sys.modules[__name__])
from certpilot import cli_alibaba as _cli_alibaba  # noqa: E402  (sync alibaba: an Alibaba Cloud account, issue 14)

_cli_alibaba.register(sys.modules[__name__])


# ---------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 environment failed, 2 usage, 3 refused,
    4 bad input, 5 Prefect server unreachable).

    Args:
        argv: the arguments after the program name; default ``sys.argv[1:]``.
    """
    global _ctx
    tokens = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in tokens
    _ctx = _Ctx()
    _ctx.json = as_json
    err = _ctx.console(stderr=True)
    try:
        result = app(tokens, exit_on_error=False, print_error=not as_json, help_on_error=False,
                     result_action="return_value")
    except CycloptsError as exc:
        if as_json:
            _emit(_error_dict(exc, EXIT_USAGE), lambda con: None, True)
        return EXIT_USAGE
    except UsageError as exc:
        if as_json:
            _emit(_error_dict(exc, EXIT_USAGE), lambda con: None, True)
        else:
            err.print(f"[bold red]usage[/]: {_e(str(exc))}")
        return EXIT_USAGE
    except ServerUnreachable as exc:
        if as_json:
            _emit(_error_dict(exc, EXIT_SERVER), lambda con: None, True)
        else:
            err.print(f"[bold red]server unreachable[/]: {_e(str(exc))}")
        return EXIT_SERVER
    except _Refused:
        return EXIT_REFUSED
    except CertpilotError as exc:
        code = EXIT_REFUSED if exc.exit_code == EXIT_REFUSED else EXIT_BAD_INPUT if exc.exit_code == 4 else EXIT_ERROR
        if as_json:
            _emit(_error_dict(exc, code), lambda con: None, True)
        else:
            refusal = getattr(exc, "refusal", None)
            if refusal is not None:
                _render_refusal(err, refusal)
            else:
                err.print(f"[bold red]error[/]: {_e(str(exc))}")
        return code
    return int(result) if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
