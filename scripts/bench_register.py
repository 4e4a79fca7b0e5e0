#!/usr/bin/env python3
"""Registrations per second for 1024x1024 JPEG and PNG, through the Python API and over HTTP.

Prints one table: throughput, median latency and the median split by stage (decode, fingerprint,
sign, commit, index). The baseline, measured in the same run, is c2pa signing alone (the
irreducible cost); "x baseline" says how much a whole registration costs relative to it.
The "HTTP ... SQLite|PostgreSQL" rows compare the two record stores over HTTP with 2 and 8
concurrent clients (JPEG), PostgreSQL being a local PostgreSQL 15 with its default durability
(fsync, synchronous commit), started for the run like the tests' one.

Usage: .venv/bin/python scripts/bench_register.py [--count 60] [--http-clients 2] [--photos GLOB...]
       [--engines-only]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import glob
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import db  # noqa: E402
from provenance.apikeys import create_api_key  # noqa: E402
from provenance.config import Settings  # noqa: E402
from provenance.devkeys import KeyFiles, generate_dev_keys  # noqa: E402
from provenance.manifest import build_manifest  # noqa: E402
from provenance.registry import GenerationRequest  # noqa: E402
from provenance.services import build_services  # noqa: E402
from provenance.signing import ManifestSigner  # noqa: E402
from tests.postgres import PostgresCluster  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
STAGES = ("decode", "fingerprint", "sign", "commit", "index")


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def noisy_fixtures(count: int, fmt: str) -> list[bytes]:
    """Distinct 1024x1024 images: the test fixtures upscaled, each with its own light noise.

    Needs nothing but the checkout. The noise is a worst case for local features: it gives ORB
    2-3x the corners a real photograph of that size has.
    """
    rng = np.random.default_rng(7)
    sources = [Image.open(p).convert("RGB").resize((1024, 1024)) for p in sorted(FIXTURES.glob("*.jpg"))]
    out = []
    for i in range(count):
        pixels = np.asarray(sources[i % len(sources)], np.int16) + rng.integers(-6, 7, (1024, 1024, 3))
        out.append(encoded(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), fmt))
    return out


def photographs(patterns: list[str], count: int, fmt: str) -> list[bytes]:
    """1024x1024 images cut from real photographs: the centre square of each matching file."""
    files = sorted({f for pattern in patterns for f in glob.glob(pattern)})[:count]
    if len(files) < count:
        raise SystemExit(f"--photos matches {len(files)} files; --count asks for {count}")
    return [encoded(ImageOps.fit(Image.open(f).convert("RGB"), (1024, 1024)), fmt) for f in files]


def fresh_settings(directory: Path, database_url: str | None = None) -> Settings:
    keys = directory / "keys"
    generate_dev_keys(KeyFiles.under(keys, keys / "chain.pem", keys / "signer.key", keys / "root.pem"))
    return Settings(data_dir=directory, database_url=database_url)


def bench_sign_only(settings: Settings, data: list[bytes], mime: str) -> float:
    signer = ManifestSigner(settings)
    manifest = build_manifest(
        generation_id="00000000-0000-4000-8000-000000000000",
        model="m",
        generator_name="bench",
        title="x",
        pdq_hash=bytes(32),
        signed_at="2026-01-01T00:00:00.000+00:00",
    )
    started = time.perf_counter()
    for item in data:
        signer.sign(manifest, item, mime)
    return (time.perf_counter() - started) / len(data) * 1000


def bench_python(settings: Settings, data: list[bytes], threads: int) -> tuple[float, list[dict[str, float]]]:
    """One registry, ``threads`` threads each with its own connection (decode, OpenCV and c2pa
    release the GIL, so a second thread can use the second core)."""
    registry = build_services(settings).require_registry()
    request = GenerationRequest(model="bench")

    def run(chunk: list[bytes]) -> list[dict[str, float]]:
        with db.connect(settings.database) as connection:
            return [registry.register(connection, item, request).timings_ms for item in chunk]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        chunks = list(pool.map(run, [data[i::threads] for i in range(threads)]))
    elapsed = time.perf_counter() - started
    return len(data) / elapsed, [t for chunk in chunks for t in chunk]


def bench_http(settings: Settings, data: list[bytes], clients: int, port: int) -> tuple[float, list[float]]:
    with db.open_database(settings.database) as connection:
        key = create_api_key(connection, frozenset({"sign"}))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provenance",
            "--data-dir",
            str(settings.data_dir),
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PROVENANCE_DATABASE_URL": settings.database_url or ""},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        session_headers = {"Authorization": f"Bearer {key}"}

        def post(item: bytes) -> float:
            started = time.perf_counter()
            response = requests.post(
                f"{base}/v1/generations",
                headers=session_headers,
                files={"image": ("x", item)},
                data={"metadata": json.dumps({"model": "bench"})},
                timeout=60,
            )
            assert response.status_code == 201, response.text
            return (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(post, data))
        return len(data) / (time.perf_counter() - started), latencies
    finally:
        server.terminate()
        server.wait(timeout=30)


def bench_engines(data: list[bytes], port: int, rounds: int) -> list[tuple[str, float, float]]:
    """HTTP registrations per second and median latency, SQLite against PostgreSQL: the median of
    ``rounds`` runs each, the engines taking turns so that both see the same machine load."""
    runs: dict[str, list[tuple[float, float]]] = {}
    cluster = PostgresCluster.start(durable=True)
    try:
        for _ in range(rounds):
            for clients in (2, 8):
                for engine in ("SQLite", "PostgreSQL"):
                    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
                        url = stack.enter_context(cluster.database()) if engine == "PostgreSQL" else None
                        rate, latencies = bench_http(fresh_settings(Path(scratch), url), data, clients, port)
                    name = f"HTTP x{clients} clients, {engine}"
                    runs.setdefault(name, []).append((rate, statistics.median(latencies)))
    finally:
        cluster.stop()
    return [
        (name, statistics.median(r for r, _ in found), statistics.median(m for _, m in found))
        for name, found in runs.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--http-clients", type=int, default=2)
    parser.add_argument("--port", type=int, default=18731)
    parser.add_argument(
        "--engines-only", action="store_true", help="only the SQLite / PostgreSQL comparison rows"
    )
    parser.add_argument("--engine-rounds", type=int, default=3, help="runs per engine row (median shown)")
    parser.add_argument(
        "--photos",
        metavar="GLOB",
        nargs="+",
        help="cut the images from these photographs (e.g. 'bench-data/corpus/img/plasma-*.jpg') "
        "instead of the noisy upscaled test fixtures",
    )
    args = parser.parse_args()
    rows = []
    for fmt, mime in () if args.engines_only else (("JPEG", "image/jpeg"), ("PNG", "image/png")):
        data = photographs(args.photos, args.count, fmt) if args.photos else noisy_fixtures(args.count, fmt)
        with tempfile.TemporaryDirectory() as scratch:
            settings = fresh_settings(Path(scratch))
            baseline = bench_sign_only(settings, data[:20], mime)
            for threads in (1, 2):
                rate, timings = bench_python(settings, data, threads)
                split = {stage: statistics.median(t[stage] for t in timings) for stage in STAGES}
                total = statistics.median(sum(t.values()) for t in timings)
                rows.append((f"python API x{threads} threads, {fmt}", rate, total, split, total / baseline))
        with tempfile.TemporaryDirectory() as scratch:
            settings = fresh_settings(Path(scratch))
            rate, latencies = bench_http(settings, data, args.http_clients, args.port)
            median = statistics.median(latencies)
            rows.append((f"HTTP x{args.http_clients} clients, {fmt}", rate, median, None, median / baseline))
        rows.append((f"baseline: c2pa sign only, {fmt}", 1000 / baseline, baseline, None, 1.0))
    header = (
        f"{'path':34} {'reg/s':>7} {'median ms':>10} "
        + " ".join(f"{s:>11}" for s in STAGES)
        + f" {'x baseline':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, rate, median, split, ratio in rows:
        stages = " ".join(f"{split[s]:>11.1f}" if split else f"{'':>11}" for s in STAGES)
        print(f"{name:34} {rate:>7.1f} {median:>10.1f} {stages} {ratio:>11.1f}")
    jpeg = photographs(args.photos, args.count, "JPEG") if args.photos else noisy_fixtures(args.count, "JPEG")
    for name, rate, median in bench_engines(jpeg, args.port, args.engine_rounds):
        print(f"{name:34} {rate:>7.1f} {median:>10.1f}")


if __name__ == "__main__":
    main()
