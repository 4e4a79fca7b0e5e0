"""Generation records: what we know about every image we signed, and their table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from provenance.engines import Database

_COLUMNS = (
    "id, generation_id, created_at, model, public_json, private_json, mime_type, width, height, "
    "sha256_signed, sha256_pixels, manifest_label, c2pa_sdk, thumbnail"
)


@dataclass(frozen=True)
class GenerationRecord:
    """One signed image. ``public`` may be shown to anyone; ``private`` needs scope ``read``."""

    generation_id: str
    created_at: str
    model: str
    public: dict[str, Any]
    private: dict[str, Any]
    mime_type: str
    width: int
    height: int
    sha256_signed: str
    sha256_pixels: str
    manifest_label: str
    c2pa_sdk: str
    thumbnail: bytes
    id: int = 0  # assigned by the store: the append-only sequence number


@dataclass(frozen=True)
class Tombstone:
    """What is kept of a deleted record: which generation it was, and when it was made and deleted."""

    generation_id: str
    created_at: str
    deleted_at: str


def _record(row: tuple[Any, ...]) -> GenerationRecord:
    (
        record_id,
        generation_id,
        created_at,
        model,
        public_json,
        private_json,
        mime_type,
        width,
        height,
        sha256_signed,
        sha256_pixels,
        manifest_label,
        c2pa_sdk,
        thumbnail,
    ) = row
    return GenerationRecord(
        generation_id=generation_id,
        created_at=created_at,
        model=model,
        public=json.loads(public_json),
        private=json.loads(private_json),
        mime_type=mime_type,
        width=width,
        height=height,
        sha256_signed=sha256_signed,
        sha256_pixels=sha256_pixels,
        manifest_label=manifest_label,
        c2pa_sdk=c2pa_sdk,
        thumbnail=bytes(thumbnail),
        id=record_id,
    )


class RecordStore:
    """Reads and writes generation records on a caller-owned connection."""

    def __init__(self, connection: Database) -> None:
        self._db = connection

    def add(self, record: GenerationRecord) -> int:
        """Insert inside the caller's open transaction; returns the record's sequence id."""
        cursor = self._db.execute(
            f"INSERT INTO records ({_COLUMNS.removeprefix('id, ')}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                record.generation_id,
                record.created_at,
                record.model,
                json.dumps(record.public, sort_keys=True),
                json.dumps(record.private, sort_keys=True),
                record.mime_type,
                record.width,
                record.height,
                record.sha256_signed,
                record.sha256_pixels,
                record.manifest_label,
                record.c2pa_sdk,
                record.thumbnail,
            ),
        )
        return int(cursor.fetchone()[0])

    def _one(self, where: str, value: object) -> GenerationRecord | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM records WHERE {where} = ? LIMIT 1", (value,)
        ).fetchone()
        return _record(row) if row else None

    def by_id(self, record_id: int) -> GenerationRecord | None:
        return self._one("id", record_id)

    def by_generation_id(self, generation_id: str) -> GenerationRecord | None:
        return self._one("generation_id", generation_id)

    def by_signed_sha256(self, digest: str) -> GenerationRecord | None:
        return self._one("sha256_signed", digest)

    def by_pixels_sha256(self, digest: str) -> GenerationRecord | None:
        return self._one("sha256_pixels", digest)

    def add_manifest_store(self, record_id: int, data: bytes) -> None:
        """Store the record's C2PA manifest store inside the caller's open transaction."""
        self._db.execute("INSERT INTO manifest_stores (record_id, data) VALUES (?, ?)", (record_id, data))

    def manifest_store(self, record_id: int) -> bytes | None:
        """The manifest store embedded in the record's signed image; None for older records."""
        row = self._db.execute(
            "SELECT data FROM manifest_stores WHERE record_id = ?", (record_id,)
        ).fetchone()
        return bytes(row[0]) if row else None

    def has_manifest_store(self, record_id: int) -> bool:
        row = self._db.execute("SELECT 1 FROM manifest_stores WHERE record_id = ?", (record_id,)).fetchone()
        return row is not None

    def delete(self, record: GenerationRecord, deleted_at: str) -> Tombstone:
        """Replace the record and its manifest store with a tombstone, inside the caller's open
        transaction (provenance.deletion removes the fingerprints in the same one)."""
        self._db.execute("DELETE FROM manifest_stores WHERE record_id = ?", (record.id,))
        self._db.execute("DELETE FROM records WHERE id = ?", (record.id,))
        tombstone = Tombstone(record.generation_id, record.created_at, deleted_at)
        self._db.execute(
            "INSERT INTO tombstones (generation_id, created_at, deleted_at) VALUES (?, ?, ?)",
            (tombstone.generation_id, tombstone.created_at, tombstone.deleted_at),
        )
        return tombstone

    def tombstone(self, generation_id: str) -> Tombstone | None:
        row = self._db.execute(
            "SELECT generation_id, created_at, deleted_at FROM tombstones WHERE generation_id = ?",
            (generation_id,),
        ).fetchone()
        return Tombstone(*row) if row else None

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    def last_id(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0])
