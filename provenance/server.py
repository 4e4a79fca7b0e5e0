"""Production serving: gunicorn with N worker processes, each building its own services after fork.

The index is the exception: the master loads it once and every worker inherits it by fork, so a
host holds one copy (pages shared copy-on-write, never written by the workers: each adds what is
registered later to indexes of its own) instead of one per worker. So are the smooth records
(index.smooth.SmoothRecords), whose first catch-up reads the whole store: the master does it once,
and no worker or request waits for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from index import Calibration, FingerprintIndex, FingerprintStore, SmoothRecords, one_thread_per_process
from provenance import db
from provenance.app import create_app
from provenance.config import Settings
from provenance.logs import JsonFormatter, json_logging_config
from provenance.metrics import process_exited, use_directory
from provenance.services import load_index, save_index
from provenance.uploads import MinimumUploadRate
from provenance.verify import catch_up_smooth_records

logger = logging.getLogger(__name__)


class _ThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker whose request threads keep FAISS to themselves too: OpenMP's
    thread count is per thread, and a new thread starts at one per core."""

    def get_thread_pool(self) -> futures.ThreadPoolExecutor:
        return futures.ThreadPoolExecutor(max_workers=self.cfg.threads, initializer=one_thread_per_process)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, loaded: Preloaded) -> None:
        self._settings = settings
        self._index = loaded.index
        self._smooth = loaded.smooth
        super().__init__()

    def load_config(self) -> None:
        self.cfg.set("bind", f"{self._settings.host}:{self._settings.port}")
        self.cfg.set("workers", self._settings.workers)
        # A request holds its thread while its body arrives, however slowly; with one thread per
        # process, two clients sending 10 bytes a second kept every other request waiting. Threads
        # wait on sockets cheaply; compute stays bounded by Services.compute.
        self.cfg.set("worker_class", _ThreadWorker)
        self.cfg.set("threads", self._settings.threads)
        # gunicorn's control socket defaults to one path per user ($XDG_RUNTIME_DIR or ~/.gunicorn),
        # shared by every instance: the first to stop removed it under the others. Nothing here
        # uses it; processes are managed by signals.
        self.cfg.set("control_socket_disable", True)
        self.cfg.set("timeout", 120)
        # gunicorn's largest request line, so that long query strings reach the app and get its
        # problem+json 414 (the SBR API's limit is 2 KB) instead of gunicorn's plain-text 400.
        self.cfg.set("limit_request_line", 8190)
        # One JSON object per line for gunicorn's loggers and ours; provenance.operations writes
        # each request's line (with its request id), so gunicorn's own access log stays off.
        self.cfg.set("logconfig_dict", json_logging_config())
        self.cfg.set("child_exit", self._child_exit)
        # Each worker adds the records registered since it was forked to its own pages. One forked
        # later (after a crash, or every one on HUP) inherits the master's index, caught up here
        # first: those records are then held once per host again.
        self.cfg.set("pre_fork", self._catch_up_before_fork)

    def _catch_up_before_fork(self, _: object, __: object) -> None:
        try:
            # Closed before the fork, as in prepare().
            with contextlib.closing(db.connect(self._settings.database)) as connection:
                if self._index is not None:  # None with Milvus: the master holds no index
                    self._index.catch_up(FingerprintStore(connection))
                catch_up_smooth_records(self._smooth, connection)
            db.close_pools()
        except Exception:  # the worker catches up itself: only sharing is lost
            logger.exception("the master could not catch its index up before forking a worker")

    def _child_exit(self, _: object, worker: Any) -> None:
        assert self._settings.metrics_dir is not None
        process_exited(self._settings.metrics_dir, worker.pid)

    def load(self) -> Any:
        # Runs in each worker after fork: c2pa objects must not cross a fork.
        one_thread_per_process()
        if self._index is not None:
            self._index.freeze()  # this worker's additions go apart: the master's pages stay shared
        app = create_app(self._settings, self._index, self._smooth)
        if self._settings.upload_min_rate > 0:
            app.wsgi_app = MinimumUploadRate(  # type: ignore[method-assign]
                app.wsgi_app, self._settings.upload_min_rate, self._settings.upload_grace_seconds
            )
        return app


@dataclass(frozen=True)
class Preloaded:
    """What the master loads for its workers to inherit: the FAISS index (None with Milvus, whose
    client, a gRPC channel, must not cross a fork: each worker opens its own, and the collections
    are shared anyway) and the smooth records."""

    index: FingerprintIndex | None
    smooth: SmoothRecords


def prepare(settings: Settings) -> Preloaded:
    """Migrate the store and catch the index (saving a FAISS one) and the smooth records up once."""
    # Closed here, not left to the garbage collector: an SQLite connection that survives into
    # gunicorn's fork shares its locks with the workers and breaks theirs (disk I/O errors,
    # writes of other processes unseen).
    one_thread_per_process()  # as in a rebuild (cli.index_rebuild): the master may rebuild too
    with contextlib.closing(db.open_database(settings.database)) as connection:
        index = load_index(settings, connection)
        smooth = SmoothRecords(Calibration())  # the calibration every worker's services use
        catch_up_smooth_records(smooth, connection)
    db.close_pools()  # likewise PostgreSQL connections: each worker opens its own pool
    save_index(settings, index)
    logger.info("index caught up with %d records", index.records)
    return Preloaded(index if isinstance(index, FingerprintIndex) else None, smooth)


@contextlib.contextmanager
def metrics_directory(settings: Settings) -> Iterator[Path]:
    """An empty directory for this instance's metrics: the configured one emptied, or a fresh one
    removed at exit. Values another instance or an earlier run left would add up with ours."""
    if settings.metrics_dir is not None:
        directory = Path(settings.metrics_dir)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="provenance-metrics-") as fresh:
        yield Path(fresh)


def run_server(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    loaded = prepare(settings)
    with metrics_directory(settings) as directory:
        use_directory(directory)
        _Gunicorn(dataclasses.replace(settings, metrics_dir=directory), loaded).run()
