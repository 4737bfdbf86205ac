"""Which validation method a certificate applies with (DV-1..DV-4): the operator's choice, kept in
its renewal policy (`certpilot policy ID --validation METHOD`), else `core.validation.choose_method`.
"""

from __future__ import annotations

from certpilot.core.errors import BadInputError, Reason, RefusedError
from certpilot.core.models import Certificate, ValidationMethod
from certpilot.core.validation import check_validation_method

AUTO = "auto"
"""`--validation auto`: forget the operator's choice; `choose_method` decides again."""


def checked_method(cert: Certificate, method: str) -> str | None:
    """The method an operator asked for `cert`, checked (DV-4), as stored; None for `auto`.

    Raises:
        BadInputError: not a method certpilot knows (the message lists them).
        RefusedError: WILDCARD_FILE_VALIDATION: file validation for a wildcard name (DV-4).
    """
    if method == AUTO:
        return None
    try:
        chosen = ValidationMethod(method)
    except ValueError:
        known = ", ".join([m.value for m in ValidationMethod] + [AUTO])
        raise BadInputError(f"unknown validation method {method!r}; use one of {known}", Reason.BAD_INPUT) from None
    refusal = check_validation_method(cert.names, chosen)
    if refusal is not None:
        raise RefusedError(refusal)
    return chosen.value
