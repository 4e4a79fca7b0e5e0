#!/usr/bin/env python3
"""Build the benchmark corpus: real photographs and illustrations from Debian packages.

Downloads the packages with `apt-get download` (no root install), unpacks them into
bench-data/ (git-ignored), keeps one image per wallpaper or theme directory (the others are the
same picture at other resolutions), normalises each to RGB JPEG (long side <= 1024, quality 92)
and drops near-duplicates, so that "unrelated" really means unrelated: first by PDQ (distance
<= 40 to an image already kept), then by shared content (a RANSAC-verified correspondence of at
least 12 inliers with an image already kept; wallpaper variants share logos and login widgets).
Writes bench-data/corpus/corpus.json: {"photos": [...], "art": [...]}.

Usage: .venv/bin/python scripts/bench_corpus.py
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from index import (  # noqa: E402
    FingerprintIndex,
    FingerprintStore,
    LocalFeatures,
    PdqHash,
    extract_local_features,
    verify_geometry,
)
from index.fingerprints import pdq_dihedral  # noqa: E402
from index.store import ImageFingerprints  # noqa: E402

DATA = ROOT / "bench-data"
PHOTO_PACKAGES = [
    "plasma-workspace-wallpapers",
    "gnome-backgrounds",
    "mate-backgrounds",
    "ukui-wallpapers",
    "lomiri-wallpapers-20.04",
    "sway-backgrounds",
    "desktop-base",
]
ART_PACKAGES = ["openclipart-png", "wesnoth-1.16-data"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
MIN_SIDE = 256  # generated images are never sprite tiles; small game tiles reuse shared sprites
NEAR_DUPLICATE_BITS = 40
SHARED_CONTENT_INLIERS = 12
SHARED_CONTENT_CANDIDATES = 12


def fetch(package: str) -> Path:
    target = DATA / "x" / package
    if target.exists():
        return target
    debs = DATA / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", "-q", package], cwd=debs, check=True)
    deb = next(debs.glob(f"{package}_*.deb"))
    target.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    return target


def candidates(package: str, one_per_directory: bool) -> list[Path]:
    files = sorted(p for p in fetch(package).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    files = [p for p in files if "screenshot" not in p.name]
    if not one_per_directory:
        return files
    chosen: dict[Path, Path] = {}
    for path in files:  # wallpapers: <name>/contents/images/<resolution>.png
        key = (
            path.parent.parent.parent
            if path.parent.name == "images"
            else path.parent / path.stem.split("-")[0]
        )
        chosen.setdefault(key, path)
    return sorted(chosen.values())


def normalise(job: tuple[Path, Path]) -> tuple[str, list[bytes], bytes] | None:
    source, target = job
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.MAX_IMAGE_PIXELS = None
            image = Image.open(source)
            if min(image.size) < MIN_SIDE:
                return None
            image.draft("RGB", (1024, 1024))
            image = image.convert("RGBA")
    except (OSError, ValueError, SyntaxError):
        return None
    flat = Image.new("RGB", image.size, "white")
    flat.paste(image, mask=image.getchannel("A"))  # clip art is transparent: show it on white
    flat.thumbnail((1024, 1024), Image.Resampling.LANCZOS)
    flat.save(target, "JPEG", quality=92)
    # All eight rotations and mirrors: game art ships mirrored copies of one portrait.
    variants = [h.bits for h in pdq_dihedral(flat)]
    return str(target.relative_to(DATA)), variants, extract_local_features(flat).to_bytes()


def pdq_of(bits: bytes) -> PdqHash:
    return PdqHash(bits, 100)


def shares_content(local: LocalFeatures, store: FingerprintStore, content: FingerprintIndex) -> bool:
    # Clip-art collections reuse parts across drawings (the same cherry on a cupcake, one
    # character in several scenes): look deep, since a shared part draws few votes.
    for candidate in content.search_local(local.descriptors)[:SHARED_CONTENT_CANDIDATES]:
        reference = store.local_features(candidate.record_id)
        match = verify_geometry(local, reference) if reference is not None else None
        if match is not None and match.inliers >= SHARED_CONTENT_INLIERS:
            return True
    return False


def main() -> None:
    out = DATA / "corpus" / "img"
    out.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, Path, Path]] = []
    for kind, packages, one_per_directory in (("photos", PHOTO_PACKAGES, True), ("art", ART_PACKAGES, False)):
        for package in packages:
            for i, path in enumerate(candidates(package, one_per_directory)):
                jobs.append((kind, path, out / f"{package}-{i:05d}.jpg"))
    with multiprocessing.Pool() as pool:
        results = pool.map(normalise, [(src, dst) for _, src, dst in jobs], chunksize=16)
    kept: dict[str, list[str]] = {"photos": [], "art": []}
    hashes = faiss.IndexBinaryFlat(256)
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute(FingerprintStore.SCHEMA)
    connection.execute(FingerprintStore.REMOVALS_SCHEMA)
    store, content = FingerprintStore(connection), FingerprintIndex()
    for (kind, _, _), result in zip(jobs, results, strict=True):
        if result is None:
            continue
        name, variants, local_bytes = result
        codes = np.frombuffer(b"".join(variants), np.uint8).reshape(-1, 32)
        if hashes.ntotal and hashes.search(codes, 1)[0].min() <= NEAR_DUPLICATE_BITS:
            continue
        local = LocalFeatures.from_bytes(local_bytes)
        if shares_content(local, store, content):
            continue
        hashes.add(codes[:1])
        record_id = content.records + 1
        store.add(record_id, ImageFingerprints(pdq=pdq_of(variants[0]), local=local))
        content.catch_up(store)
        kept[kind].append(name)
    (DATA / "corpus" / "corpus.json").write_text(json.dumps(kept, indent=1))
    print(f"photos {len(kept['photos'])}, art {len(kept['art'])} (of {len(jobs)} candidates)")


if __name__ == "__main__":
    main()
