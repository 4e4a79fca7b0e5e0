#!/usr/bin/env python3
"""What deleting a record costs each serving process: one catch-up that drops its vectors.

Builds a FingerprintIndex of N synthetic records (random PDQ hashes and 160 random descriptors
each, as many as the index keeps per record) and times a catch-up that applies a logged removal
(FAISS remove_ids over the PDQ and local-descriptor indexes) against the baseline of one local
search of 500 descriptors, before and after.
From 200,000 descriptors the local index is an inverted file, as in production.

Usage: .venv/bin/python scripts/bench_deletion.py [--records 10000 100000] [--repeat 5]
(100,000 records take some 15 minutes to build on a 2-core machine.)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from index import FingerprintIndex, LocalFeatures, PdqHash, one_thread_per_process  # noqa: E402
from index.features import DESCRIPTOR_BYTES  # noqa: E402
from index.search import INDEXED_DESCRIPTORS  # noqa: E402
from index.store import IndexRows  # noqa: E402


class SyntheticStore:
    """Quacks like index.FingerprintStore for catch_up: random records, and a removal log."""

    def __init__(self, records: int, seed: int = 1) -> None:
        self.records = records
        self.removals: list[tuple[int, int]] = []
        self._rng = np.random.default_rng(seed)

    def rows_after(self, record_id: int, local_descriptors: int) -> Iterator[IndexRows]:
        for next_id in range(record_id + 1, self.records + 1):
            descriptors = self._rng.integers(0, 256, (local_descriptors, DESCRIPTOR_BYTES), np.uint8)
            features = LocalFeatures(np.zeros((local_descriptors, 2), np.float32), descriptors, 100, 100, 1.0)
            pdq = PdqHash(self._rng.integers(0, 256, 32, np.uint8).tobytes(), 100)
            yield IndexRows(next_id, pdq, features.to_bytes())

    def removals_after(self, seq: int) -> list[tuple[int, int]]:
        return [removal for removal in self.removals if removal[0] > seq]


def milliseconds(work: Callable[[], object], repeat: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.perf_counter() - started) / repeat * 1000


def measure(records: int, deletions: int, query: np.ndarray) -> str:
    store = SyntheticStore(records)
    index = FingerprintIndex.rebuild_from(store)  # type: ignore[arg-type]
    kind = type(index._local.index).__name__
    search_before = milliseconds(lambda: index.search_local(query), 5)
    removal_times = []
    for n in range(1, deletions + 1):
        store.removals.append((n, n * 7))
        removal_times.append(milliseconds(lambda: index.catch_up(store)))  # type: ignore[arg-type]
    assert index.records == records - deletions
    search_after = milliseconds(lambda: index.search_local(query), 5)
    removal = float(np.median(removal_times))
    return (
        f"| {records:,} | {records * INDEXED_DESCRIPTORS:,} | {kind} | {removal:.1f} |"
        f" {search_before:.1f} / {search_after:.1f} | {removal / search_before:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[10_000])
    parser.add_argument("--repeat", type=int, default=5, help="deletions timed per size")
    args = parser.parse_args()
    one_thread_per_process()  # as a gunicorn worker runs
    query = np.random.default_rng(2).integers(0, 256, (500, DESCRIPTOR_BYTES), np.uint8)
    print(
        "| records | descriptors | local index | catch-up applying one removal (ms) |"
        " search of 500 descriptors before / after (ms) | removal / search |"
    )
    print("| ---: | ---: | --- | ---: | --- | ---: |")
    for records in args.records:
        print(measure(records, args.repeat, query), flush=True)
    print(
        f"\nmedian of {args.repeat} deletions per size; one search is the baseline a removal is compared with"
    )


if __name__ == "__main__":
    main()
