#!/usr/bin/env python3
"""Milvus against FAISS on the same records: build time, memory per record and search latency.

Records are synthetic but drawn from real images: each has a PDQ hash and 160 descriptors, every
one a real TEBLID descriptor (or PDQ hash) of one of --sample corpus images (scripts/bench_corpus.py)
with 10 of its 256 bits flipped, so Hamming neighbourhoods are
those of real descriptors, not of uniform random bits. A query is a copy of one record: its 160
descriptors and 340 others, each with 10 more bits flipped, and its PDQ hash as 8 variants (as
a verification asks). Both engines answer the same queries; the table gives their median and
p95 per search and Milvus's extra time per verification (one PDQ and one local search; the rest
of a verification does not depend on the engine).

Milvus is the tests' embedded standalone server (tests/milvus.py), on this machine, filled by
`MilvusIndex.rebuild_from` (insert, flush, index, load). Its memory is the growth of the server
process's resident set over its empty-collections start, after the load, and its disk the growth of
its data folder (binlogs, index files, write-ahead log); FAISS's is the serialised size of its
indexes.

Usage: .venv/bin/python scripts/bench_milvus.py [--records 10000 30000] [--probes 8 4 2] [--sample 400]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from index import (  # noqa: E402
    FingerprintIndex,
    MilvusIndex,
    PdqHash,
    SearchIndex,
    fingerprint_image,
    one_thread_per_process,
)
from index.calibration import Retrieval  # noqa: E402
from index.features import DESCRIPTOR_BYTES, LocalFeatures  # noqa: E402
from index.search import INDEXED_DESCRIPTORS  # noqa: E402
from index.store import IndexRows  # noqa: E402
from tests.milvus import MilvusCluster  # noqa: E402

FLIPPED_BITS = 10
QUERIES = 40


def flipped(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row with FLIPPED_BITS of its bits flipped."""
    bits = np.unpackbits(codes, axis=1)
    # FLIPPED_BITS distinct positions per row, all rows at once: a choice per row made the
    # records of a 100,000-record store take minutes to draw, twice (once per engine).
    positions = np.argpartition(rng.random(bits.shape), FLIPPED_BITS, axis=1)[:, :FLIPPED_BITS]
    bits[np.arange(len(bits))[:, None], positions] ^= 1  # distinct per row: no index repeats
    return np.packbits(bits, axis=1)


class SampledStore:
    """Quacks like index.FingerprintStore for catch_up: records made of real descriptors."""

    def __init__(self, descriptors: np.ndarray, hashes: np.ndarray, records: int) -> None:
        self.descriptors, self.hashes, self.records = descriptors, hashes, records

    def record(self, record_id: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(record_id)
        local = self.descriptors[rng.choice(len(self.descriptors), INDEXED_DESCRIPTORS, replace=False)]
        pdq = self.hashes[rng.integers(len(self.hashes))][None, :]
        return flipped(local, rng), flipped(pdq, rng)[0]

    def rows_after(self, record_id: int, local_descriptors: int) -> Iterator[IndexRows]:
        for next_id in range(record_id + 1, self.records + 1):
            local, pdq = self.record(next_id)
            features = LocalFeatures(np.zeros((len(local), 2), np.float32), local, 100, 100, 1.0)
            yield IndexRows(next_id, PdqHash(pdq.tobytes(), 100), features.to_bytes())

    def removals_after(self, seq: int) -> list[tuple[int, int]]:
        return []


def real_fingerprints(images: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Every descriptor and the PDQ hash of each image, as registration computes them."""
    descriptors, hashes = [], []
    for path in images:
        with Image.open(path) as image:
            found = fingerprint_image(image.convert("RGB"))
        descriptors.append(found.local.descriptors)
        hashes.append(np.frombuffer(found.pdq.bits, np.uint8))
    return np.concatenate(descriptors).reshape(-1, DESCRIPTOR_BYTES), np.stack(hashes)


def queries(store: SampledStore, rng: np.random.Generator) -> list[tuple[np.ndarray, list[PdqHash]]]:
    asked = []
    for record_id in rng.choice(np.arange(1, store.records + 1), QUERIES, replace=False):
        local, pdq = store.record(int(record_id))
        others = store.descriptors[rng.choice(len(store.descriptors), 500 - len(local), replace=False)]
        descriptors = flipped(np.concatenate([local, others]), rng)
        variants = [PdqHash(flipped(pdq[None, :], rng)[0].tobytes(), 100)] + [
            PdqHash(rng.integers(0, 256, 32, np.uint8).tobytes(), 100) for _ in range(7)
        ]
        asked.append((descriptors, variants))
    return asked


def timed(
    engines: tuple[SearchIndex, SearchIndex], asked: list[tuple[np.ndarray, list[PdqHash]]]
) -> tuple[list[float], list[float]]:
    """Milliseconds per verification's searches (PDQ with 8 variants, then 500 descriptors), per
    engine; the engines take turns query by query, so that both meet the same load."""
    retrieval = Retrieval()
    spent: tuple[list[float], list[float]] = ([], [])
    for descriptors, variants in asked:
        for engine, times in zip(engines, spent, strict=True):
            started = time.perf_counter()
            engine.search_pdq(variants, 31)
            engine.search_local(descriptors, retrieval)
            times.append((time.perf_counter() - started) * 1000)
    return spent


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def disk_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def measure(
    store: SampledStore, cluster: MilvusCluster, prefix: str, server_pid: int, probes: list[int] | None
) -> list[str]:
    """Table rows, one per number of lists Milvus probes: both engines over the same ``store``."""
    size = store.records
    started = time.perf_counter()
    faiss_index = FingerprintIndex.rebuild_from(store, threads=os.cpu_count() or 1)  # type: ignore[arg-type]
    faiss_build = time.perf_counter() - started
    uri = cluster.uri
    MilvusIndex(uri, prefix).catch_up(SampledStore(store.descriptors, store.hashes, 0))  # type: ignore[arg-type]
    empty = resident_bytes(server_pid)  # with the empty collections loaded
    empty_disk = disk_bytes(cluster.directory / "data")
    started = time.perf_counter()
    milvus_index = MilvusIndex.rebuild_from(store, uri, prefix)  # type: ignore[arg-type]
    milvus_build = time.perf_counter() - started
    time.sleep(5)  # let the query node settle on the loaded, indexed segments
    grown = resident_bytes(server_pid) - empty
    written = disk_bytes(cluster.directory / "data") - empty_disk  # binlogs, index files, WAL
    asked = queries(store, np.random.default_rng(size))
    faiss_bytes = faiss_index.memory_bytes() / size
    retrieval = Retrieval()
    rows = []
    for probed in probes or [milvus_index.probes]:
        milvus_index.probes = probed
        timed((faiss_index, milvus_index), asked[:3])  # warm the client's channels and caches
        faiss_ms, milvus_ms = timed((faiss_index, milvus_index), asked)
        same = sum(
            [c.record_id for c in faiss_index.search_local(d, retrieval, limit=1)]
            == [c.record_id for c in milvus_index.search_local(d, retrieval, limit=1)]
            for d, _ in asked
        )
        rows.append(
            f"| {size:,} | {probed} | {faiss_build:.1f} | {milvus_build:.1f} | {faiss_bytes:,.0f} |"
            f" {grown / size:,.0f} | {written / size:,.0f} |"
            f" {statistics.median(faiss_ms):.1f} / {p95(faiss_ms):.1f} |"
            f" {statistics.median(milvus_ms):.1f} / {p95(milvus_ms):.1f} |"
            f" {statistics.median(milvus_ms) - statistics.median(faiss_ms):.1f} | {same}/{len(asked)} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", default="bench-data/corpus/img/*.jpg", help="real images lending descriptors"
    )
    parser.add_argument("--sample", type=int, default=400, help="how many of those images")
    parser.add_argument("--records", type=int, nargs="+", default=[10_000])
    parser.add_argument(
        "--probes", type=int, nargs="+", help="lists Milvus probes per segment (default: the index's own)"
    )
    args = parser.parse_args()
    one_thread_per_process()
    images = sorted(ROOT.glob(args.images))
    chosen = np.random.default_rng(1).choice(len(images), min(args.sample, len(images)), replace=False)
    descriptors, hashes = real_fingerprints([images[i] for i in sorted(chosen)])
    print(f"{len(descriptors):,} real descriptors, {len(hashes):,} PDQ hashes to draw from", file=sys.stderr)
    cluster = MilvusCluster.start()
    try:
        server_pid = cluster._server.server_proc.pid  # type: ignore[attr-defined]
        print(
            "| records | probed | FAISS build s | Milvus rebuild s | FAISS bytes/record |"
            " Milvus RSS bytes/record | Milvus disk bytes/record |"
            " FAISS p50 / p95 ms | Milvus p50 / p95 ms | Milvus extra p50 ms | same top record |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |")
        for size in args.records:
            with cluster.prefix() as prefix:  # its collections are dropped after each size
                store = SampledStore(descriptors, hashes, size)
                print("\n".join(measure(store, cluster, prefix, server_pid, args.probes)), flush=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
