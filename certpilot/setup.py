"""Setting up a Prefect API for certpilot (`certpilot setup`, and `certpilot up` for its own server).

`setup()` makes a Prefect server ready for `prefect deploy --all` and `prefect worker start --pool
certpilot`, idempotently: the store's schema, certpilot's block types, the `certpilot-config/default`
block (from a configuration file, or the embedded private CA when asked for explicitly), the global
concurrency limits of the CA and DNS APIs, the `certpilot` process work pool, the automations, and
the packaged `prefect.yaml` in the directory it will be deployed from. Each step says whether it
created, updated or left something as it was; a second run changes nothing and says so.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from certpilot.core.errors import BadInputError, CertpilotError, MissingBlockError

WORK_POOL = "certpilot"
"""The work pool `prefect.yaml` deploys to and `prefect worker start --pool certpilot` polls."""
PRIVATE_CA_ISSUER = "private-ca/default"
HEARTBEAT_SETTING = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
HEARTBEAT_SECONDS = "30"
"""Runs on the pool send a heartbeat this often (the zombie automation waits for three)."""


class Change(StrEnum):
    """What a setup step did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Step:
    """One thing `setup` looked at: what (``kind``, ``name``), what it did, and a sentence."""

    kind: str
    name: str
    change: Change
    detail: str = ""


@dataclass(frozen=True)
class SetupReport:
    """What `setup` found and did, in order."""

    api_url: str
    database: str
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        """Whether any step created or updated something."""
        return any(s.change is not Change.UNCHANGED for s in self.steps)


class ConfigurationNeeded(CertpilotError):
    """No `certpilot-config` block exists and the command line did not say which to write."""


def _run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- block types and blocks


def register_block_types() -> Step:
    """Register certpilot's block types (and the prefect-aws/email ones they embed)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect_aws import AwsCredentials
    from prefect_email import EmailServerCredentials

    import blocks as b

    classes = (AwsCredentials, EmailServerCredentials, *b.ALL_BLOCKS)

    async def new_schemas() -> int:
        async with get_client() as client:
            missing = 0
            for cls in classes:
                try:
                    await client.read_block_schema_by_checksum(cls._calculate_schema_checksum())
                except ObjectNotFound:
                    missing += 1
            return missing

    missing = _run(new_schemas())
    b.register_all()
    return Step("block types", "certpilot", Change.CREATED if missing else Change.UNCHANGED,
                f"{len(classes)} block types, {missing} new or changed")


def _fields(value: Any) -> Any:
    """A dump without the block-document bookkeeping (`_block_document_id`, …) at any depth."""
    if isinstance(value, dict):
        return {k: _fields(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_fields(v) for v in value]
    return value


def _secret_dump(block) -> dict[str, Any]:
    """A block's fields with secrets revealed, to compare with what is saved (never printed)."""
    return _fields(block.model_dump(mode="json", context={"include_secrets": True}))


def save_block(block, name: str) -> Change:
    """Save `block` as `name`: created when absent, updated when different, else left as it is."""
    try:
        existing = type(block).load(name)
    except ValueError:
        block.save(name)
        return Change.CREATED
    if _secret_dump(existing) == _secret_dump(block):
        return Change.UNCHANGED
    block.save(name, overwrite=True)
    return Change.UPDATED


def _exists(block_class, name: str) -> bool:
    try:
        block_class.load(name)
    except ValueError:
        return False
    return True


def _reference_exists(ref: str) -> bool:
    """Whether the block a configuration reference (``kind/name``) names exists on the server."""
    from prefect.blocks.core import Block

    import blocks as b
    from certpilot.setup_config import NAMED_KINDS, REFERENCE_KINDS

    kind, _, name = ref.partition("/")
    kind = REFERENCE_KINDS.get(kind, kind)
    if kind in NAMED_KINDS:
        return _exists(getattr(b, NAMED_KINDS[kind]), name)
    try:  # any Prefect notification block, by its type slug
        Block.load(ref)
    except (ValueError, KeyError):
        return False
    return True


def check_references(plan) -> None:
    """Refuse a configuration file naming a block neither it defines nor the server holds.

    Raises:
        MissingBlockError: naming the references that resolve nowhere.
    """
    missing = [r for r in plan.references() if r not in plan.defined() and not _reference_exists(r)]
    if missing:
        raise MissingBlockError(
            f"{plan.source}: the [certpilot] table names {', '.join(missing)}, which neither the file defines "
            "nor the Prefect server holds; add a table for each, or create the block first")


def write_config_file(plan) -> list[Step]:
    """Write the blocks of a configuration file (`setup_config.ConfigPlan`), the config block last.

    Raises:
        MissingBlockError: see `check_references` (checked first: nothing is written then).
    """
    check_references(plan)
    return [Step("block", spec.ref, save_block(spec.build(), spec.name))
            for spec in (*plan.blocks, plan.config)]


def write_private_ca_config() -> list[Step]:
    """The embedded private CA as the default issuer: `certpilot-private-ca/default` when absent,
    and `certpilot-config/default` naming it (its other fields kept)."""
    import blocks as b

    steps = []
    ca = b.PrivateCaBlock(demo=True)  # the embedded CA: any name until allowed_suffixes are set
    ca_change = Change.UNCHANGED if _exists(b.PrivateCaBlock, "default") else save_block(ca, "default")
    steps.append(Step("block", "certpilot-private-ca/default", ca_change))
    try:
        config = b.CertpilotConfigBlock.load("default")
    except ValueError:
        config = b.CertpilotConfigBlock()
    config = config.model_copy(update={"default_issuer": PRIVATE_CA_ISSUER})
    steps.append(Step("block", "certpilot-config/default", save_block(config, "default"),
                      f"default issuer {PRIVATE_CA_ISSUER}"))
    return steps


def configure_blocks() -> None:
    """Register the block types and save the embedded defaults when absent (`certpilot up`'s own
    local server: the private CA, unless a configuration block exists already)."""
    import blocks as b

    b.register_all()
    if not _exists(b.CertpilotConfigBlock, "default"):
        write_private_ca_config()
    elif not _exists(b.PrivateCaBlock, "default"):
        save_block(b.PrivateCaBlock(demo=True), "default")


# ---------------------------------------------------------------- limits, pool, automations


def ensure_concurrency_limits() -> list[Step]:
    """Create the global concurrency limits of the CA and DNS APIs when absent (an existing limit
    keeps the number an operator gave it)."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    from tasks.pipeline import API_LIMITS

    async def go() -> list[Step]:
        steps = []
        async with get_client() as client:
            for name, limit in API_LIMITS.items():
                try:
                    found = await client.read_global_concurrency_limit_by_name(name)
                    steps.append(Step("concurrency limit", name, Change.UNCHANGED, f"limit {found.limit}"))
                except ObjectNotFound:
                    await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
                    steps.append(Step("concurrency limit", name, Change.CREATED, f"limit {limit}"))
        return steps

    return _run(go())


def _with_heartbeats(template: dict[str, Any]) -> dict[str, Any] | None:
    """`template` (a process pool's base job template) whose runs send heartbeats, or None when
    its runs already do (or it sets its own frequency: the operator's value is kept)."""
    env = template.get("variables", {}).get("properties", {}).get("env")
    if env is None or HEARTBEAT_SETTING in (env.get("default") or {}):
        return None
    updated = copy.deepcopy(template)
    prop = updated["variables"]["properties"]["env"]
    prop["default"] = {**(prop.get("default") or {}), HEARTBEAT_SETTING: HEARTBEAT_SECONDS}
    return updated


def ensure_work_pool(name: str = WORK_POOL) -> Step:
    """Create the process work pool `name` when absent. Its runs send heartbeats (the zombie
    automation marks a run whose heartbeats stop Crashed: its worker died); an existing process
    pool without that setting gets it, anything else about an existing pool is left as it is."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    async def go() -> Step:
        async with get_client() as client:
            try:
                pool = await client.read_work_pool(name)
            except ObjectNotFound:
                template = _with_heartbeats(ProcessWorker.get_default_base_job_template())
                await client.create_work_pool(WorkPoolCreate(name=name, type=ProcessWorker.type,
                                                             base_job_template=template))
                return Step("work pool", name, Change.CREATED,
                            f"type {ProcessWorker.type}, runs send heartbeats every {HEARTBEAT_SECONDS} s")
            template = _with_heartbeats(pool.base_job_template) if pool.type == ProcessWorker.type else None
            if template is None:
                return Step("work pool", name, Change.UNCHANGED, f"type {pool.type}")
            await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
            return Step("work pool", name, Change.UPDATED,
                        f"type {pool.type}: its runs now send heartbeats every {HEARTBEAT_SECONDS} s")

    return _run(go())


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _automations() -> dict[str, Any]:
    """The server's automations by name, without their ids (to compare definitions)."""
    from prefect import get_client

    async def go() -> dict[str, Any]:
        async with get_client() as client:
            return {a.name: _without_ids(a.model_dump()) for a in await client.read_automations()}

    return _run(go())


def install_automations() -> list[Step]:
    """Install certpilot's automations (`certpilot.automations.install`, which replaces one of
    the same name); each reported created, updated, or unchanged when its definition is the same."""
    from certpilot.automations import install

    before = _automations()
    names = install()
    after = _automations()
    if not names:
        return [Step("automations", "-", Change.UNCHANGED, "none to install")]
    return [Step("automation", n, Change.CREATED) if n not in before else
            Step("automation", n, Change.UNCHANGED, "same definition") if before[n] == after.get(n) else
            Step("automation", n, Change.UPDATED) for n in names]


# ---------------------------------------------------------------- prefect.yaml


def packaged_prefect_yaml() -> Path:
    """The `prefect.yaml` certpilot ships (the checkout's, or the wheel's copy)."""
    from certpilot.resources import data_path

    return data_path("prefect.yaml")


def write_prefect_yaml(path: Path) -> Step:
    """Write the packaged `prefect.yaml` at `path` unless a file is there (never overwritten)."""
    source = packaged_prefect_yaml().read_text()
    if path.exists():
        same = path.read_text() == source
        return Step("file", str(path), Change.UNCHANGED,
                    "same as certpilot's" if same else "kept: differs from certpilot's packaged prefect.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return Step("file", str(path), Change.CREATED, "certpilot's deployments: run `prefect deploy --all` here")


# ---------------------------------------------------------------- the whole setup


def _configuration_steps(plan, private_ca: bool) -> list[Step]:
    import blocks as b

    if plan is not None:
        return write_config_file(plan)
    if private_ca:
        return write_private_ca_config()
    return [Step("block", "certpilot-config/default", Change.UNCHANGED,
                 f"kept (default issuer {b.CertpilotConfigBlock.load('default').default_issuer})")]


def setup(*, api_url: str, database_url: str | None = None, config_file: Path | None = None,
          private_ca: bool = False, prefect_yaml: Path | None = None) -> SetupReport:
    """Make the Prefect API this process talks to (and the store) ready for certpilot's workers.

    Args:
        api_url: the Prefect API in use (for the report; the process's Prefect settings decide).
        database_url: the store to migrate (None: the settings' default).
        config_file: a configuration file (`certpilot.setup_config`) to write the blocks from.
        private_ca: write the embedded private CA as the default issuer.
        prefect_yaml: where to write the packaged prefect.yaml (None: do not).

    Returns:
        The steps, in order, each with what it did.

    Raises:
        ConfigurationNeeded: no config block exists and neither `config_file` nor `private_ca`
            says which to write (checked before anything changes).
        BadInputError: both were given, or the configuration file is invalid (nothing written).
        MissingBlockError: the file names a block that exists nowhere (nothing written).
    """
    import blocks as b
    from certpilot import runtime
    from certpilot.operations.admin import upgrade_schema

    if config_file is not None and private_ca:
        raise BadInputError("give either --config FILE or --private-ca, not both")
    plan = None
    has_config = _exists(b.CertpilotConfigBlock, "default")  # also: the API answers, before any change
    if config_file is not None:  # an invalid file is refused before anything changes
        from certpilot.setup_config import read_config_file

        plan = read_config_file(config_file)
        check_references(plan)
    elif not private_ca and not has_config:
        from certpilot.resources import data_path

        raise ConfigurationNeeded(
            f"the Prefect API at {api_url} has no certpilot-config/default block: pass --config FILE (a TOML file "
            f"naming the issuer, DNS providers and notifications, like {data_path('config') / 'setup.example.toml'}) "
            "or --private-ca (issue from certpilot's embedded private CA)")
    schema = upgrade_schema(runtime.local_services(database_url=database_url))
    steps = [Step("database schema", schema.database, Change.UNCHANGED,
                  f"at {', '.join(schema.heads)} (migrated when behind)"),
             register_block_types(), *_configuration_steps(plan, private_ca),
             *ensure_concurrency_limits(), ensure_work_pool(), *install_automations()]
    if prefect_yaml is not None:
        steps.append(write_prefect_yaml(prefect_yaml))
    return SetupReport(api_url=api_url, database=schema.database, steps=tuple(steps))
