"""Rule data read from files: the CA/B validity schedule and the policy defaults.

Outside `certpilot.core` because it reads files; core receives the parsed objects. Files live in
`Settings.config_dir` (the repository's `config/` by default; ``CERTPILOT_CONFIG_DIR`` overrides).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from certpilot.core.issuers import RenewalTiming
from certpilot.core.models import OrderKind, Policy
from certpilot.core.validity import CabfSchedule
from certpilot.settings import get_settings

SCHEDULE_FILE = "cabf_validity.toml"
DEFAULTS_FILE = "defaults.toml"


def _read(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"certpilot configuration file {path} is missing; restore it from the "
                                "repository's config/ directory or set CERTPILOT_CONFIG_DIR") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"certpilot configuration file {path} is not valid TOML: {exc}") from None


def load_schedule(path: Path | str | None = None) -> CabfSchedule:
    """VA-5: the CA/B maximum-validity schedule from `config/cabf_validity.toml`.

    Args:
        path: a TOML file to read instead of the configured one.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not valid TOML or its steps are invalid.
    """
    file = Path(path) if path is not None else get_settings().config_dir / SCHEDULE_FILE
    return CabfSchedule.from_mapping(_read(file))


def load_policy(path: Path | str | None = None) -> Policy:
    """The rules' numbers (`Policy`) from `config/defaults.toml` (its ``[policy]`` table).

    Fields absent from the file keep `Policy`'s defaults (the seed's).

    Args:
        path: a TOML file to read instead of the configured one.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: invalid TOML, an unknown order kind or a field of the wrong type.
    """
    file = Path(path) if path is not None else get_settings().config_dir / DEFAULTS_FILE
    data = dict(_read(file).get("policy", {}))
    if "managed_start_days" in data:
        try:
            data["managed_start_days"] = {OrderKind(k): int(v) for k, v in data["managed_start_days"].items()}
        except ValueError as exc:
            raise ValueError(f"{file}: [policy.managed_start_days]: {exc}") from None
        # Kinds the file leaves out keep their defaults.
        data["managed_start_days"] = {**Policy().managed_start_days, **data["managed_start_days"]}
    if "notice_days" in data:
        data["notice_days"] = tuple(data["notice_days"])
    return Policy.model_validate(data)


def load_timing(path: Path | str | None = None) -> RenewalTiming:
    """When a certificate is due for renewal, from `config/defaults.toml`'s ``[renewal_timing]``
    table (``days_left``, ``lifetime_fraction``); absent fields keep `RenewalTiming`'s defaults
    (30 days, one third).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: invalid TOML, or a value out of range.
    """
    file = Path(path) if path is not None else get_settings().config_dir / DEFAULTS_FILE
    data = _read(file).get("renewal_timing", {})
    try:
        timing = RenewalTiming(days_left=int(data.get("days_left", RenewalTiming.days_left)),
                               lifetime_fraction=float(data.get("lifetime_fraction", RenewalTiming.lifetime_fraction)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file}: [renewal_timing]: {exc}") from None
    if timing.days_left < 0 or not 0 <= timing.lifetime_fraction <= 1:
        raise ValueError(f"{file}: [renewal_timing]: days_left must be >= 0 and lifetime_fraction in [0, 1]")
    return timing
