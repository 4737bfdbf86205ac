"""The `DeployTarget` Protocol, the material it deploys, and file/command helpers for adapters.

A deployment runs `stage → validate → commit → reload → (verify) → finalize | rollback`
(DEP-5, DEP-7). The private key never travels as data: `DeployMaterial.key` is an opener that
returns key bytes from the vault only when an adapter writes or uploads them, so nothing that
is logged, returned by a task or put in an exception holds it (CSR-5).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certpilot.childenv import child_env
from certpilot.core.errors import PermanentError, TransientError
from certpilot.crypto.pem import fingerprint
from certpilot.crypto.safefile import atomic_write as safe_write

KeyOpener = Callable[[], bytes]
"""Returns the PEM private key (from the vault) at the moment an adapter needs it."""


class DeployError(PermanentError):
    """A deployment step failed; `step` names it (stage, validate, commit, reload, rollback, finalize)."""

    def __init__(self, message: str, *, step: str):
        super().__init__(message)
        self.step = step


class TransientDeployError(TransientError):
    """A deployment step failed in a way a retry may fix (a timeout, throttling, a network error)."""

    def __init__(self, message: str, *, step: str):
        super().__init__(message)
        self.step = step


class RollbackImpossibleError(DeployError):
    """The previous certificate cannot be restored (e.g. ACM never returns an imported key)."""

    def __init__(self, message: str):
        super().__init__(message, step="rollback")


@dataclass(frozen=True, repr=False)
class DeployMaterial:
    """What a target deploys: the leaf, its intermediates, and a key *reference*.

    Attributes:
        certificate_id: the certificate's resource id.
        common_name: for messages.
        leaf_pem: the server certificate (PEM).
        chain_pems: the intermediates, leaf's issuer first, root excluded (DEP-6).
        fingerprint: the leaf's SHA-256 (lower-case hex), what verification looks for.
        not_after: the leaf's expiry (VER-1).
        key: opener of the private key PEM, or None when the system does not hold it (CSR-2).
    """

    certificate_id: str
    common_name: str
    leaf_pem: bytes
    chain_pems: tuple[bytes, ...]
    fingerprint: str
    not_after: datetime | None
    key: KeyOpener | None = None

    @property
    def chain_pem(self) -> bytes:
        """The intermediates concatenated (may be empty)."""
        return b"".join(_nl(p) for p in self.chain_pems)

    @property
    def fullchain_pem(self) -> bytes:
        """Leaf followed by every intermediate: the bundle a server must send (DEP-6)."""
        return _nl(self.leaf_pem) + self.chain_pem

    @property
    def has_key(self) -> bool:
        """True when the system holds the private key."""
        return self.key is not None

    def open_key(self) -> bytes:
        """The private key PEM, for an adapter to write or upload at once and forget.

        Raises:
            DeployError: the system does not hold the key (CSR-2).
        """
        if self.key is None:
            raise DeployError(f"certpilot does not hold the private key of {self.common_name} "
                              f"(id {self.certificate_id}); install it yourself", step="stage")
        return self.key()

    def __repr__(self) -> str:  # never the key, not even the opener
        return (f"DeployMaterial(certificate_id={self.certificate_id!r}, common_name={self.common_name!r}, "
                f"fingerprint={self.fingerprint[:16]!r}, chain={len(self.chain_pems)}, has_key={self.has_key})")

    @classmethod
    def from_pems(cls, certificate_id: str, fullchain_or_leaf: bytes, *, chain: bytes = b"",
                  key: KeyOpener | None = None) -> DeployMaterial:
        """Build material from PEM text: the first certificate is the leaf, the rest intermediates.

        Raises:
            DeployError: no certificate in the PEM.
        """
        certs = x509.load_pem_x509_certificates(fullchain_or_leaf + (b"\n" + chain if chain else b""))
        if not certs:
            raise DeployError(f"certificate {certificate_id} has no PEM certificate to deploy", step="stage")
        leaf, *rest = certs
        # A self-signed root is not sent by servers; drop it if the stored chain has one.
        rest = [c for c in rest if c.issuer != c.subject]
        pem = serialization.Encoding.PEM
        cns = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return cls(certificate_id=certificate_id, common_name=str(cns[0].value) if cns else certificate_id,
                   leaf_pem=leaf.public_bytes(pem), chain_pems=tuple(c.public_bytes(pem) for c in rest),
                   fingerprint=fingerprint(leaf), not_after=leaf.not_valid_after_utc, key=key)


def _nl(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


@runtime_checkable
class DeployTarget(Protocol):
    """One place a certificate is served from, driven step by step by `operations.deployments`.

    Every step raises `DeployError` (permanent) or `TransientDeployError` and says in its
    message what failed and what to do; none includes key material.
    """

    target_id: str

    def describe(self) -> str:
        """What an operator calls this target, e.g. "nginx at /etc/nginx (2 vhost files)"."""
        ...

    def stage(self, material: DeployMaterial) -> None:
        """Put the new material beside the old one and remember the old for rollback; serve nothing new."""
        ...

    def validate(self) -> None:
        """Run the target's own check on the staged material (e.g. `nginx -t`)."""
        ...

    def commit(self) -> None:
        """Make the new material the target's (atomic swap)."""
        ...

    def reload(self) -> None:
        """Make the server pick up the committed material (DEP-5); a no-op where it is immediate."""
        ...

    def rollback(self) -> None:
        """Restore what was there before `stage` and make the server serve it again (DEP-7).

        Raises `RollbackImpossibleError` when the previous material cannot be restored.
        """
        ...

    def finalize(self) -> None:
        """After verification: drop what is only kept for rollback (old listener certificate, backups)."""
        ...


# ---------------------------------------------------------------------------- helpers


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically with `mode` from the first byte on (`crypto.safefile.atomic_write`:
    an unpredictable O_EXCL|O_NOFOLLOW temp file beside it, the directory's owner and mode checked).

    Raises:
        UnsafeLocationError: the directory is a symlink, another user's, or group/world writable.
    """
    safe_write(path, data, mode=mode)


def run_command(argv: Sequence[str], *, step: str, timeout: float, what: str) -> str:
    """Run `argv` (no shell) with a timeout; return its combined output.

    The command (nginx -t, a reload, a post-deploy command) gets an allow-listed environment
    (`certpilot.childenv.child_env`: PATH, HOME, the locale...), never this process's: no master
    key, cloud credential or API token of a worker reaches it.

    Raises:
        DeployError: non-zero exit (the output's tail is in the message) or binary missing.
        TransientDeployError: the command timed out.
    """
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                              env=child_env())
    except FileNotFoundError as exc:
        raise DeployError(f"{what}: command {argv[0]!r} not found; fix the target's configuration",
                          step=step) from exc
    except subprocess.TimeoutExpired as exc:
        raise TransientDeployError(f"{what}: `{' '.join(argv)}` did not finish within {timeout:g}s",
                                   step=step) from exc
    out = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        tail = out[-600:] if out else "(no output)"
        raise DeployError(f"{what}: `{' '.join(argv)}` exited {done.returncode}: {tail}", step=step)
    return out


def key_matches_certificate(leaf_pem: bytes, key_pem: bytes) -> bool:
    """True when the private key's public half is the certificate's public key."""
    cert = x509.load_pem_x509_certificate(leaf_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
