"""Installs the repository's automations (automations/*.yaml) into a Prefect server.

The template names its notification block by a placeholder, filled with the id of the first
notification block the `certpilot-config` block lists (a Prefect notification block: Slack,
Teams, webhook, email via Apprise…). Installing twice replaces the automation of that name.
"""

from __future__ import annotations

import asyncio

import yaml

from certpilot.resources import data_path

AUTOMATIONS_DIR = data_path("automations")


async def _install(block_ref: str) -> list[str]:
    from prefect.automations import Automation
    from prefect.blocks.core import Block

    block = await Block.aload(block_ref)
    block_id = str(block._block_document_id)
    names = []
    for path in sorted(AUTOMATIONS_DIR.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text().replace("{notification_block_id}", block_id))
        try:
            existing = await Automation.aread(name=spec["name"])
            await existing.adelete()
        except ValueError:
            pass
        automation = Automation.model_validate(spec)
        await automation.acreate()
        names.append(spec["name"])
    return names


def install(block_ref: str | None = None) -> list[str]:
    """Create the automations, notifying through `block_ref` (default: the config's first one).

    Returns:
        The names of the automations installed; empty when no notification block is configured.
    """
    if block_ref is None:
        from blocks import CertpilotConfigBlock

        try:
            refs = CertpilotConfigBlock.load("default").notification_blocks
        except ValueError:
            refs = []
        block_ref = next((r for r in refs if not r.startswith("email-notices/")), None)
        if block_ref is None:
            return []
    return asyncio.run(_install(block_ref))
