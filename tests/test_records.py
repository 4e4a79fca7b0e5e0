"""Generation records on their own: what the store keeps, finds and leaves behind on deletion."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from provenance import db
from provenance.config import Settings
from provenance.engines import Database
from provenance.records import GenerationRecord, RecordStore


@pytest.fixture
def connection(settings: Settings) -> Iterator[Database]:
    with contextlib.closing(db.open_database(settings.database)) as opened:
        yield opened


def record(n: int) -> GenerationRecord:
    return GenerationRecord(
        generation_id=f"00000000-0000-4000-8000-{n:012d}",
        created_at=f"2026-12-0{n}T00:00:00.000+00:00",
        model="m",
        public={"prompt_id": n},
        private={"user": f"u{n}"},
        mime_type="image/jpeg",
        width=640,
        height=480,
        sha256_signed=f"{n:064x}",
        sha256_pixels=f"{n + 100:064x}",
        manifest_label=f"urn:c2pa:{n}",
        c2pa_sdk="test",
        thumbnail=bytes([n]) * 10,
    )


def test_a_record_is_found_by_each_of_its_keys_as_it_was_stored(connection: Database) -> None:
    store = RecordStore(connection)
    with connection:
        first, second = store.add(record(1)), store.add(record(2))
    assert second > first and store.last_id() == second and store.count() == 2
    stored = store.by_id(second)
    assert stored is not None and stored.id == second
    assert stored == GenerationRecord(**{**record(2).__dict__, "id": second})
    assert store.by_generation_id(record(2).generation_id) == stored
    assert store.by_signed_sha256(record(2).sha256_signed) == stored
    assert store.by_pixels_sha256(record(2).sha256_pixels) == stored
    assert store.by_generation_id("no-such-id") is None and store.by_id(second + 1) is None


def test_a_manifest_store_is_kept_with_its_record(connection: Database) -> None:
    store = RecordStore(connection)
    with connection:
        record_id = store.add(record(1))
        store.add_manifest_store(record_id, b"jumbf")
    assert store.has_manifest_store(record_id) and store.manifest_store(record_id) == b"jumbf"


def test_deleting_leaves_only_a_tombstone(connection: Database) -> None:
    store = RecordStore(connection)
    with connection:
        record_id = store.add(record(3))
        store.add_manifest_store(record_id, b"jumbf")
    stored = store.by_id(record_id)
    assert stored is not None
    with connection:
        tombstone = store.delete(stored, "2026-12-04T00:00:00.000+00:00")
    assert store.by_id(record_id) is None and not store.has_manifest_store(record_id)
    assert store.tombstone(stored.generation_id) == tombstone
    assert (tombstone.created_at, tombstone.deleted_at) == (
        stored.created_at,
        "2026-12-04T00:00:00.000+00:00",
    )
    assert store.tombstone(record(1).generation_id) is None
