"""AWS KMS as the key vault's master key (a `MasterKeyProvider`, CSR-5).

The vault's envelope stays the same (a fresh AES-GCM data key per private key); KMS wraps and
unwraps the data key under a customer master key that never leaves KMS, bound to an encryption
context (a wrapped key used under another context does not open). The boto3 client is passed
in: blocks build it (credentials, region, endpoint); this module reads no settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certpilot.core.errors import TransientError
from certpilot.crypto.vault import VaultError

_TRANSIENT = frozenset({"ThrottlingException", "KMSInternalException", "DependencyTimeoutException",
                        "LimitExceededException", "RequestLimitExceeded", "ServiceUnavailable",
                        "InternalFailure"})


class KmsMasterKey:
    """Wraps data keys with an AWS KMS key (Encrypt/Decrypt, GenerateDataKey), with an encryption context."""

    name = "aws-kms"

    def __init__(self, client: Any, key_id: str, *, context: Mapping[str, str] | None = None):
        """Args:
            client: a boto3 KMS client.
            key_id: the KMS key id, ARN or alias (``alias/certpilot``).
            context: the encryption context bound to every wrapped key (default
                ``{"app": "certpilot", "purpose": "key-vault"}``); the same one is needed to unwrap.
        """
        self._client = client
        self.key_id = key_id
        self.context = dict(context or {"app": "certpilot", "purpose": "key-vault"})

    def __repr__(self) -> str:
        return f"KmsMasterKey(key_id={self.key_id!r}, context={self.context!r})"

    def _call(self, what: str, fn, **kwargs) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _TRANSIENT:
                raise TransientError(f"AWS KMS could not {what} ({code}); retry later") from None
            raise VaultError(f"AWS KMS refused to {what} with key {self.key_id} ({code}); check the key id, "
                             "its key policy and the encryption context") from None
        except EndpointConnectionError:
            raise TransientError(f"AWS KMS is unreachable to {what}; retry later") from None
        except BotoCoreError as exc:
            raise VaultError(f"AWS KMS call to {what} failed ({type(exc).__name__}); check the client's "
                             "credentials and region") from None

    def wrap(self, dek: bytes) -> bytes:
        """Encrypt a data key under the KMS key and the encryption context; returns the ciphertext blob.

        Raises:
            VaultError: KMS refuses (unknown key, disabled key, access denied).
            TransientError: throttling or KMS unavailable.
        """
        out = self._call("wrap a data key", self._client.encrypt, KeyId=self.key_id, Plaintext=bytes(dek),
                         EncryptionContext=self.context)
        return out["CiphertextBlob"]

    def unwrap(self, blob: bytes) -> bytes:
        """Decrypt a blob made by `wrap` (or `new_data_key`).

        Raises:
            VaultError: another key or another encryption context wrapped it, or access is denied.
            TransientError: throttling or KMS unavailable.
        """
        out = self._call("unwrap a data key", self._client.decrypt, CiphertextBlob=bytes(blob),
                         KeyId=self.key_id, EncryptionContext=self.context)
        return out["Plaintext"]

    def new_data_key(self) -> tuple[bytes, bytes]:
        """A fresh 256-bit data key from KMS: `(plaintext, wrapped)` (KMS's own envelope helper)."""
        out = self._call("generate a data key", self._client.generate_data_key, KeyId=self.key_id,
                         KeySpec="AES_256", EncryptionContext=self.context)
        return out["Plaintext"], out["CiphertextBlob"]
