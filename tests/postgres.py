"""A throwaway PostgreSQL 15 cluster for the tests: a temp folder, a unix socket, no TCP port.

PostgreSQL refuses to run as root, so as root initdb and pg_ctl run as the ``postgres`` user
(Debian's package creates it). Each test gets its own database, created from a template that
already holds the migrated schema, and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from provenance import db

BIN = Path("/usr/lib/postgresql/15/bin")
PORT = 5432  # only names the socket file inside our own folder: nothing listens on TCP
TEMPLATE = "provenance_template"


class PostgresCluster:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._names = itertools.count()
        self._admin: psycopg.Connection[tuple[object, ...]] | None = None

    @classmethod
    def start(cls, durable: bool = False) -> PostgresCluster:
        """Not ``durable``: without fsync, for tests; durable: PostgreSQL's defaults, for
        benchmarks and crash tests."""
        if not (BIN / "pg_ctl").exists():
            raise RuntimeError(
                f"PostgreSQL 15 is not installed ({BIN}); scripts/setup --postgres installs it"
            )
        # Not under pytest's temp folder: that is private to our user, and the server runs as postgres.
        cluster = cls(Path(tempfile.mkdtemp(prefix="provenance-pg-")))
        if _root():
            shutil.chown(cluster.directory, "postgres")
        cluster._run(
            "initdb", "-D", str(cluster.directory / "db"), "-A", "trust", "-U", "postgres", "-E", "UTF8"
        )
        options = f"-p {PORT} -k {cluster.directory} -c listen_addresses='' -c max_connections=300"
        if not durable:  # a throwaway cluster: durability is the crash script's business
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        cluster._run(
            "pg_ctl",
            "-D",
            str(cluster.directory / "db"),
            "-l",
            str(cluster.directory / "log"),
            "-w",
            "start",
            "-o",
            options,
        )
        cluster._admin = psycopg.connect(cluster.url("postgres"), autocommit=True)
        cluster._admin.execute(f"CREATE DATABASE {TEMPLATE}")
        with contextlib.closing(db.open_database(cluster.url(TEMPLATE))):
            pass
        db.close_pools()  # CREATE DATABASE ... TEMPLATE needs the template without sessions
        return cluster

    def url(self, name: str) -> str:
        return f"postgresql://postgres@/{name}?host={self.directory}&port={PORT}"

    @contextlib.contextmanager
    def database(self, template: str = TEMPLATE) -> Iterator[str]:
        """A fresh database's URL (migrated, unless another template is named); dropped, with
        every connection to it, afterwards."""
        assert self._admin is not None
        name = f"test_{os.getpid()}_{next(self._names)}"
        self._admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        try:
            yield self.url(name)
        finally:
            db.close_pools()
            self._admin.execute(f"DROP DATABASE {name} WITH (FORCE)")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        self._run("pg_ctl", "-D", str(self.directory / "db"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _run(program: str, *args: str) -> None:
        command = [str(BIN / program), *args]
        if _root():
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)


def _root() -> bool:
    return os.geteuid() == 0
