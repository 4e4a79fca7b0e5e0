#!/usr/bin/env python3
"""Micro-benchmark of the matching building blocks, each against its alternative in the same run.

Prints one table: descriptor nearest-two search for geometric verification (FAISS flat, which
verify_geometry uses, against OpenCV's brute-force matcher), local-feature extraction by how many
keypoints are detected before the balanced selection keeps 1,500, and an inverted-file search of
500 descriptors by list count and probes. Images are the test fixtures upscaled to 1024 px with
light noise (as in bench_register.py); the inverted file holds random codes, or with --index
the real descriptors of a saved index.

Usage: .venv/bin/python scripts/bench_matching.py [--repeat 20] [--vectors 1000000]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import faiss
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_register import noisy_fixtures  # noqa: E402

import index.features as features  # noqa: E402
from index import FingerprintIndex, one_thread_per_process  # noqa: E402
from index.features import extract_local_features  # noqa: E402
from index.hamming import nearest_two  # noqa: E402


def milliseconds(work: Callable[[], object], repeat: int) -> float:
    work()  # warm up
    started = time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.perf_counter() - started) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--vectors", type=int, default=1_000_000, help="random codes in the inverted file")
    parser.add_argument(
        "--index",
        type=Path,
        help="a saved index (e.g. bench-data/store10k/index/fingerprints.npz): search its real descriptors",
    )
    args = parser.parse_args()
    one_thread_per_process()  # as a gunicorn worker runs
    pictures = [Image.open(io.BytesIO(b)).convert("RGB") for b in noisy_fixtures(4, "JPEG")]
    query, reference = extract_local_features(pictures[0]), extract_local_features(pictures[1])
    rows: list[tuple[str, str, float, float]] = []

    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pair = (query.descriptors, reference.descriptors)
    baseline = milliseconds(lambda: matcher.knnMatch(*pair, k=2), args.repeat)
    rows.append(("nearest two, 1500 x 1500", "OpenCV BFMatcher (baseline)", baseline, baseline))
    faiss_ms = milliseconds(lambda: nearest_two(*pair), args.repeat)
    rows.append(("nearest two, 1500 x 1500", "FAISS flat (used)", faiss_ms, baseline))

    default_factor = features._DETECT_FACTOR
    timings = {}
    few = args.repeat // 4 or 1
    for factor in (1, 2, 4):
        features._DETECT_FACTOR = factor
        timings[factor] = milliseconds(lambda: [extract_local_features(p) for p in pictures], few)
    features._DETECT_FACTOR = default_factor
    for factor, ms in timings.items():
        label = f"detect {factor}x1500, keep 1500" + (" (used)" if factor == default_factor else "")
        rows.append(("extract, per 1024 px image", label, ms / len(pictures), timings[1] / len(pictures)))

    rng = np.random.default_rng(1)
    if args.index:  # real descriptors cluster unevenly; random codes fill every list alike
        codes = FingerprintIndex.load(args.index)._local._all_vectors()[0]
    else:
        codes = rng.integers(0, 256, (args.vectors, 32), dtype=np.uint8)
    queries = codes[rng.choice(len(codes), 500)] ^ (rng.random((500, 32)) < 0.05).astype(np.uint8)
    ivf_baseline = None
    for nlist, nprobe in ((2048, 24), (4096, 24), (4096, 16)):
        quantizer = faiss.IndexBinaryFlat(256)
        quantizer.add(codes[rng.choice(len(codes), nlist, replace=False)])
        ivf = faiss.IndexBinaryIVF(quantizer, 256, nlist)
        ivf.is_trained = True
        ivf.add(codes)
        ivf.nprobe = nprobe
        ms = milliseconds(lambda ivf=ivf: ivf.search(queries, 4), few)
        ivf_baseline = ivf_baseline or ms
        label = f"{nlist} lists, nprobe {nprobe}" + (" (used)" if (nlist, nprobe) == (4096, 24) else "")
        rows.append((f"IVF search, 500 of {len(codes):,}", label, ms, ivf_baseline))

    print(f"{'what':32} {'how':32} {'ms':>8} {'x baseline':>11}")
    print("-" * 86)
    for what, how, ms, base in rows:
        print(f"{what:32} {how:32} {ms:8.1f} {ms / base:11.2f}")


if __name__ == "__main__":
    main()
