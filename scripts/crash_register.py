#!/usr/bin/env python3
"""kill -9 two API hosts in the middle of registering, on one PostgreSQL store, and count records.

Two hosts (their own data directories, one PostgreSQL 15 with its default durability) serve
registrations from --clients client threads each. After a random moment in each round both hosts'
whole process groups (gunicorn master and workers) get SIGKILL; they are then restarted. A record
whose signed image a client received must be in the store, complete (its manifest store and both
fingerprint kinds), exactly once. Records that committed but whose response the kill cut off are
counted apart: the client saw an error and registers again. At the end, each host must have caught
up with every record, and the time until a record registered at one host is found by the other's
fingerprint search (a crop, not the bytes) is measured.

Usage: .venv/bin/python scripts/crash_register.py [--rounds 3] [--seconds 8] [--clients 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import db  # noqa: E402
from provenance.apikeys import create_api_key  # noqa: E402
from provenance.config import Settings  # noqa: E402
from provenance.devkeys import KeyFiles, generate_dev_keys  # noqa: E402
from tests import transforms  # noqa: E402
from tests.postgres import PostgresCluster  # noqa: E402
from tests.test_server import free_port, start_server, wait_ready  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"


def images() -> list[bytes]:
    out = []
    for path in sorted(FIXTURES.glob("*.jpg")):
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize((512, 512)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


@contextlib.contextmanager
def hosts(
    all_settings: list[Settings], logs: Path
) -> Iterator[tuple[list[str], list[subprocess.Popen[bytes]]]]:
    """The hosts started (one gunicorn worker each), ready; killed with SIGKILL at the end."""
    ports = [free_port() for _ in all_settings]
    log_files = [logs / f"host-{port}.log" for port in ports]
    processes = [
        start_server(settings, port, 1, log)
        for settings, port, log in zip(all_settings, ports, log_files, strict=True)
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base, process, log in zip(bases, processes, log_files, strict=True):
            wait_ready(base, process, log, timeout=120)
        yield bases, processes
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def register(base: str, key: str, data: bytes) -> requests.Response:
    return requests.post(
        f"{base}/v1/generations",
        headers={"Authorization": f"Bearer {key}"},
        files={"image": ("x.jpg", data, "image/jpeg")},
        data={"metadata": json.dumps({"model": "crash"})},
        timeout=60,
    )


def store_counts(url: str) -> tuple[set[str], int, int]:
    """Generation ids in the store, how many appear more than once, and how many are incomplete."""
    with contextlib.closing(db.connect(url)) as connection:
        ids = [row[0] for row in connection.execute("SELECT generation_id FROM records")]
        incomplete = connection.execute(
            "SELECT count(*) FROM records r WHERE NOT EXISTS"
            " (SELECT 1 FROM manifest_stores m WHERE m.record_id = r.id)"
            " OR (SELECT count(*) FROM fingerprints f WHERE f.record_id = r.id) < 2"
        ).fetchone()[0]
    return set(ids), len(ids) - len(set(ids)), int(incomplete)


def visibility(bases: list[str], key: str, pictures: list[bytes]) -> tuple[float, list[str]]:
    """The worst time from a registration's response at the first host until the second host's
    search (a crop of the signed image: fingerprints, not bytes) finds it. Run on a store where
    each picture is new, so that the record found can only be that one. Also returns the
    generation ids registered."""
    delays, received = [], []
    for picture in pictures:
        response = register(bases[0], key, picture)
        registered_at = time.monotonic()
        received.append(response.headers["X-Generation-Id"])
        crop = transforms.crop(response.content, 0.5)[0]
        while True:
            found = requests.post(
                f"{bases[1]}/v1/verify",
                headers={"Authorization": f"Bearer {key}"},
                files={"image": ("s.jpg", crop)},
                timeout=30,
            ).json()
            if [m["generation_id"] for m in found["matches"][:1]] == [response.headers["X-Generation-Id"]]:
                break
            time.sleep(0.05)
        delays.append(time.monotonic() - registered_at)
    return max(delays), received


def crash_round(
    all_settings: list[Settings], logs: Path, key: str, pictures: list[bytes], seconds: float, clients: int
) -> tuple[float, list[str]]:
    """Register through every host from ``clients`` threads each until both hosts are killed;
    returns when they were killed and the generation ids whose signed images clients received."""
    received: list[str] = []
    stop = threading.Event()

    def client(base: str, seed: int) -> None:
        chooser = random.Random(seed)
        while not stop.is_set():
            try:
                response = register(base, key, chooser.choice(pictures))
            except requests.RequestException:
                continue  # the host was killed mid-request: nothing was received
            if response.status_code == 201:
                received.append(response.headers["X-Generation-Id"])

    with hosts(all_settings, logs) as (bases, processes):
        threads = [
            threading.Thread(target=client, args=(base, random.random()))
            for base in bases
            for _ in range(clients)
        ]
        for thread in threads:
            thread.start()
        killed_after = random.uniform(seconds / 2, seconds)
        time.sleep(killed_after)
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
        stop.set()
        for thread in threads:
            thread.join()
    return killed_after, received


def two_hosts(scratch: Path, url: str) -> list[Settings]:
    """Two data directories with the same signing keys, on the store at ``url``."""
    keys = scratch / "keys"
    generate_dev_keys(KeyFiles.under(keys, keys / "chain.pem", keys / "signer.key", keys / "root.pem"))
    for name in ("host-a", "host-b"):
        shutil.copytree(keys, scratch / name / "keys")
    return [Settings(data_dir=scratch / name, database_url=url) for name in ("host-a", "host-b")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="longest run before the kill")
    parser.add_argument("--clients", type=int, default=2, help="client threads per host")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up the servers and the cluster
    pictures = images()
    cluster = PostgresCluster.start(durable=True)
    scratch = Path(tempfile.mkdtemp(prefix="crash-register-"))
    try:
        with cluster.database() as url:
            all_settings = two_hosts(scratch, url)
            os.environ["PROVENANCE_DATABASE_URL"] = url  # for the hosts started
            with contextlib.closing(db.open_database(url)) as connection:
                key = create_api_key(connection, frozenset({"sign", "verify"}))
            with hosts(all_settings, scratch) as (bases, _):
                worst, first = visibility(bases, key, pictures)
            print(f"cross-host visibility, worst of {len(pictures)}: {worst:.2f} s")
            received = set(first)
            print(
                f"{'round':>5} {'killed after s':>14} {'received':>9} {'stored':>7} {'lost':>5}"
                f" {'duplicated':>10} {'incomplete':>10} {'committed, unanswered':>22}"
            )
            for number in range(1, args.rounds + 1):
                killed, got = crash_round(all_settings, scratch, key, pictures, args.seconds, args.clients)
                received.update(got)
                stored, duplicated, incomplete = store_counts(url)
                lost, unanswered = len(received - stored), len(stored - received)
                print(
                    f"{number:>5} {killed:>14.1f} {len(received):>9} {len(stored):>7} {lost:>5}"
                    f" {duplicated:>10} {incomplete:>10} {unanswered:>22}"
                )
            with hosts(all_settings, scratch) as (bases, _):
                ready = [requests.get(f"{base}/readyz", timeout=30).json() for base in bases]
            caught_up = ", ".join(f"{r['indexed_through']}/{r['records']}" for r in ready)
            print(f"restarted hosts, indexed through / last record id: {caught_up}")
    finally:
        cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
