"""Idempotency keys for registration: a retried request gets the first answer, not a second record.

Semantics after the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header): a key is scoped to its owner (the API key, or the
CLI); the same key with the same request answers what the first request answered (same
generation id, same signed bytes); the same key with a different request is refused; a key is
kept for a stated time, then forgotten. The key's row commits in the record's transaction, so a
crash leaves both or neither.

To answer again we keep what the signed image adds to the upload, not the image: a retry carries
the same upload (its hash is part of the request's fingerprint), and c2pa embeds a manifest by
inserting it, so the upload's runs plus the ~4 KB c2pa wrote rebuild the signed bytes. Rows are
dropped when they expire.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from provenance.engines import Database

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


_SYNC_BYTES = 64  # a run of the upload this long, found again in the signed file, resumes copying
_SYNC_SKIPS = (*range(17), 32, 64, 128, 256, 512, 1024, 2048, 4096)  # upload bytes the signer replaced
_OP = struct.Struct("<QQQ")  # upload offset, bytes copied from there, literal bytes that follow


def _same_run(a: bytes, start_a: int, b: bytes, start_b: int, block: int = 1 << 16) -> int:
    """How many bytes a[start_a:] and b[start_b:] have in common at their start."""
    size = min(len(a) - start_a, len(b) - start_b)
    # Block by block: comparing whole files would allocate a flag per byte after the difference.
    for done in range(0, size, block):
        count = min(block, size - done)
        left = np.frombuffer(a, np.uint8, count, start_a + done)
        right = np.frombuffer(b, np.uint8, count, start_b + done)
        differ = left != right
        if differ.any():
            return done + int(differ.argmax())
    return size


def _resync(original: bytes, at: int, signed: bytes, start: int) -> tuple[int, int] | None:
    """Where copying from the upload can resume after a difference: (upload, signed) offsets."""
    for skip in _SYNC_SKIPS:
        needle = original[at + skip : at + skip + _SYNC_BYTES]
        if len(needle) < _SYNC_BYTES:
            return None
        found = signed.find(needle, start)
        if found >= 0:
            return at + skip, found
    return None


@dataclass(frozen=True)
class SignedDelta:
    """The signed image as runs copied from the upload, each followed by bytes the signer wrote.

    c2pa inserts the manifest into a JPEG or PNG and appends it to a WebP whose RIFF size it
    rewrites, so a signed file is the upload plus one or two short edits.
    """

    ops: tuple[tuple[int, int, bytes], ...]

    @classmethod
    def between(cls, original: bytes, signed: bytes) -> SignedDelta:
        ops = []
        at = done = 0  # offsets in the upload and in the signed file
        while done < len(signed):
            run = _same_run(original, at, signed, done)
            sync = _resync(original, at + run, signed, done + run)
            end, resume = (len(signed), at + run) if sync is None else (sync[1], sync[0])
            ops.append((at, run, signed[done + run : end]))
            at, done = resume, end
        return cls(tuple(ops))

    def apply(self, original: bytes) -> bytes:
        return b"".join(original[at : at + run] + literal for at, run, literal in self.ops)

    def encode(self) -> bytes:
        return b"".join(_OP.pack(at, run, len(literal)) + literal for at, run, literal in self.ops)

    @classmethod
    def decode(cls, data: bytes) -> SignedDelta:
        ops, offset = [], 0
        while offset < len(data):
            at, run, size = _OP.unpack_from(data, offset)
            offset += _OP.size
            ops.append((at, run, data[offset : offset + size]))
            offset += size
        return cls(tuple(ops))


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

    def __init__(self, connection: Database) -> None:
        self._db = connection

    def find(self, key: IdempotencyKey, now: datetime) -> StoredAnswer | None:
        """The answer kept for an unexpired key, or None."""
        row = self._db.execute(
            "SELECT request_sha256, generation_id, signed_delta "
            "FROM idempotency_keys WHERE owner = ? AND idempotency_key = ? AND expires_at > ?",
            (key.owner, key.key, _stamp(now)),
        ).fetchone()
        if row is None:
            return None
        return StoredAnswer(row[0], row[1], SignedDelta.decode(bytes(row[2])))

    def forget(self, generation_id: str) -> None:
        """Drop the keys that answer with a generation being deleted, inside the caller's
        transaction: their deltas hold its manifest, and a retry afterwards registers anew."""
        self._db.execute("DELETE FROM idempotency_keys WHERE generation_id = ?", (generation_id,))

    def claim(self, key: IdempotencyKey, answer: StoredAnswer, now: datetime, keep_for: timedelta) -> bool:
        """Inside the caller's transaction, drop expired keys and take this one; False when another
        request holds it (the caller then writes no record and answers with what that one stored)."""
        self._db.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (_stamp(now),))
        cursor = self._db.execute(
            "INSERT INTO idempotency_keys (owner, idempotency_key, request_sha256, generation_id, "
            "signed_delta, expires_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (owner, idempotency_key) DO NOTHING",
            (
                key.owner,
                key.key,
                answer.request_sha256,
                answer.generation_id,
                answer.delta.encode(),
                _stamp(now + keep_for),
            ),
        )
        return cursor.rowcount == 1
