"""Bulk import of an existing fleet (issue 16): what was found and what became of each bundle.

Pure types, shared by the use cases (`operations.bulk_import`, `operations.fleet_sources`), the
import tasks and the `import-folder` flow (flows branch on core types only). A bundle found in a
folder is named by file paths and PEM block positions, never by its contents: it can be a task
parameter without carrying key material (CSR-5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class BulkOutcome(StrEnum):
    """What one bundle's import did."""

    IMPORTED = "imported"
    """Stored now (key sealed in the vault when it was found)."""
    SKIPPED = "skipped"
    """Already in the inventory with the same fingerprint (UP-3 DUPLICATE): nothing changed."""
    REFUSED = "refused"
    """Refused by a check (UP-3's reason); nothing of it stored, the other bundles go on."""


@dataclass(frozen=True)
class PemRef:
    """A PEM block in a file: its path and its position among the file's blocks (from 0)."""

    path: str
    index: int


@dataclass(frozen=True)
class FoundBundle:
    """A certificate found with its key and chain, by reference (no PEM content, no key)."""

    leaf: PemRef
    key: PemRef | None
    chain: tuple[PemRef, ...]
    files: tuple[str, ...]
    """Every file the leaf was found in (a `cert.pem` and a `fullchain.pem` hold the same one)."""
    common_name: str
    fingerprint_sha256: str


@dataclass(frozen=True)
class BundleReport:
    """The fate of one bundle, or of one file that could not become a bundle."""

    outcome: BulkOutcome
    files: tuple[str, ...]
    common_name: str | None = None
    fingerprint_sha256: str | None = None
    certificate_id: str | None = None
    """The inventory id: the new certificate (imported) or the one already there (skipped)."""
    reason: str | None = None
    rule: str | None = None
    message: str | None = None
    warnings: tuple[str, ...] = ()
    source: str | None = None
    """Where it came from beyond the files: a certbot lineage name, an ACM ARN."""


@dataclass(frozen=True)
class BulkReport:
    """What a bulk import did: every bundle's report, and the files that held nothing to import."""

    source: str
    reports: tuple[BundleReport, ...]
    ignored: tuple[str, ...] = field(default=())
    """Files without certificates or keys (README, CSRs, ...): left alone, listed."""

    def of(self, outcome: BulkOutcome) -> tuple[BundleReport, ...]:
        """The reports with this outcome."""
        return tuple(r for r in self.reports if r.outcome is outcome)

    @property
    def counts(self) -> dict[str, int]:
        """How many bundles were imported, skipped and refused."""
        return {o.value: sum(1 for r in self.reports if r.outcome is o) for o in BulkOutcome}
