"""Installs the repository's automations (automations/*.yaml) into a Prefect server.

- `certpilot-failed-or-crashed-run` notifies on a failed or crashed certpilot run. Its template
  names its notification block by a placeholder, filled with the id of the block given or of the
  first notification block the `certpilot-config` block lists (a Prefect notification block:
  Slack, Teams, webhook, email via Apprise…); without one it is not installed.
- `certpilot-drift-found` notifies when the scan's fleet probe emits `certpilot.certificate.drift`
  (a site serving another certificate than the inventory's); like the first, only with a block.
- `certpilot-zombie-runs` marks Crashed a certpilot run whose heartbeats stopped (its process or
  machine died), so the next scan relaunches its work; it needs no block and is always installed.

Installing twice replaces the automation of that name.
"""

from __future__ import annotations

import asyncio

import yaml

from certpilot.resources import data_path

AUTOMATIONS_DIR = data_path("automations")


PLACEHOLDER = "{notification_block_id}"


async def _install(block_ref: str | None) -> list[str]:
    from prefect.automations import Automation
    from prefect.blocks.core import Block

    block_id = str((await Block.aload(block_ref))._block_document_id) if block_ref else None
    names = []
    for path in sorted(AUTOMATIONS_DIR.glob("*.yaml")):
        text = path.read_text()
        if PLACEHOLDER in text and block_id is None:
            continue  # a notification without a block to send it through
        spec = yaml.safe_load(text.replace(PLACEHOLDER, block_id or ""))
        try:
            existing = await Automation.aread(name=spec["name"])
            await existing.adelete()
        except ValueError:
            pass
        automation = Automation.model_validate(spec)
        await automation.acreate()
        names.append(spec["name"])
    return names


def notification_block() -> str | None:
    """The first Prefect notification block the `certpilot-config` block lists (certpilot's own
    email block is not one an automation can use), or None."""
    from blocks import CertpilotConfigBlock

    try:
        refs = CertpilotConfigBlock.load("default").notification_blocks
    except ValueError:
        refs = []
    return next((r for r in refs if not r.startswith("email-notices/")), None)


def install(block_ref: str | None = None) -> list[str]:
    """Create the automations (module docstring), notifying through `block_ref` (default: the
    config's first notification block).

    Returns:
        The names of the automations installed, in file order; the failed-run notification is
        among them only when a notification block is known.
    """
    return asyncio.run(_install(block_ref or notification_block()))
