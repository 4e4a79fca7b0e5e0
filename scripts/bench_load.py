#!/usr/bin/env python3
"""Throughput and latency of /v1/verify under concurrent clients, with and without registrations.

Starts a real server (``provenance serve``: gunicorn, 2 workers, on a free loopback port, with a
temporary data directory and no verification limit), registers the test fixtures, then runs
each load for ``--duration`` seconds: clients post a stripped re-encode, a crop or an
unregistered photograph in turn, back to back, each on its own keep-alive connection. Prints
one table: requests per second and p50/p95/p99 latency, and ratios against two baselines
measured in the same run: /healthz with one client (the cost of HTTP and the framework) and
/v1/verify with one client (the cost of a verification on an idle server).

Slow uploads: loads of one client beside N clients that send a body at 10 bytes a second.

Usage: .venv/bin/python scripts/bench_load.py [--duration 10] [--clients 2 8] [--registrations 2]
       [--slow-uploads 2 20]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import io
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import db  # noqa: E402
from provenance.apikeys import create_api_key  # noqa: E402
from provenance.config import Settings  # noqa: E402
from provenance.devkeys import KeyFiles, generate_dev_keys  # noqa: E402
from tests.test_server import free_port, start_server, wait_ready  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
REGISTERED = ("coffee", "chelsea", "astronaut", "rocket")


@dataclass(frozen=True)
class Load:
    name: str
    seconds: float
    latencies_ms: list[float]
    errors: int
    registrations: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def suspects() -> list[bytes]:
    """Copies that need a search: re-encoded (manifest gone), cropped, and one never registered."""
    out = []
    for name in REGISTERED:
        image = Image.open(FIXTURES / f"{name}.jpg")
        width, height = image.size
        out.append(jpeg(image, 70))
        out.append(jpeg(image.crop((width // 5, height // 5, width * 4 // 5, height * 4 // 5))))
    out.append((FIXTURES / "hubble.jpg").read_bytes())
    return out


def registration_call(base: str, key: str, counter: list[int]) -> Callable[[requests.Session], bool]:
    sources = [Image.open(FIXTURES / f"{name}.jpg").convert("RGB") for name in REGISTERED]
    lock = threading.Lock()

    def call(session: requests.Session) -> bool:
        with lock:
            counter[0] += 1
            number = counter[0]
        image = sources[number % len(sources)]
        # A different crop each time, so that every registration is a new image.
        left = number % 40
        data = jpeg(image.crop((left, 0, image.width - 40 + left, image.height)), 90)
        response = session.post(
            f"{base}/v1/generations",
            headers={"Authorization": f"Bearer {key}"},
            files={"image": ("g.jpg", data)},
            data={"metadata": json.dumps({"model": "bench"})},
            timeout=60,
        )
        return response.status_code == 201

    return call


class SlowUploads:
    """``count`` clients sending a /v1/verify body at 10 bytes a second for as long as they run;
    one cut off by the server (408 under the minimum upload rate) comes back at once."""

    HEAD = (
        b"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    )

    def __init__(self, port: int, count: int) -> None:
        self._port = port
        self._sockets = [self._open() for _ in range(count)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self.reopened = 0

    def _open(self) -> socket.socket:
        connection = socket.create_connection(("127.0.0.1", self._port), timeout=5)
        connection.sendall(self.HEAD)
        return connection

    def _trickle(self) -> None:
        while not self._stop.wait(0.1):
            for number, connection in enumerate(self._sockets):
                try:
                    connection.sendall(b"x")
                except OSError:
                    connection.close()
                    self._sockets[number] = self._open()
                    self.reopened += 1

    def __enter__(self) -> SlowUploads:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._sockets:
            connection.close()


def run_load(
    name: str,
    call: Callable[[requests.Session], bool],
    clients: int,
    seconds: float,
    background: list[tuple[Callable[[requests.Session], bool], int]] = (),  # type: ignore[assignment]
) -> Load:
    """``clients`` threads calling back to back for ``seconds``; ``background`` clients run
    meanwhile and are not measured."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(measured: bool, job: Callable[[requests.Session], bool]) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    ok = job(session)
                except requests.RequestException:
                    ok = False
                elapsed = (time.perf_counter() - started) * 1000
                if measured:
                    with lock:
                        if ok:
                            latencies.append(elapsed)
                        else:
                            errors[0] += 1

    jobs = [(True, call)] * clients + [(False, job) for job, count in background for _ in range(count)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        for future in [pool.submit(client, measured, job) for measured, job in jobs]:
            future.result()
    return Load(name, time.monotonic() - started, latencies, errors[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per load (default 10)")
    parser.add_argument("--clients", type=int, nargs="+", default=[2, 8], help="verify clients per load")
    parser.add_argument("--registrations", type=int, default=2, help="registration clients beside them")
    parser.add_argument(
        "--slow-uploads", type=int, nargs="*", default=[2, 20], help="slow clients (10 B/s) beside one client"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-load-") as scratch:
        data_dir = Path(scratch) / "data"
        keys = data_dir / "keys"
        generate_dev_keys(KeyFiles.under(keys, keys / "chain.pem", keys / "signer.key", keys / "root.pem"))
        with db.open_database(data_dir / "provenance.sqlite3") as connection:
            key = create_api_key(connection, frozenset({"sign"}), "bench")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = Path(scratch) / "server.log"
        unlimited = {"PROVENANCE_VERIFY_PER_MINUTE": "0", "PROVENANCE_VERIFY_PER_MINUTE_WITH_KEY": "0"}
        server = start_server(Settings(data_dir=data_dir), port, 2, log, unlimited)
        try:
            wait_ready(base, server, log, timeout=120)
            registered = [0]
            register = registration_call(base, key, registered)
            with requests.Session() as session:
                for _ in REGISTERED:
                    assert register(session)
            queries = suspects()
            turn = [0]

            def verify(session: requests.Session) -> bool:
                turn[0] += 1
                data = queries[turn[0] % len(queries)]
                response = session.post(f"{base}/v1/verify", files={"image": ("s.jpg", data)}, timeout=60)
                return response.status_code == 200

            def health(session: requests.Session) -> bool:
                return session.get(f"{base}/healthz", timeout=10).status_code == 200

            loads = [run_load("/healthz, 1 client", health, 1, args.duration)]
            loads.append(run_load("/v1/verify, 1 client", verify, 1, args.duration))
            for slow in args.slow_uploads:
                with SlowUploads(port, slow):
                    time.sleep(1)  # every slow client is inside its body
                    for path, call in (("/healthz", health), ("/v1/verify", verify)):
                        name = f"{path}, 1 client, {slow} slow uploads"
                        loads.append(run_load(name, call, 1, args.duration))
            for clients in args.clients:
                loads.append(run_load(f"/v1/verify, {clients} clients", verify, clients, args.duration))
                before = registered[0]
                load = run_load(
                    f"/v1/verify, {clients} clients + {args.registrations} registering",
                    verify,
                    clients,
                    args.duration,
                    [(register, args.registrations)],
                )
                loads.append(dataclasses.replace(load, registrations=registered[0] - before))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    health_p50 = loads[0].percentile(50)
    verify_one = loads[1]
    header = (
        f"{'load':44} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>6}"
        f" {'p50 x health':>12} {'p50 x 1 client':>14} {'req/s x 1 client':>16} {'reg/s':>6}"
    )
    print(f"server: 2 workers x 32 threads, {os.cpu_count()} CPUs; {args.duration:g} s per load")
    print(header)
    print("-" * len(header))
    for load in loads:
        print(
            f"{load.name:44} {load.rate:>7.1f} {load.percentile(50):>8.1f} {load.percentile(95):>8.1f}"
            f" {load.percentile(99):>8.1f} {load.percentile(100):>8.1f} {load.errors:>6}"
            f" {load.percentile(50) / health_p50:>12.1f}"
            f" {load.percentile(50) / verify_one.percentile(50):>14.2f} {load.rate / verify_one.rate:>16.2f}"
            f" {load.registrations / load.seconds:>6.1f}"
        )


if __name__ == "__main__":
    main()
