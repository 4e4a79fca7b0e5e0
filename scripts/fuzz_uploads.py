#!/usr/bin/env python3
"""Malformed uploads to a real server over HTTP: prints how many got each status, per endpoint.

Sends the mutations of tests/mutations.py (damaged manifests, chunk CRCs and lengths, headers,
tails, hostile metadata) made from three signed images to /v1/verify, /v1/verify/batch,
/sbr/v1/matches/byContent and /v1/generations. Without --url it starts its own server
(`provenance serve`, 2 workers, on a free loopback port, in a temporary data directory, with
verification unlimited); with --url and --key it uses that one. Exits 1 if any answer was a 5xx
or a request got no answer within --timeout seconds.

Usage: .venv/bin/python scripts/fuzz_uploads.py [--count 2000] [--seed 1] [--url URL --key KEY]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance.config import Settings  # noqa: E402
from tests import mutations  # noqa: E402
from tests.test_server import free_port, start_server, wait_ready  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"


def cli(data_dir: Path, *args: str) -> str:
    command = [sys.executable, "-m", "provenance", "--data-dir", str(data_dir), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def own_server() -> Iterator[tuple[str, str]]:
    """A fresh server on loopback; yields its URL and an API key with every scope."""
    with tempfile.TemporaryDirectory(prefix="fuzz-uploads-") as folder:
        data_dir = Path(folder) / "data"
        cli(data_dir, "keys", "init")
        key = cli(
            data_dir, "apikey", "create", "--scope", "sign,read,verify,fetch:manifests", "--name", "fuzz"
        )
        port = free_port()
        unlimited = {"PROVENANCE_VERIFY_PER_MINUTE": "0", "PROVENANCE_VERIFY_PER_MINUTE_WITH_KEY": "0"}
        log = Path(folder) / "server.log"
        server = start_server(Settings(data_dir=data_dir), port, 2, log, unlimited)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, server, log, timeout=60)
            yield url, key
        finally:
            server.terminate()
            server.wait(timeout=30)


def small(name: str, fmt: str) -> bytes:
    image = Image.open(FIXTURES / name).convert("RGB")
    image = image.resize((256, round(256 * image.height / image.width)))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def register(url: str, key: str, image: bytes, filename: str) -> bytes:
    response = requests.post(
        f"{url}/v1/generations",
        files={"image": (filename, image)},
        data={"metadata": '{"model": "fuzz-original"}'},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    response.raise_for_status()
    return response.content


def send(url: str, key: str, upload: mutations.Upload, timeout: float) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if upload.endpoint == mutations.BY_CONTENT:
        headers["Content-Type"] = upload.content_type
        return requests.post(url + upload.endpoint, data=upload.images[0], headers=headers, timeout=timeout)
    files = [("image", (f"f{i}", image)) for i, image in enumerate(upload.images)]
    data = {"metadata": upload.metadata} if upload.metadata is not None else None
    return requests.post(url + upload.endpoint, files=files, data=data, headers=headers, timeout=timeout)


def run(url: str, key: str, count: int, seed: int, timeout: float) -> int:
    originals = [
        register(url, key, small("coffee.jpg", "JPEG"), "coffee.jpg"),
        register(url, key, small("rocket.jpg", "PNG"), "rocket.png"),
        register(url, key, small("chelsea.jpg", "WEBP"), "chelsea.webp"),
    ]
    table: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    failures: list[str] = []
    latencies: list[float] = []
    started = time.perf_counter()
    for number, upload in enumerate(mutations.uploads(originals, seed, count)):
        began = time.perf_counter()
        try:
            status = str(send(url, key, upload, timeout).status_code)
        except requests.Timeout:
            status = "timeout"
        latencies.append(time.perf_counter() - began)
        table[upload.endpoint][status] += 1
        if status == "timeout" or status.startswith("5"):
            failures.append(f"#{number} {upload.endpoint} {upload.kind}: {status}")
    elapsed = time.perf_counter() - started

    statuses = sorted({status for counter in table.values() for status in counter})
    print(f"{count} malformed uploads, seed {seed}, {url}, {elapsed:.0f} s")
    print(f"| endpoint | {' | '.join(statuses)} | 5xx or timeout |")
    print(f"| --- | {' | '.join('---:' for _ in statuses)} | ---: |")
    for endpoint, counter in sorted(table.items()):
        bad = sum(n for status, n in counter.items() if status == "timeout" or status.startswith("5"))
        print(f"| `{endpoint}` | {' | '.join(str(counter[s]) for s in statuses)} | {bad} |")
    latencies.sort()
    print(
        f"latency: median {1000 * latencies[len(latencies) // 2]:.0f} ms, max {1000 * latencies[-1]:.0f} ms"
    )
    for failure in failures:
        print(failure)
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60, help="seconds before a request counts as hung")
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--key", help="its API key with scopes sign, verify and fetch:manifests")
    args = parser.parse_args()
    if args.url:
        if not args.key:
            parser.error("--url needs --key")
        sys.exit(run(args.url.rstrip("/"), args.key, args.count, args.seed, args.timeout))
    with own_server() as (url, key):
        code = run(url, key, args.count, args.seed, args.timeout)
    sys.exit(code)


if __name__ == "__main__":
    main()
