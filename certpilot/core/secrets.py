"""Keeping key material out of places that are stored in plain text (CSR-5, issue 15).

Pure. Flow parameters, Prefect stores as given and shows in the UI; a private key pasted into
one would be stored before any flow code could refuse it. So:

- `PemParameter` / `TextParameter` are the types of every free-text flow parameter: their JSON
  schema forbids private-key markers and bounds the length, and the Prefect server enforces a
  deployment's parameter schema when it creates a run, so such a run is never created.
- `refuse_key_material(params)` is the same check for code that starts runs itself (the CLI),
  before the API is asked.
- `Sensitive` wraps a secret (a TSIG key, a password) so that no `repr`, `str`, log line or
  exception shows it; `.reveal()` is the one way to read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from certpilot.core.errors import BadInputError, Reason
from certpilot.core.limits import MAX_INPUT_BYTES

KEY_MARKERS = ("PRIVATE KEY-----", "PuTTY-User-Key-File", "BEGIN OPENSSH PRIVATE", "BEGIN PGP PRIVATE KEY")
"""Text that only private keys hold (PEM, OpenSSH, PuTTY, PGP)."""

KEY_PATTERN = "|".join(KEY_MARKERS)
r"""A regular expression (JSON schema / ECMA and Python alike) found in any text holding a key.
The markers hold only letters, spaces and hyphens: no escapes (a browser's `u`-flag regex
refuses `\-`)."""
_NO_KEY_SCHEMA = {"not": {"pattern": KEY_PATTERN}}


def _no_key(value: str) -> str:
    # The flow's own validation (when the run starts), for runs created without the schema check.
    if any(m in value for m in KEY_MARKERS):
        raise ValueError("holds a private key: flow parameters are stored in plain text; put the key in a "
                         "Prefect Secret block and pass its name")
    return value


PemParameter = Annotated[str, Field(max_length=MAX_INPUT_BYTES, json_schema_extra=_NO_KEY_SCHEMA,
                                    description="PEM certificates only: a private key is refused here "
                                                "(put it in a Secret block)"), AfterValidator(_no_key)]
"""A flow parameter holding certificates (PEM): never a key, at most MAX_INPUT_BYTES.

Its JSON schema says `maxLength` and `not: {pattern: <key markers>}`: the Prefect server checks
a deployment's parameters against it before it creates a run (enforce_parameter_schema)."""
TextParameter = Annotated[str, Field(max_length=1024, json_schema_extra=_NO_KEY_SCHEMA), AfterValidator(_no_key)]
"""A short free-text flow parameter (an id, an owner, a brand, a name): never a key."""


def find_key_material(value: Any, path: str = "") -> str | None:
    """The path of the first string in `value` (nested dicts/lists) holding key material, or None."""
    if isinstance(value, str | bytes):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        return path or "(value)" if any(m in text for m in KEY_MARKERS) else None
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple | set | frozenset):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = find_key_material(v, f"{path}.{k}" if path else str(k))
        if found:
            return found
    return None


def refuse_key_material(params: Mapping[str, Any], *, where: str) -> None:
    """Refuse parameters holding a private key, naming the parameter (never its value).

    Args:
        params: the parameters a run would be created with.
        where: what would receive them, for the message ("the import flow").

    Raises:
        BadInputError(KEY_IN_PARAMETER): a parameter holds key material.
    """
    found = find_key_material(params)
    if found:
        raise BadInputError(
            f"parameter '{found}' of {where} holds a private key; flow parameters are stored in plain text, so "
            "nothing was started. Put the key in a Prefect Secret block and pass its name "
            "(key_secret_block), or import from the command line (`certpilot import --key FILE`).",
            Reason.KEY_IN_PARAMETER,
        )


class Sensitive:
    """A secret value no `repr`/`str`/format shows; read it with `reveal()`.

    Args:
        value: the secret (bytes or text).
        label: what it is, shown in its repr ("TSIG key", "SMTP password").
    """

    __slots__ = ("_value", "label")

    def __init__(self, value: str | bytes, label: str = "secret"):
        self._value = value
        self.label = label

    def reveal(self) -> str | bytes:
        """The secret itself: pass it straight to the library that needs it."""
        return self._value

    def __repr__(self) -> str:
        return f"Sensitive({self.label}, ****)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sensitive) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Sensitive", self.label))

    def __reduce__(self):  # never pickled into a result, cache or artifact
        raise TypeError(f"{self!r} cannot be pickled")
