"""Where certpilot's data files are: the checkout's, or the copies a wheel carries.

`config/` (policy defaults, the CA/B validity schedule, the demo inventory), `automations/` and
`prefect.yaml` live at the repository's root, edited there. A checkout installed with
``pip install -e .`` reads them in place; a wheel installs packages only, so its build copies
them into the package as ``certpilot/defaults/`` (the repository's ``setup.py``), and they are
read from there.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DEFAULTS = Path(__file__).resolve().parent / "defaults"
"""The copies a wheel carries (absent in a checkout)."""
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent
"""The repository root when certpilot runs from a checkout."""


def data_path(name: str) -> Path:
    """The data file or directory `name` (``config``, ``automations``, ``prefect.yaml``).

    The wheel's copy when certpilot is installed from one, else the checkout's (which may not
    exist: callers report a missing file naming the path).
    """
    packaged = PACKAGE_DEFAULTS / name
    return packaged if packaged.exists() else CHECKOUT_ROOT / name
