#!/usr/bin/env python3
"""The index at 10,000 to 1,000,000 records: memory per host, build and load, latency, recall.

The store (SQLite, under ``--data``, grown in place from one size to the next) holds:
- ``--fixed`` real images registered through the service (records 1..F): the fixed set whose
  copies (a centred crop keeping half the area, re-encoded) are queried at every size;
- filler up to each size: fingerprint rows written in bulk through FingerprintStore. Registering
  a million images through c2pa is out of reach here, and uniform random bits would make
  unrealistic neighbourhoods, so each filler record is a tile of a real corpus image's local
  features (a random window keeping 1/9 to 1/2 of it; the descriptors and their order as
  extracted, the points moved into the tile), each descriptor bit flipped with probability 0.04
  (about 10 of 256, as re-extraction after an edit does), and that image's PDQ hash with a quarter
  of its bits flipped. Filler ids continue the records sequence; filler has no record row, so it
  can take candidate places from the right record but never be a verdict.

Per size: ``provenance index rebuild`` (build time; with ``--keep-index``, the index saved by
an earlier run on this store is measured again instead, as "kept"), then ``provenance serve --workers 2``:
seconds until /readyz answers (a worker loading the saved index), index memory per record per
host (PSS of master + workers against the same server over an empty store), and seconds from a
registration's 201 until a verification through the server finds its crop. Then, in this process
(one thread, as a worker computes), verification latency of the fixed copies and of
``--unrelated`` never-registered corpus images, and recall: copies whose verdict is a match on
their own record, in points against the first size's figure.

The engine is the service's: set PROVENANCE_MILVUS_URI to measure Milvus instead of FAISS.

Usage: .venv/bin/python scripts/bench_scale.py [--sizes 10000 100000] [--fixed 100]
       [--unrelated 100] [--pool 1500] [--data /work/scale-data/scale]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from index import (  # noqa: E402
    FingerprintStore,
    ImageFingerprints,
    PdqHash,
    fingerprint_image,
    one_thread_per_process,
)
from index.features import LocalFeatures  # noqa: E402
from provenance import db  # noqa: E402
from provenance.apikeys import create_api_key  # noqa: E402
from provenance.config import Settings  # noqa: E402
from provenance.registry import GenerationRequest  # noqa: E402
from provenance.services import build_services  # noqa: E402
from provenance.verify import Verifier  # noqa: E402
from scripts.bench_memory import fresh_data_dir, serving, settled_pss  # noqa: E402
from scripts.bench_robustness import corner_count, shares_content  # noqa: E402
from tests import transforms  # noqa: E402

CORPUS = "bench-data/corpus/img/*.jpg"
WORKERS = 2
UNLIMITED = {"PROVENANCE_VERIFY_PER_MINUTE": "0", "PROVENANCE_VERIFY_PER_MINUTE_WITH_KEY": "0"}
DESCRIPTOR_FLIP = 0.04
PDQ_FLIP = 0.25
MAX_SIDE = 1024


def engine() -> str:
    return "milvus" if os.environ.get("PROVENANCE_MILVUS_URI") else "faiss"


def settings_for(data_dir: Path) -> Settings:
    """The service's settings from the environment (engine included), over ``data_dir``."""
    os.environ["PROVENANCE_DATA_DIR"] = str(data_dir)
    return Settings.from_env()


def image_bytes(path: str) -> bytes:
    image = Image.open(path).convert("RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    return transforms.encode(image, "JPEG", quality=92)


def split_corpus(fixed: int, unrelated: int, pool: int) -> tuple[list[str], list[str], list[str]]:
    """Queried images (fixed, then unrelated, alternately) with detail enough to be found when
    cropped (bench_robustness's measure), and the pool; each spread over the whole corpus, so that
    no one family of near-identical wallpapers or drawings fills a set."""
    files = sorted(glob.glob(str(ROOT / CORPUS)))
    stride = max(1, len(files) // (4 * (fixed + unrelated)))
    detailed = (path for path in files[::stride] if corner_count(Image.open(path).convert("RGB")) >= 300)
    queried = [path for path, _ in zip(detailed, range(fixed + unrelated), strict=False)]
    if len(queried) < fixed + unrelated or len(files) - len(queried) < pool:
        raise SystemExit(f"{CORPUS} holds {len(files)} images: too few for these counts")
    rest = sorted(set(files) - set(queried))
    return queried[0::2][:fixed], queried[1::2][:unrelated], rest[:: len(rest) // pool][:pool]


@dataclass
class Pool:
    """Real images' fingerprints that filler records are cut from."""

    features: list[LocalFeatures]
    pdq: np.ndarray  # (n, 32) uint8

    @classmethod
    def extracted(cls, files: list[str], cache: Path) -> Pool:
        if not cache.exists():
            prints = [fingerprint_image(Image.open(path).convert("RGB")) for path in files]
            local = {f"local{i}": np.frombuffer(p.local.to_bytes(), np.uint8) for i, p in enumerate(prints)}
            with cache.open("wb") as handle:
                np.savez(handle, pdq=np.stack([np.frombuffer(p.pdq.bits, np.uint8) for p in prints]), **local)
        with np.load(cache) as saved:
            pdq = saved["pdq"]
            features = [LocalFeatures.from_bytes(saved[f"local{i}"].tobytes()) for i in range(len(pdq))]
        return cls(features, pdq)

    def filler(self, rng: np.random.Generator) -> ImageFingerprints:
        """A tile of a pool image, its descriptors perturbed as re-extraction would."""
        source = int(rng.integers(len(self.features)))
        features = self.features[source]
        width, height = rng.uniform(1 / 3, 1 / np.sqrt(2), 2)
        left, top = rng.uniform(0, 1 - width), rng.uniform(0, 1 - height)
        tile = features.within(left, top, left + width, top + height)
        flips = np.packbits(rng.random((len(tile), 256)) < DESCRIPTOR_FLIP, axis=1)
        origin = np.array([left * features.width, top * features.height], np.float32)
        local = LocalFeatures(
            np.ascontiguousarray(tile.points - origin),
            np.ascontiguousarray(tile.descriptors ^ flips),
            max(1, round(width * features.width)),
            max(1, round(height * features.height)),
            features.scale,
        )
        pdq_flips = np.packbits(rng.random(256) < PDQ_FLIP)
        return ImageFingerprints(PdqHash((self.pdq[source] ^ pdq_flips).tobytes(), 100), local)


def fill(settings: Settings, pool: Pool, records: int, batch: int = 5000) -> float:
    """Filler fingerprints up to ``records`` in all; the records sequence moved past them so that
    registrations take later ids. Returns seconds spent."""
    started = time.monotonic()
    with contextlib.closing(db.open_database(settings.database)) as connection:
        store = FingerprintStore(connection)
        (last,) = connection.execute("SELECT coalesce(max(record_id), 0) FROM fingerprints").fetchone()
        rng = np.random.default_rng(int(last))
        for first in range(int(last) + 1, records + 1, batch):
            with connection:
                connection.execute("BEGIN")
                for record_id in range(first, min(first + batch, records + 1)):
                    store.add(record_id, pool.filler(rng))
        connection.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'records'", (records,))
    return time.monotonic() - started


def register_fixed(settings: Settings, files: list[str]) -> dict[str, int]:
    registry = build_services(settings).require_registry()
    with contextlib.closing(db.connect(settings.database)) as connection:
        ids = {
            path: registry.register(connection, image_bytes(path), GenerationRequest(model="bench")).record.id
            for path in files
        }
    db.close_pools()
    return ids


def copy_of(path: str) -> bytes:
    return transforms.crop(image_bytes(path), 0.5)[0]


def rebuild_seconds(data_dir: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "provenance", "--data-dir", str(data_dir), "index", "rebuild"],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def searchable_seconds(base: str, key: str, path: str) -> float:
    """From a registration's 201 until a verification of its crop through the server matches it."""
    response = requests.post(
        f"{base}/v1/generations",
        headers={"Authorization": f"Bearer {key}"},
        files={"image": ("new.jpg", image_bytes(path), "image/jpeg")},
        data={"metadata": '{"model": "bench"}'},
        timeout=120,
    )
    response.raise_for_status()
    registered = time.monotonic()
    suspect = copy_of(path)
    while time.monotonic() - registered < 120:
        found = requests.post(f"{base}/v1/verify", files={"image": ("s.jpg", suspect)}, timeout=120).json()
        if found["verdict"] == "matched":
            return time.monotonic() - registered
    raise SystemExit(f"{path} registered at {base} was not found within 120 s")


@dataclass(frozen=True)
class Row:
    records: int
    fill_s: float
    build_s: float
    ready_s: float
    kb_per_record: float
    searchable_s: float
    copies_ms: list[float]
    unrelated_ms: list[float]
    recall: float
    false_matches: int


def verify_all(
    settings: Settings,
    verifier: Verifier,
    queries: list[tuple[str, bytes, int | None]],
    names: dict[int, str],
) -> tuple[list[float], int, int]:
    """Latency of each query (ms), how many copies matched their own record, and how many matched
    a record they are no copy of and share no drawn part with (bench_robustness.SHARED_CONTENT;
    each wrong match is named on stderr, to be inspected)."""
    latencies, right, wrong = [], 0, 0
    with contextlib.closing(db.connect(settings.database)) as connection:
        for name, data, record_id in queries:
            started = time.perf_counter()
            result = verifier.verify(connection, data)
            latencies.append((time.perf_counter() - started) * 1000)
            top = result.matches[0].record.id if result.matches and result.verdict == "matched" else None
            if top is not None and top != record_id:
                shared = shares_content(name, names.get(top, ""))
                wrong += not shared
                print(
                    f"{'shared' if shared else 'FALSE'} match: {name} -> record {top} {names.get(top, '')}",
                    file=sys.stderr,
                )
            right += top is not None and top == record_id
    return latencies, right, wrong


def measure(
    settings: Settings,
    records: int,
    fill_s: float,
    empty_pss: int,
    fixed: dict[str, int],
    unrelated: list[str],
    keep_index: bool,
) -> Row:
    build_s = float("nan") if keep_index else rebuild_seconds(settings.data_dir)
    with contextlib.closing(db.open_database(settings.database)) as connection:
        key = create_api_key(connection, frozenset({"sign"}), "bench")
    log = settings.data_dir / "server.log"
    with serving(ROOT, settings.data_dir, WORKERS, log, UNLIMITED) as (base, process, ready_s):
        pss = settled_pss(process, WORKERS)
        searchable_s = searchable_seconds(base, key, unrelated[-1])
    copies = [(Path(path).stem, copy_of(path), record_id) for path, record_id in fixed.items()]
    others = [(Path(path).stem, transforms.strip(image_bytes(path)), None) for path in unrelated[:-1]]
    names = {record_id: Path(path).stem for path, record_id in fixed.items()}
    one_thread_per_process()  # as a worker computes
    verifier = build_services(settings).verifier
    copies_ms, right, wrong_copies = verify_all(settings, verifier, copies, names)
    unrelated_ms, _, false_matches = verify_all(settings, verifier, others, names)
    db.close_pools()
    return Row(
        records,
        fill_s,
        build_s,
        ready_s,
        (pss - empty_pss) / records / 1e3,
        searchable_s,
        copies_ms,
        unrelated_ms,
        right / len(copies),
        false_matches + wrong_copies,
    )


def percentiles(values: list[float]) -> str:
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"{p50:>5.0f} {p95:>5.0f} {p99:>5.0f}"


def report(rows: list[Row]) -> None:
    header = (
        f"{'engine':7} {'records':>9} {'fill s':>7} {'build s':>8} {'ready s':>8} {'KB/rec/host':>11} "
        f"{'new s':>6} {'copies p50/p95/p99 ms':>21} {'unrelated p50/p95/p99':>21} {'recall %':>8} "
        f"{'vs first':>8} {'false':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        build = "kept" if math.isnan(row.build_s) else f"{row.build_s:.1f}"
        print(
            f"{engine():7} {row.records:>9,} {row.fill_s:>7.0f} {build:>8} {row.ready_s:>8.1f} "
            f"{row.kb_per_record:>11.2f} {row.searchable_s:>6.2f} {percentiles(row.copies_ms):>21} "
            f"{percentiles(row.unrelated_ms):>21} {row.recall * 100:>8.1f} "
            f"{(row.recall - rows[0].recall) * 100:>+8.1f} {row.false_matches:>5}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--fixed", type=int, default=100)
    parser.add_argument("--unrelated", type=int, default=100)
    parser.add_argument("--pool", type=int, default=1500, help="corpus images the filler is cut from")
    parser.add_argument("--data", type=Path, default=Path("/work/scale-data/scale"))
    parser.add_argument(
        "--keep-index",
        action="store_true",
        help="measure the index an earlier run saved for one --sizes size, without rebuilding it "
        "(to measure a change of the read path at a size that takes an hour to build)",
    )
    args = parser.parse_args()
    if args.keep_index and len(args.sizes) != 1:
        raise SystemExit("--keep-index measures one size: the store and index as an earlier run left them")
    if args.sizes != sorted(args.sizes) or args.sizes[0] <= args.fixed:
        raise SystemExit("--sizes must grow, from more than --fixed records")
    fixed_files, unrelated, pool_files = split_corpus(args.fixed, args.unrelated + 1, args.pool)
    data_dir = args.data / engine()
    state = data_dir / "fixed.json"
    if not state.exists():
        fresh_data_dir(data_dir)
        state.write_text(json.dumps(register_fixed(settings_for(data_dir), fixed_files)))
    settings = settings_for(data_dir)
    fixed = json.loads(state.read_text())
    pool = Pool.extracted(pool_files, args.data / f"pool-{args.pool}.npz")
    with tempfile.TemporaryDirectory() as scratch:
        empty = fresh_data_dir(Path(scratch) / "empty")
        log = Path(scratch) / "empty.log"
        with serving(ROOT, empty.data_dir, WORKERS, log, UNLIMITED) as (_, process, _):
            empty_pss = settled_pss(process, WORKERS)
    rows = []
    for records in args.sizes:
        fill_s = fill(settings, pool, records)
        rows.append(measure(settings, records, fill_s, empty_pss, fixed, unrelated, args.keep_index))
        print(f"measured {records:,} records", file=sys.stderr, flush=True)
        report(rows)


if __name__ == "__main__":
    main()
