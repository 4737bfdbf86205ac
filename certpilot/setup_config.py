"""The configuration file of `certpilot setup --config FILE`: which Prefect blocks to write.

A TOML file. The ``[certpilot]`` table is the `certpilot-config/default` block (which issuer, DNS
providers, notification channels and probe trust the workers use); every other table is one
block it may name, keyed ``[<kind>.<name>]`` exactly as the configuration block names it::

    [certpilot]
    default_issuer = "acme/letsencrypt"
    dns_providers = ["rfc2136/primary"]
    notification_blocks = ["email-notices/ops"]

    [acme.letsencrypt]
    directory_url = "https://acme-v02.api.letsencrypt.org/directory"
    contact_email = "ops@example.com"

    [rfc2136.primary]
    server = "192.0.2.53"
    zones = ["example.com"]
    tsig_key_name = "certpilot"
    tsig_secret = { env = "CERTPILOT_TSIG_SECRET" }

An ``[alibaba.NAME]`` table (an Alibaba Cloud account: AccessKey, region, CAS package) is named
by the configuration as the issuer ``alibaba-cas/NAME`` and the DNS provider ``alidns/NAME``.
``[key-vault]`` (`certpilot-key-vault/default`: an AWS KMS key) and ``[aws-deploy]``
(`certpilot-aws-deploy/default`) have no name. A secret (or any string) may be written as
``{ env = "VARIABLE" }`` or ``{ file = "/path" }`` instead of a literal, so the file itself
need hold none. The master key is refused here: it is never kept in a block (each host reads
CERTPILOT_MASTER_KEY or its 0600 key file, or the vault uses KMS).

This module reads and validates only; `certpilot.setup` writes the blocks.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certpilot.core.errors import BadInputError

CONFIG_NAME = "default"
"""The configuration block's name: the one `runtime.services()` loads on a worker."""

# kind in the file (and in the config block's references) -> block class name in `blocks`
NAMED_KINDS = {
    "acme": "AcmeAccountBlock",
    "private-ca": "PrivateCaBlock",
    "aws-pca": "AwsPrivateCaBlock",
    "alibaba": "AlibabaCloudBlock",
    "rfc2136": "Rfc2136Block",
    "route53": "Route53Block",
    "email-notices": "SmtpNotifierBlock",
    "webhook-notices": "WebhookNotifierBlock",
}
# tables without a name: the block is named like the configuration block (runtime.from_blocks)
SINGLE_KINDS = {"key-vault": "KeyVaultBlock", "aws-deploy": "AwsDeployBlock"}
# references the configuration block makes to an [alibaba.NAME] table: one account block serves
# as the CAS issuer (``alibaba-cas/NAME``) and as the AliDNS provider (``alidns/NAME``)
REFERENCE_KINDS = {"alibaba-cas": "alibaba", "alidns": "alibaba"}


@dataclass(frozen=True)
class BlockSpec:
    """One block to write: its class, its name and its fields (secrets resolved, never printed)."""

    kind: str
    name: str
    block_class: type
    fields: dict[str, Any]

    @property
    def ref(self) -> str:
        """``slug/name`` as Prefect shows it (safe to print)."""
        return f"{self.block_class.get_block_type_slug()}/{self.name}"

    def build(self):
        """The block object.

        Raises:
            BadInputError: a field is missing or of the wrong type (the message names the
                field and the table, never the value).
        """
        from pydantic import ValidationError

        try:
            return self.block_class(**self.fields)
        except ValidationError as exc:
            table = f"[{self.kind}]" if self.kind not in NAMED_KINDS else f"[{self.kind}.{self.name}]"
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(table)'}: {e['msg']}"
                                 for e in exc.errors(include_input=False, include_url=False))
            raise BadInputError(f"{table}: {problems}") from None


@dataclass(frozen=True)
class ConfigPlan:
    """Everything a configuration file asks for: the blocks it names, then the configuration."""

    source: Path
    blocks: tuple[BlockSpec, ...]
    config: BlockSpec

    def references(self) -> list[str]:
        """Every block reference the configuration block makes (``kind/name``), in order."""
        fields = self.config.fields
        refs = [fields.get("default_issuer", "private-ca/default"), fields.get("emergency_issuer"),
                *fields.get("issuers", ())]
        return [r for r in (*refs, *fields.get("dns_providers", ()), *fields.get("notification_blocks", ())) if r]

    def defined(self) -> set[str]:
        """The ``kind/name`` references this file itself defines."""
        named = {f"{b.kind}/{b.name}" for b in self.blocks if b.kind in NAMED_KINDS}
        aliases = {f"{ref}/{b.name}" for b in self.blocks for ref, kind in REFERENCE_KINDS.items() if b.kind == kind}
        return named | aliases


def _resolve(value: Any, where: str) -> Any:
    """Replace ``{env = NAME}`` / ``{file = PATH}`` by what they point at, recursively."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            if value["env"] not in os.environ:
                raise BadInputError(f"{where} reads the environment variable {value['env']}, which is not set")
            return os.environ[value["env"]]
        if set(value) == {"file"} and isinstance(value["file"], str):
            try:
                return Path(value["file"]).expanduser().read_text().strip()
            except OSError as exc:
                raise BadInputError(f"{where} reads {value['file']}, which cannot be read ({exc.strerror})") from None
        return {k: _resolve(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BadInputError(f"configuration file {path} does not exist; check the path") from None
    except OSError as exc:
        raise BadInputError(f"configuration file {path} cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"configuration file {path} is not valid TOML: {exc}") from None


def _spec(kind: str, name: str, table: Any, where: str) -> BlockSpec:
    import blocks

    if not isinstance(table, dict):
        raise BadInputError(f"{where} must be a table of fields")
    if kind == "key-vault" and "master_key" in table:
        raise BadInputError("[key-vault] master_key: the master key is never kept in a Prefect block; give each "
                            "host CERTPILOT_MASTER_KEY or its 0600 key file, or set kms_key_id (AWS KMS)")
    block_class = getattr(blocks, {**NAMED_KINDS, **SINGLE_KINDS, "certpilot": "CertpilotConfigBlock"}[kind])
    unknown = sorted(set(table) - set(block_class.model_fields))
    if unknown:
        raise BadInputError(f"{where}: unknown field(s) {', '.join(unknown)}; this table takes "
                            + ", ".join(sorted(block_class.model_fields)))
    return BlockSpec(kind, name, block_class, _resolve(table, where))


def read_config_file(path: Path | str) -> ConfigPlan:
    """Read and validate a setup configuration file (nothing is written).

    Args:
        path: the TOML file (see the module docstring for its tables).

    Returns:
        The blocks to write, the configuration block last.

    Raises:
        BadInputError: the file is missing, not TOML, has an unknown table, a missing or wrong
            field, names an unset environment variable or an unreadable file, or holds a master key.
    """
    path = Path(path)
    data = _read_toml(path)
    if "certpilot" not in data:
        raise BadInputError(f"{path}: no [certpilot] table (the certpilot-config block: default_issuer, "
                            "dns_providers, notification_blocks…)")
    specs: list[BlockSpec] = []
    for kind, table in data.items():
        if kind == "certpilot":
            continue
        if kind in SINGLE_KINDS:
            specs.append(_spec(kind, CONFIG_NAME, table, f"[{kind}]"))
        elif kind in NAMED_KINDS and isinstance(table, dict):
            specs.extend(_spec(kind, name, t, f"[{kind}.{name}]") for name, t in table.items())
        else:
            known = ", ".join([*(f"[{k}.NAME]" for k in NAMED_KINDS), *(f"[{k}]" for k in SINGLE_KINDS)])
            raise BadInputError(f"{path}: unknown table [{kind}]; use [certpilot] and {known}")
    config = _spec("certpilot", CONFIG_NAME, data["certpilot"], "[certpilot]")
    plan = ConfigPlan(source=path, blocks=tuple(specs), config=config)
    for spec in (*plan.blocks, plan.config):
        spec.build()  # every table valid before anything is written
    return plan
