"""Prometheus metrics: what each worker process counts, and one exposition for all of them.

gunicorn runs several worker processes; a scrape reaches one. prometheus_client's multiprocess
mode has each process write its values to memory-mapped files in one directory, and any
process reads them all back at scrape time. ``serve`` gives each instance its own empty
directory (``metrics_dir``), so that two instances, or a restart, never add up stale files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

_MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch
# Requests of this service take milliseconds (health, thumbnails) to seconds (large images).
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def use_directory(directory: Path) -> None:
    """Have this process and the ones it forks write their values under ``directory``.

    prometheus_client decides at import whether values go to files, from an environment
    variable; by then this process has imported it, so the choice is made again here. Call it
    before forking the workers.
    """
    os.environ[_MULTIPROCESS_ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def process_exited(directory: Path, pid: int) -> None:
    """Drop a dead worker's live gauges (its counters and histograms keep counting in the sum)."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


class Metrics:
    """The service's metrics; one per process. ``directory`` None: this process alone (tests)."""

    def __init__(self, directory: Path | None) -> None:
        self._registry = CollectorRegistry()
        if directory is not None:
            MultiProcessCollector(self._registry, path=str(directory))  # type: ignore[no-untyped-call]
        # In multiprocess mode the values are collected from the files, never from a registry.
        into = None if directory is not None else self._registry
        self.requests = Counter(
            "provenance_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=into,
        )
        self.request_seconds = Histogram(
            "provenance_http_request_duration_seconds",
            "Time from a request's arrival at the application to its answer, by route template",
            ["route"],
            buckets=_REQUEST_BUCKETS,
            registry=into,
        )
        self.verify_stage_seconds = Histogram(
            "provenance_verify_stage_seconds",
            "Time spent in each stage of a verification (decode, c2pa, exact, pdq, ...)",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=into,
        )
        self.verdicts = Counter(
            "provenance_verdicts", "Verification verdicts, one per verified image", ["verdict"], registry=into
        )
        self.registrations = Counter(
            "provenance_registrations", "Images signed and registered", registry=into
        )
        self.index_records = Gauge(
            "provenance_index_records",
            "Records in this worker process's in-memory index",
            registry=into,
            multiprocess_mode="liveall",
        )
        self.indexed_through = Gauge(
            "provenance_index_indexed_through",
            "The last record id this worker process's index holds",
            registry=into,
            multiprocess_mode="liveall",
        )
        self.store_last_record = Gauge(
            "provenance_store_last_record_id",
            "The last record id in the store, read at scrape time",
            registry=into,
            multiprocess_mode="mostrecent",
        )

    def verified(self, verdict: str, timings_ms: Mapping[str, float]) -> None:
        self.verdicts.labels(verdict).inc()
        for stage, milliseconds in timings_ms.items():
            self.verify_stage_seconds.labels(stage).observe(milliseconds / 1000)

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def index_state(self, records: int, indexed_through: int) -> None:
        self.index_records.set(records)
        self.indexed_through.set(indexed_through)

    def exposition(self, store_last_record: int) -> bytes:
        """Every process's values in the Prometheus text format."""
        self.store_last_record.set(store_last_record)
        return bytes(generate_latest(self._registry))
