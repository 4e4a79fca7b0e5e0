"""Deleting a generation: its record, previews, manifest store and fingerprints, leaving a tombstone."""

from __future__ import annotations

from datetime import UTC, datetime

from index import FingerprintStore
from provenance.engines import Database
from provenance.errors import NotFound
from provenance.idempotency import IdempotencyStore
from provenance.records import RecordStore, Tombstone


def delete_generation(connection: Database, generation_id: str) -> Tombstone:
    """Delete everything we hold about a generation but its tombstone, in one transaction.

    Every process's index drops the record's vectors when it next catches up (before its next
    search), from the removal log this writes; ``index rebuild`` never sees the fingerprints again.

    Raises:
        NotFound: no such generation, or it was deleted before (the detail says when).
    """
    with connection:
        connection.execute("BEGIN IMMEDIATE")
        records = RecordStore(connection)
        record = records.by_generation_id(generation_id)
        if record is None:
            earlier = records.tombstone(generation_id)
            if earlier is not None:
                raise NotFound(f"generation {generation_id} was deleted at {earlier.deleted_at}")
            raise NotFound(f"no generation with id {generation_id}")
        tombstone = records.delete(record, datetime.now(UTC).isoformat(timespec="milliseconds"))
        FingerprintStore(connection).remove(record.id)
        IdempotencyStore(connection).forget(record.generation_id)
    return tombstone
