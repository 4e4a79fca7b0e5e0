"""Moving a SQLite store into PostgreSQL: every table, in batches, resumable, counts verified.

Rows keep their ids, so a saved index stays valid and record ids stay the ones clients were
given. Each batch commits with a note of the last key copied (table ``store_copy_progress``), so
an interrupted copy resumes where it stopped; rows are inserted with ON CONFLICT DO NOTHING, so a
batch is never copied twice either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provenance.engines import Database

BATCH_ROWS = 500
_PROGRESS = "store_copy_progress"


class CopyMismatch(Exception):
    """The target's row counts differ from the source's after the copy."""


@dataclass(frozen=True)
class TableCopy:
    table: str
    source_rows: int
    target_rows: int
    copied: int  # in this run


def _tables(source: Database) -> list[str]:
    # Creation order, so a table comes after the tables its foreign keys name.
    return [
        row[0]
        for row in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name NOT IN ('migrations', ?) ORDER BY rowid",
            (_PROGRESS,),
        )
    ]


def _columns(source: Database, table: str) -> tuple[list[str], list[str]]:
    """All columns, and the primary key's (the rowid when there is none)."""
    info = source.execute(f'PRAGMA table_info("{table}")').fetchall()
    columns = [row[1] for row in info]
    key = [row[1] for row in sorted((row for row in info if row[5]), key=lambda row: row[5])]
    return columns, key or ["rowid"]


def _count(database: Database, table: str) -> int:
    return int(database.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])


def copy_store(
    source: Database,
    target: Database,
    batch_rows: int = BATCH_ROWS,
    after_batch: Callable[[str, int], None] | None = None,
) -> list[TableCopy]:
    """Copy every table of the migrated SQLite ``source`` into the migrated PostgreSQL ``target``.

    ``after_batch(table, rows)`` is called after each committed batch. Raises CopyMismatch when
    the counts differ at the end (rows in the target that the source lacks, for one).
    """
    with target:
        target.execute("BEGIN IMMEDIATE")
        target.execute(f"CREATE TABLE IF NOT EXISTS {_PROGRESS} (table_name TEXT PRIMARY KEY, last_key TEXT)")
    results = []
    for table in _tables(source):
        copied = _copy_table(source, target, table, batch_rows, after_batch)
        results.append(TableCopy(table, _count(source, table), _count(target, table), copied))
    _continue_identities(source, target)
    wrong = [r for r in results if r.source_rows != r.target_rows]
    if wrong:
        counts = (f"{r.table}: {r.source_rows} in SQLite, {r.target_rows} in PostgreSQL" for r in wrong)
        raise CopyMismatch("; ".join(counts))
    return results


def _copy_table(
    source: Database,
    target: Database,
    table: str,
    batch_rows: int,
    after_batch: Callable[[str, int], None] | None,
) -> int:
    columns, key = _columns(source, table)
    row = target.execute(f"SELECT last_key FROM {_PROGRESS} WHERE table_name = ?", (table,)).fetchone()
    last: list[Any] | None = json.loads(row[0]) if row else None
    key_list = ", ".join(key)
    select = f'SELECT {key_list}, {", ".join(columns)} FROM "{table}"'
    insert = (
        f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
        " ON CONFLICT DO NOTHING"
    )
    copied = 0
    while True:
        after = f" WHERE ({key_list}) > ({', '.join('?' * len(key))})" if last is not None else ""
        rows = source.execute(
            f"{select}{after} ORDER BY {key_list} LIMIT ?", (*(last or ()), batch_rows)
        ).fetchall()
        if not rows:
            return copied
        last = list(rows[-1][: len(key)])
        with target:
            target.execute("BEGIN IMMEDIATE")
            target.executemany(insert, [r[len(key) :] for r in rows])
            target.execute(
                f"INSERT INTO {_PROGRESS} (table_name, last_key) VALUES (?, ?)"
                " ON CONFLICT (table_name) DO UPDATE SET last_key = excluded.last_key",
                (table, json.dumps(last)),
            )
        copied += len(rows)
        if after_batch is not None:
            after_batch(table, len(rows))


def _continue_identities(source: Database, target: Database) -> None:
    """Ids were copied explicitly: move each identity past them, so new rows get fresh ids, and
    past every id SQLite ever issued (AUTOINCREMENT never reuses the id of a deleted record,
    which the removal log still names: a new record under it would be removed at once)."""
    issued = dict(source.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    identities = target.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE is_identity = 'YES' AND table_schema = current_schema()"
    ).fetchall()
    for table, column in identities:
        target.execute(
            f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'),"
            f' greatest(coalesce(max("{column}"), 0), ?) + 1, false) FROM "{table}"',
            (int(issued.get(table, 0)),),
        )
