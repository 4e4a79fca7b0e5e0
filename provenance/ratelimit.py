"""Per-client limits on verification, shared by every worker process of one data directory.

A verify costs 0.05-0.4 s of a core, and an unlimited one would let anyone use the index as an
oracle: edit a picture until it no longer matches (DESIGN.md). Each client has a token bucket
holding up to a minute's allowance and refilled at that rate, so a burst of a minute's worth
is served at once and a steady client at the allowed pace. The buckets live in their own
SQLite file, without fsync: after a crash a client at worst gets a fresh allowance (a torn
file is dropped at start), and the record store's durability is untouched. With a PostgreSQL
store they live there, shared by every host, in an UNLOGGED table for the same reasons (no WAL
written; emptied after a crash).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from provenance.engines import Database, SqliteDatabase, connect_postgres

_SCHEMA = (
    "CREATE {unlogged}TABLE IF NOT EXISTS buckets"
    " (client TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL)"
)
logger = logging.getLogger(__name__)
_PRUNE_EVERY = 256  # takes between deletions of buckets that have refilled (idle clients)


def _open(path: Path) -> Database:
    connection = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute(_SCHEMA.format(unlogged=""))
    except sqlite3.DatabaseError:
        connection.close()
        raise
    return SqliteDatabase(connection)


def _open_postgres(url: str) -> Database:
    connection = connect_postgres(url)
    with connection:
        connection.begin_locked("rate-limit schema")  # hosts starting together would collide
        connection.execute(_SCHEMA.format(unlogged="UNLOGGED "))
    return connection


class RateLimiter:
    """Token buckets by client name; thread-safe, and process-safe through the database's locks."""

    def __init__(self, store: Path | str) -> None:
        """``store``: the SQLite file of the buckets, or the PostgreSQL store's URL."""
        # On PostgreSQL each take borrows a pooled connection: one held for the process's life
        # would die with a database restart or failover and fail every later take.
        self._url = store if isinstance(store, str) else None
        self._connection = _open_postgres(store) if isinstance(store, str) else self._open_file(store)
        if self._url is not None:
            self._connection.close()
        self._lock = threading.Lock()
        self._takes = 0

    @staticmethod
    def _open_file(path: Path) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _open(path)
        except sqlite3.DatabaseError:
            # Without fsync an operating-system crash can leave the file torn. Its buckets are
            # worth nothing next to a service that starts: begin again with full allowances.
            logger.warning("rate-limit state at %s is unreadable; starting afresh", path)
            for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                stale.unlink(missing_ok=True)
            return _open(path)

    def close(self) -> None:
        if self._url is None:
            self._connection.close()

    @contextlib.contextmanager
    def _database(self) -> Iterator[Database]:
        if self._url is None:
            yield self._connection
            return
        with contextlib.closing(connect_postgres(self._url)) as connection:
            yield connection

    def take(self, client: str, count: int, per_minute: int, now: float | None = None) -> float:
        """Take ``count`` verifications from ``client``'s allowance of ``per_minute``; returns 0
        when they were taken, else the seconds until they could be (nothing is taken then). A
        request for more than a minute's allowance waits for, and empties, a full bucket."""
        now = time.time() if now is None else now
        count = min(count, per_minute)
        rate = per_minute / 60.0
        with self._lock, self._database() as connection:
            connection.begin_locked(f"rate limit {client}")
            try:
                row = connection.execute(
                    "SELECT tokens, updated FROM buckets WHERE client = ?", (client,)
                ).fetchone()
                tokens = float(per_minute) if row is None else min(per_minute, row[0] + (now - row[1]) * rate)
                wait = 0.0 if tokens >= count else (count - tokens) / rate
                if wait == 0.0:
                    connection.execute(
                        "INSERT INTO buckets (client, tokens, updated) VALUES (?, ?, ?) ON CONFLICT"
                        " (client) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
                        (client, tokens - count, now),
                    )
                self._takes += 1
                if self._takes % _PRUNE_EVERY == 0:
                    # Idle for a minute, a bucket is full again: the same as no row at all.
                    connection.execute("DELETE FROM buckets WHERE updated < ?", (now - 60.0,))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return wait
