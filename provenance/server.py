"""Production serving: gunicorn with N worker processes, each building its own services after fork."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from index import one_thread_per_process
from provenance import db
from provenance.app import create_app, index_file, load_index
from provenance.config import Settings

logger = logging.getLogger(__name__)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        super().__init__()

    def load_config(self) -> None:
        self.cfg.set("bind", f"{self._settings.host}:{self._settings.port}")
        self.cfg.set("workers", self._settings.workers)
        self.cfg.set("timeout", 120)
        # gunicorn's largest request line, so that long query strings reach the app and get its
        # problem+json 414 (the SBR API's limit is 2 KB) instead of gunicorn's plain-text 400.
        self.cfg.set("limit_request_line", 8190)
        self.cfg.set("accesslog", "-")

    def load(self) -> Any:
        # Runs in each worker after fork: c2pa objects must not cross a fork.
        one_thread_per_process()
        return create_app(self._settings)


def prepare(settings: Settings) -> None:
    """Migrate the store and refresh the saved index once, so workers start from a fresh file."""
    # Closed here, not left to the garbage collector: an SQLite connection that survives into
    # gunicorn's fork shares its locks with the workers and breaks theirs (disk I/O errors,
    # writes of other processes unseen).
    with contextlib.closing(db.open_database(settings.database)) as connection:
        index = load_index(settings, connection)
    db.close_pools()  # likewise PostgreSQL connections: each worker opens its own pool
    index.save(index_file(settings))
    logger.info("index saved with %d records", index.records)


def run_server(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare(settings)
    _Gunicorn(settings).run()
