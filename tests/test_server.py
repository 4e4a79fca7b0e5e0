"""Real gunicorn processes on one data directory: what one registers, the other finds."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from provenance.config import Settings
from provenance.server import prepare
from tests import transforms
from tests.conftest import api_key, data_dir_with_keys, fixture_bytes


def open_files() -> list[str]:
    fds = Path("/proc/self/fd")
    return [os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
# The file is SQLite's; prepare closes its PostgreSQL pools too, but their sockets look like any other.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_preparing_the_server_leaves_no_database_open_for_the_workers_to_inherit(settings: Settings) -> None:
    """gunicorn forks its workers from the process that prepared the store: a connection still
    open there (left to the garbage collector) shares SQLite's locks with them, and their reads
    then miss other processes' writes or fail with disk I/O errors."""
    prepare(settings)
    assert not [path for path in open_files() if path.startswith(str(settings.database))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(settings: Settings, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "provenance",
        "--data-dir",
        str(settings.data_dir),
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    with log.open("wb") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} not ready after {timeout}s")


@contextlib.contextmanager
def serving(hosts: list[Settings], log_dir: Path) -> Iterator[tuple[str, ...]]:
    """One single-worker server per settings, ready; their base URLs."""
    ports = [free_port() for _ in hosts]
    logs = [log_dir / f"server-{port}.log" for port in ports]
    processes = [start_server(host, port, 1, log) for host, port, log in zip(hosts, ports, logs, strict=True)]
    try:
        bases = tuple(f"http://127.0.0.1:{port}" for port in ports)
        for base, process, log in zip(bases, processes, logs, strict=True):
            wait_ready(base, process, log)
        yield bases
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)


@pytest.fixture
def two_servers(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, ...]]:
    with serving([settings, settings], tmp_path) as bases:
        yield bases


@pytest.mark.slow
def test_record_registered_through_one_process_is_found_by_the_other_within_2s(
    settings: Settings, two_servers: tuple[str, ...]
) -> None:
    writer, reader = two_servers
    key = api_key(settings, "sign")
    for name in ("coffee", "rocket", "astronaut"):
        response = requests.post(
            f"{writer}/v1/generations",
            headers={"Authorization": f"Bearer {key}"},
            files={"image": (f"{name}.jpg", fixture_bytes(f"{name}.jpg"), "image/jpeg")},
            data={"metadata": '{"model": "m"}'},
            timeout=30,
        )
        assert response.status_code == 201
        registered_at = time.monotonic()
        suspect = transforms.crop(response.content, 0.5)[0]
        while True:
            found = requests.post(
                f"{reader}/v1/verify", files={"image": ("s.jpg", suspect)}, timeout=30
            ).json()
            if found["verdict"] == "matched":
                break
            assert time.monotonic() - registered_at < 2, found
            time.sleep(0.1)
        assert found["matches"][0]["generation_id"] == response.headers["X-Generation-Id"]


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # gunicorn's part, not the store's
def test_served_errors_are_problem_json(two_servers: tuple[str, ...]) -> None:
    base = two_servers[0]
    response = requests.post(f"{base}/v1/verify", files={"image": ("x.txt", b"plain text")}, timeout=30)
    assert response.status_code == 415
    assert response.headers["Content-Type"] == "application/problem+json"
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}


def test_run_script_names_the_documented_command() -> None:
    script = (Path(__file__).parents[1] / "scripts" / "run").read_text()
    assert "keys init --if-missing" in script
    assert "provenance serve" in script


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_hosts_on_one_postgresql_register_at_once_and_find_each_others_records(
    settings: Settings, dev_keys: Path, tmp_path: Path
) -> None:
    """Two API hosts (their own data directories and indexes) on one PostgreSQL store."""
    other_host = replace(settings, data_dir=data_dir_with_keys(tmp_path / "other-host", dev_keys))
    key = api_key(settings, "sign,read")  # API keys live in the shared store too
    headers = {"Authorization": f"Bearer {key}"}
    images = {"coffee": 0, "rocket": 1, "chelsea": 0, "astronaut": 1}  # name -> the host it goes to
    with serving([settings, other_host], tmp_path) as bases:

        def register_at(name: str) -> tuple[str, int, requests.Response]:
            response = requests.post(
                f"{bases[images[name]]}/v1/generations",
                headers=headers,
                files={"image": (f"{name}.jpg", fixture_bytes(f"{name}.jpg"), "image/jpeg")},
                data={"metadata": '{"model": "m"}'},
                timeout=60,
            )
            assert response.status_code == 201, response.text
            return name, images[name], response

        with concurrent.futures.ThreadPoolExecutor(len(images)) as pool:
            registered = list(pool.map(register_at, images))
        for name, host, response in registered:
            other = bases[1 - host]
            generation_id = response.headers["X-Generation-Id"]
            assert requests.get(f"{other}/v1/generations/{generation_id}", headers=headers, timeout=30).ok
            suspect = transforms.crop(response.content, 0.5)[0]  # found by its fingerprints, not its bytes
            found = requests.post(
                f"{other}/v1/verify", files={"image": ("s.jpg", suspect)}, timeout=60
            ).json()
            assert found["verdict"] == "matched", name
            assert found["matches"][0]["generation_id"] == generation_id
        ready = [requests.get(f"{base}/readyz", timeout=30).json() for base in bases]
        assert [r["indexed_through"] for r in ready] == [r["records"] for r in ready]
