"""Small helpers the use cases share: ids, idempotency keys, time parsing, machine output.

No rules live here (they are in `certpilot.core`) and no storage (that is `certpilot.store`):
only the plumbing that would otherwise be written twice by the CLI and the operations.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from certpilot.core.errors import BadInputError, Reason, Refusal
from certpilot.core.models import iso_z


def new_id(prefix: str) -> str:
    """A fresh, short, URL- and shell-safe identifier such as ``ord-3f9c0a1b2d4e5f60``.

    Args:
        prefix: what the id names (``ord``, ``crt``, ``led``); makes ids readable in logs.
    """
    from certpilot.store.repository import new_id as store_new_id

    return store_new_id(prefix)


def parse_instant(value: str) -> datetime:
    """Parse an ISO 8601 instant that carries its offset (``Z`` or ``+hh:mm``) into aware UTC.

    Args:
        value: e.g. ``2025-09-10T00:00:00Z``.

    Raises:
        ValueError: the value does not parse, or it is naive (no offset): a naive time is
            ambiguous and certpilot refuses to guess a timezone.
    """
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an ISO 8601 date-time; write e.g. 2025-09-10T00:00:00Z") from exc
    if parsed.tzinfo is None:
        raise ValueError(
            f"{value!r} has no timezone; add 'Z' or an offset such as +00:00 (e.g. 2025-09-10T00:00:00Z)"
        )
    return parsed.astimezone(UTC)


def require_aware(now: datetime) -> datetime:
    """Return `now` in UTC; refuse a naive datetime (a bug at the caller, never guessed)."""
    if now.tzinfo is None:
        raise BadInputError(f"naive time {now.isoformat()}: pass a timezone-aware UTC datetime")
    return now.astimezone(UTC)


def iso(value: datetime | date | None) -> str | None:
    """ISO 8601 text for machine output; UTC datetimes end in ``Z``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return iso_z(value)
    return value.isoformat()


_COMMAND = re.compile(r"`(certpilot [^`]+)`")


def suggested_commands(text: str | None) -> list[str]:
    """The `certpilot …` commands a message suggests (written between backticks), in order.

    Every refusal says what to do instead as such a command, with real ids filled in (EL-5);
    machine output lists them as ``instead`` so that a script can run the next step.
    """
    return list(dict.fromkeys(_COMMAND.findall(text or "")))


def refusal_dict(refusal: Refusal | None) -> dict[str, Any] | None:
    """A refusal as stable machine output: ``{"reason", "rule", "message", "instead"}``, the one
    shape of every refusal and error (``instead``: the commands the message suggests)."""
    if refusal is None:
        return None
    return {"reason": refusal.reason.value, "rule": refusal.rule or None, "message": refusal.message,
            "instead": suggested_commands(refusal.message)}


def plain(value: Any) -> Any:
    """Turn models, dataclasses, enums and datetimes into JSON-ready plain data.

    Pydantic models and dataclasses become dicts, enums their value, datetimes ISO 8601 with
    ``Z``; bytes are refused, so that no key material can slip into machine output.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return iso(value)
    if isinstance(value, Refusal):
        return refusal_dict(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raise TypeError("bytes are never part of machine output (they could be key material)")
    if hasattr(value, "model_dump"):
        return {k: plain(getattr(value, k)) for k in type(value).model_fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, Mapping):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


def positive_count(count: int, what: str) -> int:
    """Check that `count` is a positive integer.

    Raises:
        BadInputError: zero, negative or not an integer; says what to pass instead.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise BadInputError(f"{what} must be a positive whole number, got {count!r}; pass 1 or more",
                            Reason.BAD_INPUT)
    return count
