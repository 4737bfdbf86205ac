"""The key vault: private keys encrypted at rest with an AES-GCM envelope (CSR-5).

Each key gets a fresh random 256-bit data key (DEK). The DEK encrypts the key's PEM with
AES-GCM (12-byte random nonce, associated data binding the ciphertext to its key row); a
`MasterKeyProvider` wraps the DEK. The store keeps only the `SealedKey` (ciphertext, nonce,
wrapped DEK, provider name), never plaintext. The provider's name travels with every sealed
key so `open` picks the provider that sealed it (local master key today; AWS KMS from the
KMS part registers another provider).

Master key of the local provider: ``CERTPILOT_MASTER_KEY`` (base64 of 32 bytes) or the file
``$CERTPILOT_HOME/master.key`` (created 0600 on first use, refused when group/world readable).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certpilot.core.errors import PermanentError
from certpilot.crypto.process import no_core_dumps

if TYPE_CHECKING:
    from certpilot.settings import Settings

ENV_VAR = "CERTPILOT_MASTER_KEY"
KEY_FILE = "master.key"
NONCE_BYTES = 12
_WRAP_VERSION = b"\x01"
_WRAP_AAD = b"certpilot/dek-wrap/v1"
_GENERATE_HINT = ("generate one with `python -c \"import os,base64;"
                  "print(base64.b64encode(os.urandom(32)).decode())\"`")


class VaultError(PermanentError):
    """The vault cannot seal or open a key (wrong master key, bad configuration, altered data).

    Messages name files, providers and key ids, never key material.
    """


@dataclass(frozen=True)
class SealedKey:
    """A private key as stored: AES-GCM ciphertext, its nonce, the wrapped DEK and the provider."""

    ciphertext: bytes
    nonce: bytes
    wrapped_dek: bytes
    provider: str

    def __repr__(self) -> str:
        # Sizes only: even ciphertext is kept out of logs and tracebacks.
        return (f"SealedKey(provider={self.provider!r}, ciphertext={len(self.ciphertext)} bytes, "
                f"nonce={len(self.nonce)} bytes, wrapped_dek={len(self.wrapped_dek)} bytes)")

    __str__ = __repr__


@runtime_checkable
class MasterKeyProvider(Protocol):
    """Wraps and unwraps data keys. `name` is stored with each sealed key."""

    name: str

    def wrap(self, dek: bytes) -> bytes:
        """Encrypt a data key; returns an opaque blob."""
        ...

    def unwrap(self, blob: bytes) -> bytes:
        """Decrypt a blob made by `wrap`; raises VaultError when this master key did not wrap it."""
        ...


def key_aad(public_fingerprint: str, purpose: str = "tls-key") -> bytes:
    """Associated data for a sealed key: binds the ciphertext to its key pair and purpose.

    A sealed blob copied onto another key row (another public fingerprint) no longer opens.
    """
    return f"certpilot/{purpose}/{public_fingerprint}".encode()


def _decode_master(value: str | bytes, source: str) -> bytes:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise VaultError(f"{source} is not valid base64: it must hold base64 of 32 random bytes; "
                         f"{_GENERATE_HINT}.") from None
    if len(key) != 32:
        raise VaultError(f"{source} decodes to {len(key)} bytes, not 32: it must hold base64 of 32 random "
                         f"bytes; {_GENERATE_HINT}.")
    return key


class LocalMasterKey:
    """A 256-bit master key held by this process; wraps DEKs with AES-GCM."""

    name = "local"

    def __init__(self, key: bytes, source: str = "the master key"):
        """Args: key: 32 random bytes. source: where it came from, for messages (never the key)."""
        if len(key) != 32:
            raise VaultError(f"{source} must be 32 bytes, got {len(key)}.")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"certpilot/master-key-id/" + key).hexdigest()[:8]
        """A short public id of the master key, so messages can tell two keys apart."""
        self.source = source

    def __repr__(self) -> str:
        return f"LocalMasterKey(key_id={self.key_id!r}, source={self.source!r})"

    @classmethod
    def from_base64(cls, value: str | bytes, source: str = ENV_VAR) -> LocalMasterKey:
        """Build from base64 text of 32 bytes (raises VaultError naming `source` when it is not)."""
        return cls(_decode_master(value, source), source)

    @classmethod
    def from_env_or_file(cls, home: str | Path | None = None, env: dict[str, str] | None = None
                         ) -> LocalMasterKey:
        """The master key from CERTPILOT_MASTER_KEY, else from `home`/master.key (created on first use).

        Args:
            home: the certpilot home directory (default: settings' home).
            env: environment to read (default os.environ).

        Raises:
            VaultError: the variable or file does not hold base64 of 32 bytes, or the file is
                readable by group or others.
        """
        env = os.environ if env is None else env
        if env.get(ENV_VAR):
            return cls.from_base64(env[ENV_VAR], ENV_VAR)
        if home is None:
            from certpilot.settings import get_settings

            home = get_settings().home
        return cls.from_file(Path(home) / KEY_FILE)

    @classmethod
    def from_file(cls, path: str | Path, *, create: bool = True) -> LocalMasterKey:
        """Read the master key file, creating it (mode 0600, random key) when it does not exist.

        The file is opened once (O_NOFOLLOW) and its owner and mode are checked on that open
        descriptor, then read from it: no window between the check and the read.

        Args:
            path: the key file.
            create: make a new key when the file does not exist (False: raise VaultError).

        Raises:
            VaultError: the file is a symlink, another user's, group/world accessible (chmod 600
                it), missing (`create=False`) or does not hold a key.
        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                raise VaultError(f"the master key file {path} does not exist.") from None
            _create_key_file(path)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise VaultError(f"the master key file {path} cannot be opened ({exc.strerror}); it must be a regular "
                             "file (not a symlink) readable by this user only.") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise VaultError(f"the master key file {path} is not a regular file.")
            if st.st_uid != os.geteuid():
                raise VaultError(f"the master key file {path} belongs to uid {st.st_uid}, not this user "
                                 f"({os.geteuid()}); `chown` it to the user certpilot runs as.")
            if st.st_mode & 0o077:
                raise VaultError(f"the master key file {path} is accessible by group or others (mode "
                                 f"{stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}` and try again.")
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        return cls(_decode_master(data, f"the master key file {path}"), str(path))

    @classmethod
    def generate(cls, source: str = "a new master key") -> tuple[LocalMasterKey, bytes]:
        """A fresh random master key and its base64 text (to be written 0600, never printed)."""
        raw = os.urandom(32)
        return cls(raw, source), base64.b64encode(raw) + b"\n"

    def owns(self, blob: bytes) -> bool:
        """True when this master key wrapped `blob` (its key id is in the blob: no decryption)."""
        return len(blob) > 5 and blob[:1] == _WRAP_VERSION and blob[1:5].hex() == self.key_id

    def wrap(self, dek: bytes) -> bytes:
        """Encrypt a DEK: version byte, key id, nonce, AES-GCM ciphertext."""
        nonce = os.urandom(NONCE_BYTES)
        return _WRAP_VERSION + bytes.fromhex(self.key_id) + nonce + self._aead.encrypt(nonce, dek, _WRAP_AAD)

    def unwrap(self, blob: bytes) -> bytes:
        """Decrypt a DEK wrapped by `wrap`.

        Raises:
            VaultError: another master key wrapped it (naming both key ids) or the blob was altered.
        """
        if len(blob) < 1 + 4 + NONCE_BYTES + 16 or blob[:1] != _WRAP_VERSION:
            raise VaultError("the sealed key's wrapped data key is malformed (not made by the local provider).")
        sealed_by = blob[1:5].hex()
        nonce, ct = blob[5:5 + NONCE_BYTES], blob[5 + NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ct, _WRAP_AAD)
        except InvalidTag:
            if sealed_by != self.key_id:
                raise VaultError(
                    f"the key was sealed under master key id {sealed_by} but the current master key "
                    f"({self.source}) has id {self.key_id}: restore the master key it was sealed with "
                    f"(CERTPILOT_MASTER_KEY or $CERTPILOT_HOME/{KEY_FILE})."
                ) from None
            raise VaultError("the sealed key's wrapped data key does not decrypt: the stored data was altered.") from None


class OfflineKey(LocalMasterKey):
    """A master key kept offline (a private CA's root): keys it sealed open nowhere online.

    Its provider name, "offline", tells rewrap and checks to leave such keys alone.
    """

    name = "offline"


OFFLINE = OfflineKey.name


def _create_key_file(path: Path) -> None:
    """Create `path` with a fresh random key, atomically and 0600 from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(os.urandom(32)) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic and exclusive: a concurrent first use keeps the winner's key
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


class KeyVault:
    """Seals and opens private keys with an AES-GCM envelope.

    `provider` seals; it and `others` open. Several providers may share a name (two local master
    keys during a rotation, two KMS keys during a move): `open` tries each provider of the sealed
    key's name, a local one only when the blob carries its key id.
    """

    def __init__(self, provider: MasterKeyProvider, *others: MasterKeyProvider):
        """Args: provider: seals new keys. others: extra providers that can still open old keys."""
        self.provider = provider
        self._all: list[MasterKeyProvider] = [provider, *[o for o in others if o is not provider]]

    @property
    def _providers(self) -> dict[str, MasterKeyProvider]:
        return {p.name: p for p in reversed(self._all)}

    @property
    def providers(self) -> tuple[MasterKeyProvider, ...]:
        """Every provider, the sealing one first."""
        return tuple(self._all)

    def __repr__(self) -> str:
        return f"KeyVault(provider={self.provider.name!r}, opens={[repr(p) for p in self._all]})"

    def seal(self, key_pem: bytes, aad: bytes) -> SealedKey:
        """Encrypt a private key's PEM under a fresh DEK wrapped by the provider.

        Args:
            key_pem: the private key (PEM bytes).
            aad: associated data (see `key_aad`): the same value is needed to open it.
        """
        no_core_dumps()  # this process now holds a key in memory
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(dek).encrypt(nonce, bytes(key_pem), aad)
        return SealedKey(ciphertext=ciphertext, nonce=nonce, wrapped_dek=self.provider.wrap(dek),
                         provider=self.provider.name)

    def _unwrap(self, sealed: SealedKey) -> tuple[bytes, MasterKeyProvider]:
        """The sealed key's DEK and the provider that unwrapped it.

        Raises:
            VaultError: no configured provider of that name unwraps it (the last one's reason).
        """
        candidates = [p for p in self._all if p.name == sealed.provider]
        if not candidates:
            raise VaultError(f"the key was sealed by provider '{sealed.provider}', which is not configured "
                             f"(configured: {', '.join(sorted({p.name for p in self._all}))}); configure it to "
                             "open this key.")
        owners = [p for p in candidates if getattr(p, "owns", None) and p.owns(sealed.wrapped_dek)]
        error: VaultError | None = None
        for provider in owners or candidates:
            try:
                return provider.unwrap(sealed.wrapped_dek), provider
            except VaultError as exc:
                error = exc
        assert error is not None
        raise error

    def open(self, sealed: SealedKey, aad: bytes) -> bytes:
        """Decrypt a sealed key back to its PEM.

        Raises:
            VaultError: the provider that sealed it is not configured, the master key differs,
                or the aad does not match (the blob belongs to another key or was altered).
        """
        no_core_dumps()  # this process is about to hold a key in memory
        dek, _ = self._unwrap(sealed)
        try:
            return AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, aad)
        except InvalidTag:
            raise VaultError("the sealed key does not open with this associated data: it belongs to another key "
                             "or was altered.") from None

    def sealed_by_current(self, sealed: SealedKey) -> bool:
        """True when the sealing provider itself unwraps `sealed` (nothing to rewrap)."""
        if sealed.provider != self.provider.name:
            return False
        owns = getattr(self.provider, "owns", None)
        if owns is not None:
            return owns(sealed.wrapped_dek)
        try:
            self.provider.unwrap(sealed.wrapped_dek)
        except VaultError:
            return False
        return True

    def rewrap(self, sealed: SealedKey) -> SealedKey:
        """The same sealed key with its DEK wrapped by the sealing provider (ciphertext unchanged).

        The private key itself is never decrypted: only its 32-byte data key is unwrapped by the
        provider that sealed it and wrapped again by the current one. A key already sealed by
        the current provider comes back as it is.

        Raises:
            VaultError: no configured provider unwraps it.
        """
        no_core_dumps()
        if self.sealed_by_current(sealed):
            return sealed
        dek, _ = self._unwrap(sealed)
        return SealedKey(ciphertext=sealed.ciphertext, nonce=sealed.nonce, wrapped_dek=self.provider.wrap(dek),
                         provider=self.provider.name)


def default_vault(settings: Settings | None = None) -> KeyVault:
    """The vault of this process: the local master key from settings (env value or home file).

    Raises:
        VaultError: the configured master key is invalid or its file is not 0600.
    """
    if settings is None:
        from certpilot.settings import get_settings

        settings = get_settings()
    if settings.master_key is not None:
        return KeyVault(LocalMasterKey.from_base64(settings.master_key.get_secret_value(), ENV_VAR),
                        *rotation_keys(Path(settings.home)))
    return KeyVault(LocalMasterKey.from_file(Path(settings.home) / KEY_FILE), *rotation_keys(Path(settings.home)))


NEXT_KEY_FILE = "master.key.next"
"""A rotation's new master key, written before any key is rewrapped to it (`certpilot vault rotate`)."""
RETIRED_PREFIX = "master.key.retired-"
"""A rotation's old master key, kept (0600) after the swap until `certpilot vault retire` removes it."""


def rotation_keys(home: Path) -> list[LocalMasterKey]:
    """The master keys of a rotation under `home` (the next one, retired ones): they open, never seal.

    Every process opens with them, so a key rewrapped by a rotation, or sealed by a process
    that still had the old master key, opens whatever step the rotation stopped at.

    Raises:
        VaultError: one of them is not a safe 0600 file of this user holding a key.
    """
    try:
        names = sorted(os.listdir(home))
    except FileNotFoundError:
        return []
    return [LocalMasterKey.from_file(home / n, create=False) for n in names
            if n == NEXT_KEY_FILE or (n.startswith(RETIRED_PREFIX) and not n.endswith(".tmp"))]


def local_keys_present(settings: Settings | None = None) -> list[LocalMasterKey]:
    """The local master keys this host has (env value, key file, rotation files), none created.

    For a KMS vault moving from the local key: they open what they sealed, never seal.
    """
    if settings is None:
        from certpilot.settings import get_settings

        settings = get_settings()
    keys: list[LocalMasterKey] = []
    if settings.master_key is not None:
        keys.append(LocalMasterKey.from_base64(settings.master_key.get_secret_value(), ENV_VAR))
    path = Path(settings.home) / KEY_FILE
    if path.exists():
        keys.append(LocalMasterKey.from_file(path, create=False))
    return keys + rotation_keys(Path(settings.home))
