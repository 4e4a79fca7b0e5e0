#!/usr/bin/env python3
"""The inverted file's coarse quantizer, flat or nested, over one bench_scale store.

Rebuilds the local-descriptor index of a store that ``scripts/bench_scale.py`` filled, once with
each quantizer (one thread, as ``provenance index rebuild`` runs), and searches it with the
store's fixed copies (``fixed.json``: a centred crop keeping half the area, as bench_scale
queries them). Reports build seconds (wall, and CPU: a fair comparison on a shared machine,
as the build runs one thread), how often the right record comes first and in the top 10
of the local-descriptor candidates, its mean votes, and the search's p50/p95 latency.

``--ivf-min-vectors`` moves the retraining schedule (at that many vectors, then 8x, 64x, ...):
1593000 retrains a 100,000-record bench_scale store (12.75 million vectors) into the 32,768
lists a store of about 100,400 records reaches; the default schedule leaves it at 8,192, where
the flat quantizer is used either way.

Usage: .venv/bin/python scripts/bench_quantizer.py /work/scale-data/scale/faiss
       [--ivf-min-vectors 1593000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import index.search as search_module  # noqa: E402
from index import FingerprintIndex, FingerprintStore, fingerprint_image, one_thread_per_process  # noqa: E402
from index.calibration import Retrieval  # noqa: E402
from provenance import db  # noqa: E402
from provenance.config import Settings  # noqa: E402
from scripts.bench_scale import copy_of  # noqa: E402
from tests import transforms  # noqa: E402

QUANTIZERS = {"nested": search_module.NESTED_QUANTIZER_LISTS, "flat": sys.maxsize}


def queries(data_dir: Path) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Each fixed copy's record id, descriptors and their positions (fractions of its sides)."""
    found = []
    for path, record_id in json.loads((data_dir / "fixed.json").read_text()).items():
        local = fingerprint_image(transforms.decode(copy_of(path))).local
        positions = local.points / np.array([local.width, local.height], np.float32)
        found.append((record_id, local.descriptors, positions))
    return found


def measure(name: str, data_dir: Path, copies: list[tuple[int, np.ndarray, np.ndarray]]) -> str:
    search_module.NESTED_QUANTIZER_LISTS = QUANTIZERS[name]
    with contextlib.closing(db.open_database(Settings(data_dir=data_dir).database)) as connection:
        started, cpu_started = time.monotonic(), time.process_time()
        index = FingerprintIndex.rebuild_from(FingerprintStore(connection))
        build_s, build_cpu_s = time.monotonic() - started, time.process_time() - cpu_started
    ranks, votes, latencies = [], [], []
    for record_id, descriptors, positions in copies:
        started = time.perf_counter()
        candidates = index.search_local(descriptors, Retrieval(), positions=positions)
        latencies.append((time.perf_counter() - started) * 1000)
        ids = [c.record_id for c in candidates]
        ranks.append(ids.index(record_id) + 1 if record_id in ids else len(ids) + 1)
        votes.append(next((c.votes for c in candidates if c.record_id == record_id), 0))
    local = index._local.index
    first, top10 = (np.mean(np.array(ranks) <= n) * 100 for n in (1, 10))
    p50, p95 = np.percentile(latencies, [50, 95])
    return (
        f"{name:6} {index.records:>9,} {local.ntotal:>11,} {getattr(local, 'nlist', 0):>7,} {build_s:>8.0f} "
        f"{build_cpu_s:>6.0f} "
        f"{first:>6.0f} {top10:>7.0f} {np.mean(votes):>6.1f} {p50:>5.0f} {p95:>5.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="a bench_scale data directory (holding fixed.json)")
    parser.add_argument("--ivf-min-vectors", type=int, default=search_module.IVF_MIN_VECTORS)
    args = parser.parse_args()
    one_thread_per_process()
    search_module.IVF_MIN_VECTORS = args.ivf_min_vectors
    copies = queries(args.data_dir)
    print(
        f"{'quant.':6} {'records':>9} {'vectors':>11} {'lists':>7} {'build s':>8} {'cpu s':>6} "
        f"{'1st %':>6} {'top10 %':>7} {'votes':>6} {'p50':>5} {'p95':>5}"
    )
    for name in QUANTIZERS:
        print(measure(name, args.data_dir, copies), flush=True)


if __name__ == "__main__":
    main()
