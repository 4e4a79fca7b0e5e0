#!/usr/bin/env python3
"""What idempotency keys and the signers record cost: bytes kept per key, replay and lookup time.

Registers 1024x1024 images of each signable format with an Idempotency-Key, retries each once,
and prints per format: upload and signed sizes, the bytes kept to answer a retry (the part of
the signed file the upload lacks), the median registration and replay latency, and the time
to work that delta out for a 50 MB upload. Then the median
time to find our signing certificate, which every Trusted manifest pays: reading the signers
record from the store, and from the per-process copy that verification uses.

Usage: .venv/bin/python scripts/bench_idempotency.py [--count 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import db  # noqa: E402
from provenance.app import build_services, signer_lookup  # noqa: E402
from provenance.idempotency import IdempotencyKey, SignedDelta  # noqa: E402
from provenance.registry import GenerationRequest  # noqa: E402
from scripts.bench_register import fresh_settings, noisy_fixtures  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="images per format")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = fresh_settings(Path(tmp))
        registry = build_services(settings).require_registry()
        request = GenerationRequest(model="bench")
        columns = ("upload KB", "signed KB", "kept KB/key", "register ms", "replay ms")
        print(f"{'format':<6}" + "".join(f"{c:>13}" for c in columns))
        with contextlib.closing(db.open_database(settings.database)) as connection:
            for fmt in ("JPEG", "PNG", "WEBP"):
                uploads = noisy_fixtures(args.count, fmt)
                sizes, signed, kept, first, again = [], [], [], [], []
                for i, data in enumerate(uploads):
                    key = IdempotencyKey("bench", f"{fmt}-{i}")
                    started = time.perf_counter()
                    registration = registry.register(connection, data, request, "x", key)
                    first.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    replay = registry.register(connection, data, request, "x", key)
                    again.append(time.perf_counter() - started)
                    assert replay.replayed and replay.signed == registration.signed
                    middle = connection.execute(
                        "SELECT length(signed_delta) FROM idempotency_keys WHERE idempotency_key = ?",
                        (key.key,),
                    ).fetchone()[0]
                    sizes.append(len(data))
                    signed.append(len(registration.signed))
                    kept.append(middle)
                row = (
                    statistics.median(sizes) / 1024,
                    statistics.median(signed) / 1024,
                    statistics.median(kept) / 1024,
                    statistics.median(first) * 1000,
                    statistics.median(again) * 1000,
                )
                print(f"{fmt:<6}" + "".join(f"{v:>13.1f}" for v in row))
        upload = os.urandom(50 * 1024 * 1024)
        signed = upload[:1000] + os.urandom(4000) + upload[1000:]  # as c2pa inserts into a JPEG
        started = time.perf_counter()
        SignedDelta.between(upload, signed)
        print(f"delta of a 50 MB upload: {(time.perf_counter() - started) * 1000:.0f} ms")
        with contextlib.closing(db.connect(settings.database)) as connection:
            serial = registry.signer_on_record(connection).serial
        for what, max_age in (("reading the signers record", 0.0), ("cached (as verification runs)", 5.0)):
            find = signer_lookup(settings, max_age)
            lookups = []
            for _ in range(200):
                started = time.perf_counter()
                assert find(serial) is not None
                lookups.append(time.perf_counter() - started)
            print(f"signer lookup, {what}: median {statistics.median(lookups) * 1000:.3f} ms")


if __name__ == "__main__":
    main()
