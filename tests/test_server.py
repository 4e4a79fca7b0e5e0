"""Real gunicorn processes on one data directory: what one registers, the other finds."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from provenance import db
from provenance.config import Settings
from provenance.registry import GenerationRequest
from provenance.server import prepare
from provenance.services import build_services
from tests import transforms
from tests.conftest import api_key, data_dir_with_keys, fixture_bytes
from tests.smooth_pictures import Design


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


def start_server(
    settings: Settings, port: int, workers: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
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
        return subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


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


def register_rocket(base: str, settings: Settings) -> requests.Response:
    return requests.post(
        f"{base}/v1/generations",
        headers={"Authorization": f"Bearer {api_key(settings, 'sign')}"},
        files={"image": ("rocket.jpg", fixture_bytes("rocket.jpg"), "image/jpeg")},
        data={"metadata": '{"model": "m"}'},
        timeout=30,
    )


@pytest.mark.slow
def test_a_record_deleted_through_one_process_is_gone_from_the_other_within_2s(
    settings: Settings, two_servers: tuple[str, str]
) -> None:
    writer, reader = two_servers
    response = register_rocket(writer, settings)
    suspect = transforms.crop(response.content, 0.5)[0]
    found = requests.post(f"{reader}/v1/verify", files={"image": ("s.jpg", suspect)}, timeout=30).json()
    assert found["verdict"] == "matched"
    link = found["matches"][0]["record"]["thumbnail_url"]
    assert requests.get(f"{reader}{link}", timeout=30).status_code == 200
    generation_id = response.headers["X-Generation-Id"]
    deleted = requests.delete(
        f"{writer}/v1/generations/{generation_id}",
        headers={"Authorization": f"Bearer {api_key(settings, 'admin')}"},
        timeout=30,
    )
    assert deleted.status_code == 200
    deleted_at = time.monotonic()
    while True:
        found = requests.post(f"{reader}/v1/verify", files={"image": ("s.jpg", suspect)}, timeout=30).json()
        if found["verdict"] == "no_match":
            break
        assert time.monotonic() - deleted_at < 2, found
        time.sleep(0.1)
    assert requests.get(f"{reader}{link}", timeout=30).status_code == 404
    signed = requests.post(f"{reader}/v1/verify", files={"image": ("r.jpg", response.content)}, timeout=30)
    assert signed.json()["verdict"] == "deleted"
    ready = requests.get(f"{reader}/readyz", timeout=5)
    assert ready.status_code == 200


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


@pytest.mark.slow
def test_one_idempotency_key_sent_to_two_servers_at_once_makes_one_record(
    settings: Settings, two_servers: tuple[str, str]
) -> None:
    key = api_key(settings, "sign")

    def post(base: str) -> requests.Response:
        return requests.post(
            f"{base}/v1/generations",
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": '"upload-7"'},
            files={"image": ("coffee.jpg", fixture_bytes("coffee.jpg"), "image/jpeg")},
            data={"metadata": '{"model": "m"}'},
            timeout=60,
        )

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(post, two_servers))
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].headers["X-Generation-Id"] == answers[1].headers["X-Generation-Id"]
    assert answers[0].content == answers[1].content
    retry = post(two_servers[0])
    assert retry.content == answers[0].content and retry.headers["Idempotent-Replayed"] == "true"
    with contextlib.closing(db.open_database(settings.database)) as connection:
        assert connection.execute("SELECT count(*) FROM records").fetchone()[0] == 1


def start_one(
    settings: Settings, tmp_path: Path, env: dict[str, str] | None = None, workers: int = 2
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    process = start_server(settings, port, workers, log, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process, log)
    except AssertionError:
        stop(process)
        raise
    return base, process


def stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


class SlowUploads:
    """``count`` clients each sending a /v1/verify body at about 10 bytes a second, with a
    Content-Length or in chunks of one byte."""

    def __init__(self, base: str, count: int, chunked: bool = False) -> None:
        port = int(base.rsplit(":", 1)[1])
        self._sockets = []
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: 100000"
        start = b'--b\r\nContent-Disposition: form-data; name="image"; filename="s.jpg"\r\n\r\n'
        self._byte = b"1\r\nx\r\n" if chunked else b"x"
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            connection.sendall(
                b"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n"
                + framing
                + b"\r\n\r\n"
                + (b"%x\r\n%s\r\n" % (len(start), start) if chunked else start)
            )
            self._sockets.append(connection)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(0.1):
            for connection in self._sockets:
                with contextlib.suppress(OSError):
                    connection.sendall(self._byte)

    def answers(self, timeout: float) -> list[bytes]:
        """What each client has been answered, waiting up to ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        found = []
        for connection in self._sockets:
            connection.settimeout(max(0.01, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                found.append(connection.recv(4096))
        return found

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._sockets:
            connection.close()


def timed(call: Callable[[], requests.Response]) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = call()
    return time.monotonic() - started, response


@pytest.mark.slow
@pytest.mark.parametrize("clients", [2, 20])
def test_slow_uploads_leave_health_and_verify_answering_within_a_second(
    settings: Settings, tmp_path: Path, clients: int
) -> None:
    """Each slow client holds what reads its body; with one thread per worker process, two of
    them made /healthz wait 19 s."""
    base, process = start_one(settings, tmp_path)
    suspect = fixture_bytes("rocket.jpg")
    try:
        uploads = SlowUploads(base, clients)
        try:
            time.sleep(1)  # every slow client is past its headers and inside its body
            for _ in range(3):
                health_s, health = timed(lambda: requests.get(f"{base}/healthz", timeout=5))
                verify_s, verified = timed(
                    lambda: requests.post(f"{base}/v1/verify", files={"image": ("s.jpg", suspect)}, timeout=5)
                )
                assert health.status_code == 200 and health_s < 1, health_s
                assert verified.status_code == 200 and verify_s < 1, verify_s
        finally:
            uploads.close()
    finally:
        stop(process)


def control_sockets(home: Path) -> list[Path]:
    return [path for path in home.rglob("*") if path.is_socket()]


@pytest.mark.slow
def test_servers_create_no_control_socket_that_another_instance_could_remove(
    settings: Settings, tmp_path: Path
) -> None:
    """gunicorn's control socket defaulted to one path in the home folder (or XDG_RUNTIME_DIR)
    for every instance: stopping one removed it under the others."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir()
    other = Settings(data_dir=tmp_path / "other")
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    first_base, first = start_one(settings, tmp_path, env)
    try:
        _, second = start_one(other, tmp_path, env)
        try:
            assert control_sockets(home) == control_sockets(runtime) == []
        finally:
            stop(second)
        assert requests.get(f"{first_base}/healthz", timeout=5).status_code == 200
    finally:
        stop(first)


def logged_requests(tmp_path: Path) -> list[dict[str, Any]]:
    (log,) = tmp_path.glob("server-*.log")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [line for line in lines if line["logger"] == "provenance.access"]


@pytest.mark.slow
def test_metrics_add_up_every_worker_and_logs_are_json_lines_with_the_request_id(
    settings: Settings, tmp_path: Path
) -> None:
    base, process = start_one(settings, tmp_path)
    try:
        sent: list[str] = []

        def verify(request_id: str) -> None:
            response = requests.post(
                f"{base}/v1/verify",
                files={"image": ("s.jpg", fixture_bytes("rocket.jpg"))},
                headers={"X-Request-Id": request_id, "Connection": "close"},
                timeout=30,
            )
            assert response.headers["X-Request-Id"] == request_id

        # New connections four at a time, until both workers have answered some (bounded): one
        # after another, an idle worker can win every accept and answer all of them itself.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            while len(sent) < 80 and (not sent or len({r["pid"] for r in logged_requests(tmp_path)}) < 2):
                burst = [f"check-{len(sent) + n}" for n in range(4)]
                sent.extend(burst)
                list(pool.map(verify, burst))
        text = requests.get(f"{base}/metrics", timeout=5).text
    finally:
        stop(process)
    logged = [line for line in logged_requests(tmp_path) if line["path"] == "/v1/verify"]
    assert len({line["pid"] for line in logged}) == 2
    assert sorted(line["request_id"] for line in logged) == sorted(sent)
    assert {(line["method"], line["status"], line["level"]) for line in logged} == {("POST", 200, "INFO")}
    (log,) = tmp_path.glob("server-*.log")
    lines = log.read_text().splitlines()
    assert len(lines) == len(set(lines)), "a line logged twice"
    assert "gunicorn.access" not in {json.loads(line)["logger"] for line in lines}, "a second access log"
    count = f"{float(len(sent))}"
    assert f'provenance_http_requests_total{{method="POST",route="/v1/verify",status="200"}} {count}' in text
    assert f'provenance_verdicts_total{{verdict="no_match"}} {count}' in text


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_upload_slower_than_the_minimum_rate_ends_in_a_408_and_frees_its_thread(
    settings: Settings, tmp_path: Path, chunked: bool
) -> None:
    """One worker of two threads, both held by clients sending 10 bytes a second: after the
    grace second each gets a 408, and the thread serves others again."""
    env = {"PROVENANCE_THREADS": "2", "PROVENANCE_UPLOAD_GRACE_SECONDS": "1"}
    base, process = start_one(settings, tmp_path, env, workers=1)
    try:
        uploads = SlowUploads(base, 2, chunked)
        try:
            started = time.monotonic()
            answers = uploads.answers(timeout=5)
            waited = time.monotonic() - started
            health_s, health = timed(lambda: requests.get(f"{base}/healthz", timeout=5))
        finally:
            uploads.close()
    finally:
        stop(process)
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), answers
    assert all(b"application/problem+json" in answer for answer in answers)
    assert waited < 3
    assert health.status_code == 200 and health_s < 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenMP's default is one thread anyway")
def test_request_threads_keep_faiss_to_one_thread() -> None:
    """OpenMP's thread count is per thread: a request thread would otherwise search with one
    OpenMP thread per core, all contending for the cores the other workers use."""
    import faiss

    from provenance.server import _ThreadWorker

    worker = SimpleNamespace(cfg=SimpleNamespace(threads=2))
    with _ThreadWorker.get_thread_pool(worker) as pool:
        assert pool.submit(faiss.omp_get_max_threads).result() == 1


def verdicts_by_worker(base: str, tmp_path: Path, suspect: bytes, workers: int = 2) -> dict[int, set[str]]:
    """Verdicts on ``suspect`` per worker pid, asked on new connections four at a time until
    ``workers`` workers have answered (an idle worker can win every accept), for at most 30 s."""
    verdicts: dict[str, str] = {}

    def verify(request_id: str) -> None:
        response = requests.post(
            f"{base}/v1/verify",
            files={"image": ("s.jpg", suspect)},
            headers={"X-Request-Id": request_id, "Connection": "close"},
            timeout=30,
        )
        verdicts[request_id] = response.json().get("verdict", response.text)

    deadline = time.monotonic() + 30
    by_worker: dict[int, set[str]] = {}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        while time.monotonic() < deadline and len(by_worker) < workers:
            list(pool.map(verify, [f"ask-{len(verdicts) + n}-{time.monotonic()}" for n in range(4)]))
            for line in logged_requests(tmp_path):
                if line["request_id"] in verdicts:
                    by_worker.setdefault(line["pid"], set()).add(verdicts[line["request_id"]])
    return by_worker


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # gunicorn's part, not the store's
def test_workers_sharing_their_masters_index_each_find_records_registered_before_and_after_start(
    settings: Settings, tmp_path: Path
) -> None:
    """Workers inherit the index and the smooth records their master loaded instead of loading
    them each: every worker, and one forked again after a crash, must still find what was on
    record at start and what a worker registered since (each catches up on its own copy-on-write
    pages)."""
    registry = build_services(settings).require_registry()
    gradient = transforms.encode(Design("linear", 0).picture(), "JPEG", quality=92)
    with contextlib.closing(db.connect(settings.database)) as connection:
        registry.register(connection, fixture_bytes("coffee.jpg"), GenerationRequest(model="m"))
        registry.register(connection, gradient, GenerationRequest(model="m"))
    db.close_pools()
    on_record = transforms.crop(fixture_bytes("coffee.jpg"), 0.5)[0]
    unlimited = {"PROVENANCE_VERIFY_PER_MINUTE": "0", "PROVENANCE_VERIFY_PER_MINUTE_WITH_KEY": "0"}
    base, process = start_one(settings, tmp_path, unlimited)
    try:
        first = verdicts_by_worker(base, tmp_path, on_record)
        assert len(first) == 2 and all(v == {"matched"} for v in first.values()), first
        # Found by colour alone (no keypoints, a PDQ hash of low quality): the master's smooth records.
        smooth_copy = transforms.encode(transforms.decode(gradient), "JPEG", quality=90)
        by_colour = verdicts_by_worker(base, tmp_path, smooth_copy)
        assert len(by_colour) == 2 and all(v == {"matched"} for v in by_colour.values()), by_colour
        assert register_rocket(base, settings).status_code == 201
        registered = transforms.crop(fixture_bytes("rocket.jpg"), 0.5)[0]
        found = verdicts_by_worker(base, tmp_path, registered)
        assert len(found) == 2 and all(v == {"matched"} for v in found.values()), found
        crashed = min(found)
        os.kill(crashed, signal.SIGKILL)  # gunicorn forks another from the master's start-time index
        for suspect in (registered, on_record):
            after_crash = verdicts_by_worker(base, tmp_path, suspect)
            assert crashed not in after_crash and len(after_crash) == 2, after_crash
            assert all(v == {"matched"} for v in after_crash.values()), after_crash
    finally:
        stop(process)
    (log,) = tmp_path.glob("server-*.log")
    assert "could not catch its index up" not in log.read_text()  # the master's copy was caught up
