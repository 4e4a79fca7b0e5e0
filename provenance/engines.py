"""The two record-store engines behind one small interface: SQLite (embedded) and PostgreSQL (shared).

Everything above this module writes SQLite's SQL: ``?`` placeholders, BLOB / INTEGER / REAL
columns, ``INTEGER PRIMARY KEY`` ids, ``INSERT ... RETURNING``, ``BEGIN IMMEDIATE``. The
PostgreSQL adapter translates the few places where the engines differ, so one schema, one set of
migrations and one set of queries serve both, and no caller asks which engine it has.

Writers are serialised on both engines. SQLite has one write lock per database, taken by
``BEGIN IMMEDIATE``; on PostgreSQL that statement becomes ``BEGIN`` plus a transaction-scoped
advisory lock that every writer of the store takes. Record ids therefore commit in increasing
order on both: a sequence value handed to one transaction can never commit after a larger one
handed to another, so an index that tails ``id > last seen`` never skips a record.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
Pool = ConnectionPool[psycopg.Connection[Any]]
WRITES = "writes"  # the lock BEGIN IMMEDIATE takes: the one every writer of the store shares


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """A connection to the record store, in autocommit mode: ``BEGIN`` (or ``begin_locked``)
    opens a transaction and ``with database:`` commits it, or rolls it back on an exception."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> object: ...

    def begin_locked(self, name: str) -> None:
        """Open a transaction holding the write lock ``name`` until it ends."""

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def is_postgres(target: Path | str) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


class SqliteDatabase:
    """A sqlite3 connection in WAL mode. SQLite's SQL is the house dialect: nothing to translate."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> sqlite3.Cursor:
        return self.connection.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> sqlite3.Cursor:
        return self.connection.executemany(sql, parameters)

    def begin_locked(self, name: str) -> None:
        # One lock per database file: every name is the same lock.
        self.connection.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.connection.__exit__(kind, value, tb)


def _enable_wal(connection: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch a database to WAL once. The switch takes an exclusive lock without honouring the busy
    timeout, so processes that open a new database together retry it."""
    for _ in range(attempts):
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.1)
    raise sqlite3.OperationalError("could not switch the database to WAL: it stays locked")


def connect_sqlite(path: Path) -> SqliteDatabase:
    """A connection in WAL mode with explicit transactions and fsync on commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    _enable_wal(connection)
    connection.execute("PRAGMA synchronous = FULL")  # a returned signed image implies a durable record
    connection.execute("PRAGMA foreign_keys = ON")
    return SqliteDatabase(connection)


# -- PostgreSQL ------------------------------------------------------------------------------------

_DDL = re.compile(r"^\s*(CREATE|ALTER)\s+(UNLOGGED\s+)?TABLE\b", re.IGNORECASE)
_DDL_TYPES = [
    # SQLite's INTEGER PRIMARY KEY is the rowid: assigned when omitted, 64-bit.
    (
        re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b", re.I),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),  # SQLite integers are 64-bit
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),  # SQLite reals are 8 bytes
    (re.compile(r"\)\s*WITHOUT\s+ROWID\s*$", re.I), ")"),
]


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite's SQL as PostgreSQL takes it: ``?`` -> ``%s`` outside string literals (``%`` escaped
    for psycopg), and in CREATE/ALTER TABLE SQLite's column types and rowid ids."""
    if _DDL.match(sql):
        for pattern, replacement in _DDL_TYPES:
            sql = pattern.sub(replacement, sql)
    out, quoted = [], False
    for char in sql:
        if char == "'":
            quoted = not quoted
        if char == "%":
            out.append("%%")
        elif char == "?" and not quoted:
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a lock name, the same on every host."""
    return int.from_bytes(hashlib.sha256(f"provenance:{name}".encode()).digest()[:8], "big", signed=True)


class PostgresDatabase:
    """A psycopg connection (autocommit, from this process's pool) that takes SQLite's SQL."""

    def __init__(
        self, connection: psycopg.Connection[Any], pool: ConnectionPool[psycopg.Connection[Any]]
    ) -> None:
        self._connection: psycopg.Connection[Any] | None = connection
        self._pool = pool

    @property
    def connection(self) -> psycopg.Connection[Any]:
        if self._connection is None:
            raise psycopg.InterfaceError("the connection is closed")
        return self._connection

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        if sql.strip().upper() == "BEGIN IMMEDIATE":
            return self._begin(WRITES)
        return self.connection.execute(translate(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        cursor = self.connection.cursor()
        cursor.executemany(translate(sql), parameters)
        return cursor

    def begin_locked(self, name: str) -> None:
        self._begin(name)

    def _begin(self, name: str) -> psycopg.Cursor[Any]:
        # One round trip (the simple protocol takes two statements when there are no parameters):
        # every one spent holding the lock is one that every other writer waits for.
        return self.connection.execute(f"BEGIN; SELECT pg_advisory_xact_lock({lock_key(name)})")

    def close(self) -> None:
        """Give the connection back to the pool, which rolls back a transaction left open."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.putconn(connection)

    def __del__(self) -> None:
        # Callers written for sqlite3 often leave a connection to the garbage collector.
        if getattr(self, "_connection", None) is not None:
            self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.connection.info.transaction_status != TransactionStatus.IDLE:
            self.connection.execute("COMMIT" if kind is None else "ROLLBACK")


_pools: dict[tuple[str, int], Pool] = {}
_pools_lock = threading.Lock()
POOL_SIZE = 16
IDLE_IN_TRANSACTION = "30s"


def _configure(connection: psycopg.Connection[Any]) -> None:
    # A host that stops mid-transaction (paused, cut off) would hold the writers' lock until TCP
    # gave up on it; writers' transactions never wait on their client for more than moments.
    connection.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'")


def _pool(url: str) -> Pool:
    """This process's pool for ``url``: pools are created after fork, never inherited."""
    key = (url, os.getpid())
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=POOL_SIZE,
                kwargs={"autocommit": True},
                # A connection that died with a database restart or failover is replaced, not
                # handed to a request.
                check=ConnectionPool.check_connection,
                configure=_configure,
                open=True,
            )
            _pools[key] = pool
    return pool


def connect_postgres(url: str) -> PostgresDatabase:
    pool = _pool(url)
    return PostgresDatabase(pool.getconn(timeout=30), pool)


def close_pools() -> None:
    """Close this process's pools (before forking workers, and at the end of tests)."""
    with _pools_lock:
        mine = [key for key in _pools if key[1] == os.getpid()]
        pools = [_pools.pop(key) for key in mine]
    for pool in pools:
        pool.close()


def connect(target: Path | str) -> Database:
    """A connection to the store at ``target``: a SQLite file's path or a PostgreSQL URL."""
    if is_postgres(target):
        return connect_postgres(str(target))
    return connect_sqlite(Path(target))
