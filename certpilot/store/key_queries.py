"""Queries over the sealed keys for key custody (rewrap, backup verification): ids, one row, a swap.

Only the store layer touches the `keys` table; these return plain values and `SealedKey`s.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from certpilot.store.tables import KeyRow


def key_ids(session: Session) -> list[str]:
    """Every stored key's id, in id order."""
    return list(session.scalars(select(KeyRow.id).order_by(KeyRow.id)))


def sealed_with_fingerprint(session: Session, key_id: str):
    """`(SealedKey, public_fingerprint)` of one key, or None when it is gone."""
    from certpilot.crypto.vault import SealedKey

    row = session.get(KeyRow, key_id)
    if row is None:
        return None
    return (SealedKey(ciphertext=row.ciphertext, nonce=row.nonce, wrapped_dek=row.wrapped_dek,
                      provider=row.provider), row.public_fingerprint)


def swap_wrapped_dek(session: Session, key_id: str, *, expected: bytes, wrapped_dek: bytes, provider: str) -> bool:
    """Replace a key's wrapped data key only if it is still `expected` (compare-and-swap).

    Returns:
        True when this call changed the row (False: someone else rewrapped it first).
    """
    result = session.execute(update(KeyRow).where(KeyRow.id == key_id, KeyRow.wrapped_dek == expected)
                             .values(wrapped_dek=wrapped_dek, provider=provider))
    return result.rowcount == 1


def provider_counts(session: Session) -> dict[str, int]:
    """How many keys each provider name sealed."""
    from sqlalchemy import func

    return {p: n for p, n in session.execute(select(KeyRow.provider, func.count()).group_by(KeyRow.provider))}
