"""HTTP-01 validation by files (DV-3), refused for wildcard names (DV-4)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from certpilot.adapters.http01.webroot import ChallengeHttpServer, WebrootResponder
from certpilot.core.errors import RefusedError
from certpilot.core.models import ValidationMethod
from certpilot.core.validation import check_validation_method


def http01_responder(names: Sequence[str], webroot: str | Path) -> WebrootResponder:
    """The file responder for a certificate's names, after DV-4's check.

    Raises:
        RefusedError: WILDCARD_FILE_VALIDATION when a name is a wildcard (DV-4).
    """
    refusal = check_validation_method(names, ValidationMethod.HTTP_FILE)
    if refusal is not None:
        raise RefusedError(refusal)
    return WebrootResponder(webroot)


__all__ = ["ChallengeHttpServer", "WebrootResponder", "http01_responder"]
