"""Connections to the record store (SQLite or PostgreSQL) and the schema, applied as ordered,
named migrations: one schema in SQLite's SQL, which provenance.engines translates for PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from index import FingerprintStore
from provenance.engines import Database, close_pools, connect

__all__ = ["MIGRATIONS", "Database", "close_pools", "connect", "migrate", "open_database"]

_RECORDS = """
CREATE TABLE records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- the append-only sequence the indexes tail
    generation_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    model TEXT NOT NULL,
    public_json TEXT NOT NULL,
    private_json TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    sha256_signed TEXT NOT NULL,
    sha256_pixels TEXT NOT NULL,
    manifest_label TEXT NOT NULL,
    c2pa_sdk TEXT NOT NULL,
    thumbnail BLOB NOT NULL
);
CREATE INDEX records_sha256_signed ON records (sha256_signed);
CREATE INDEX records_sha256_pixels ON records (sha256_pixels);
"""

_API_KEYS = """
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

# The manifest store exactly as embedded in the signed image, served by the Soft Binding
# Resolution API. Its own table keeps the records rows that every match reads small; records
# registered before this migration have no row and answer 404 there.
_MANIFEST_STORES = """
CREATE TABLE manifest_stores (
    record_id INTEGER PRIMARY KEY REFERENCES records (id),
    data BLOB NOT NULL
);
"""

# Every leaf certificate we signed with (provenance.signers). Serials are decimal text: c2pa
# reports them so, and they exceed 64 bits.
_SIGNERS = """
CREATE TABLE signers (
    serial TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    not_after TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('current', 'retired', 'revoked')),
    added_at TEXT NOT NULL,
    revoked_from TEXT,
    certificate_pem TEXT NOT NULL
);
"""

# Idempotency keys of registrations (provenance.idempotency), committed in the record's own
# transaction. No foreign key: the row is written before the record it names, so that the
# primary key stops a concurrent duplicate before it writes anything. Times are ISO 8601 UTC text
# of one fixed width, so they compare as strings in any database.
_IDEMPOTENCY_KEYS = """
CREATE TABLE idempotency_keys (
    owner TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    signed_delta BLOB NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (owner, idempotency_key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
"""

# A deleted record leaves only this: enough to answer a copy still carrying our Trusted manifest
# with "signed by us; the record was deleted". The removal log lets every process's index drop
# the record's vectors (index.store).
_DELETIONS = f"""
CREATE TABLE tombstones (
    generation_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    deleted_at TEXT NOT NULL
);
{FingerprintStore.REMOVALS_SCHEMA}
"""


def _statements(script: str) -> Callable[[Database], None]:
    # executescript() would commit the migration's transaction half-way; run statements one by one.
    def apply(connection: Database) -> None:
        for statement in script.split(";"):
            if statement.strip():
                connection.execute(statement)

    return apply


MIGRATIONS: list[tuple[str, Callable[[Database], None]]] = [
    ("0001_records", _statements(_RECORDS)),
    ("0002_fingerprints", _statements(FingerprintStore.SCHEMA)),
    ("0003_api_keys", _statements(_API_KEYS)),
    ("0004_manifest_stores", _statements(_MANIFEST_STORES)),
    ("0005_signers", _statements(_SIGNERS)),
    ("0006_idempotency_keys", _statements(_IDEMPOTENCY_KEYS)),
    ("0007_deletions", _statements(_DELETIONS)),
]


def migrate(connection: Database) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction holding the write lock, so
    hosts that start together apply each exactly once; returns the names applied here."""
    with connection:
        # Under the lock: two PostgreSQL sessions creating the same table at once collide.
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)")
    done = {row[0] for row in connection.execute("SELECT name FROM migrations")}
    applied = []
    for name, apply in MIGRATIONS:
        if name in done:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            if connection.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                connection.execute("ROLLBACK")  # another process got there first
                continue
            apply(connection)
            connection.execute("INSERT INTO migrations (name) VALUES (?)", (name,))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def open_database(target: Path | str) -> Database:
    """Connect (to a SQLite file's path or a PostgreSQL URL) and bring the schema up to date."""
    connection = connect(target)
    migrate(connection)
    return connection
