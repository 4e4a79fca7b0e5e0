"""Idempotency keys for registration: a retried request gets the first answer, not a second record.

Semantics after the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header): a key is scoped to its owner (the API key, or the
CLI); the same key with the same request answers what the first request answered (same
generation id, same signed bytes); the same key with a different request is refused; a key is
kept for a stated time, then forgotten. The key's row commits in the record's transaction, so a
crash leaves both or neither.

To answer again we keep what the signed image adds to the upload, not the image: a retry carries
the same upload (its hash is part of the request's fingerprint), and c2pa embeds a manifest by
inserting it, so for JPEG and PNG the common head and tail of the two files plus the ~4 KB
between them rebuild the signed bytes. WebP's RIFF header changes, so there the delta is the
whole file; rows are dropped when they expire.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

MAX_KEY_LENGTH = 255
CLI_OWNER = "cli"


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's key and whose it is."""

    owner: str
    key: str

    @classmethod
    def from_header(cls, owner: str, value: str) -> IdempotencyKey:
        """Parse the header: an RFC 8941 string (``"..."``, as the draft writes it) or a bare token.

        Raises:
            ValueError: empty, longer than MAX_KEY_LENGTH, or not printable ASCII.
        """
        key = value.strip()
        if len(key) >= 2 and key[0] == key[-1] == '"':
            key = key[1:-1]
            if "\\" in key or '"' in key:
                raise ValueError("the Idempotency-Key string must not contain escapes")
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise ValueError(f"the Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
        if not all(" " <= c <= "~" for c in key):
            raise ValueError("the Idempotency-Key must be printable ASCII")
        return cls(owner, key)


def request_sha256(data: bytes, metadata_json: str, filename: str) -> str:
    """The request's fingerprint: everything that shapes the signed image and the record."""
    digest = hashlib.sha256()
    for part in (data, metadata_json.encode(), filename.encode()):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed, so parts cannot run together
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class SignedDelta:
    """The signed image as the upload with ``middle`` in place of all but its head and tail."""

    prefix: int
    suffix: int
    middle: bytes

    @classmethod
    def between(cls, original: bytes, signed: bytes) -> SignedDelta:
        limit = min(len(original), len(signed))
        a = np.frombuffer(original, np.uint8)
        b = np.frombuffer(signed, np.uint8)
        differ = np.flatnonzero(a[:limit] != b[:limit])
        prefix = int(differ[0]) if differ.size else limit
        tail = limit - prefix  # the tail may not reach back into the head
        differ = np.flatnonzero(a[len(a) - tail :] != b[len(b) - tail :])
        suffix = tail - int(differ[-1]) - 1 if differ.size else tail
        return cls(prefix, suffix, signed[prefix : len(signed) - suffix])

    def apply(self, original: bytes) -> bytes:
        return original[: self.prefix] + self.middle + original[len(original) - self.suffix :]


@dataclass(frozen=True)
class StoredAnswer:
    """What the first request with a key answered."""

    request_sha256: str
    generation_id: str
    delta: SignedDelta


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class IdempotencyStore:
    """The idempotency_keys table on a caller-owned connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def find(self, key: IdempotencyKey, now: datetime) -> StoredAnswer | None:
        """The answer kept for an unexpired key, or None."""
        row = self._db.execute(
            "SELECT request_sha256, generation_id, signed_prefix, signed_suffix, signed_middle "
            "FROM idempotency_keys WHERE owner = ? AND idempotency_key = ? AND expires_at > ?",
            (key.owner, key.key, _stamp(now)),
        ).fetchone()
        if row is None:
            return None
        return StoredAnswer(row[0], row[1], SignedDelta(row[2], row[3], bytes(row[4])))

    def claim(self, key: IdempotencyKey, answer: StoredAnswer, now: datetime, keep_for: timedelta) -> bool:
        """Inside the caller's transaction, drop expired keys and take this one; False when another
        request holds it (the caller then writes no record and answers with what that one stored)."""
        self._db.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (_stamp(now),))
        cursor = self._db.execute(
            "INSERT INTO idempotency_keys (owner, idempotency_key, request_sha256, generation_id, "
            "signed_prefix, signed_suffix, signed_middle, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (owner, idempotency_key) DO NOTHING",
            (
                key.owner,
                key.key,
                answer.request_sha256,
                answer.generation_id,
                answer.delta.prefix,
                answer.delta.suffix,
                answer.delta.middle,
                _stamp(now + keep_for),
            ),
        )
        return cursor.rowcount == 1
