#!/usr/bin/env python3
"""Memory of one serving host per indexed record: PSS of gunicorn's master and all its workers.

Registers ``--records`` 480x360 JPEGs cut from the benchmark corpus (once, kept in
``--data``), then for each source tree (this one and, with ``--baseline-tree``, another checkout
such as main) and each worker count starts ``provenance serve`` twice, over an empty store and
over the filled one, waits for /readyz and for every worker to settle, and sums the proportional
set size (PSS, /proc/PID/smaps_rollup) of the master and its workers: pages shared between them
count once per host, as the host's RAM sees them. The growth between the two, per record, is
what one more record costs a host. Prints one table, with ratios against the baseline tree's row
for the same worker count (measured in the same run), then the store's and the saved index
file's bytes per record on disk.

Usage: .venv/bin/python scripts/bench_memory.py [--records 3000] [--workers 1 2 4]
       [--baseline-tree DIR] [--data /work/scale-data/memory]
(A baseline tree: ``git archive main | tar -x -C DIR``.)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import glob
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import db  # noqa: E402
from provenance.config import Settings  # noqa: E402
from provenance.devkeys import KeyFiles, generate_dev_keys  # noqa: E402
from provenance.registry import GenerationRequest  # noqa: E402
from provenance.services import build_services, index_file  # noqa: E402
from tests.test_server import free_port, wait_ready  # noqa: E402

CORPUS = "bench-data/corpus/img/*.jpg"
SIZE = (480, 360)
SETTLE_SECONDS = 60


def jpeg_480x360(path: str) -> bytes:
    out = io.BytesIO()
    ImageOps.fit(Image.open(path).convert("RGB"), SIZE).save(out, "JPEG", quality=90)
    return out.getvalue()


def fresh_data_dir(directory: Path) -> Settings:
    directory.mkdir(parents=True, exist_ok=True)
    keys = directory / "keys"
    generate_dev_keys(KeyFiles.under(keys, keys / "chain.pem", keys / "signer.key", keys / "root.pem"))
    return Settings(data_dir=directory)


def registered_store(directory: Path, records: int) -> Settings:
    """A data directory with ``records`` registered images; made once and reused."""
    done = directory / f"registered-{records}"
    if done.exists():
        return Settings(data_dir=directory)
    shutil.rmtree(directory, ignore_errors=True)
    settings = fresh_data_dir(directory)
    files = sorted(glob.glob(str(ROOT / CORPUS)))[:records]
    if len(files) < records:
        raise SystemExit(f"{CORPUS} holds {len(files)} images; --records asks for {records}")
    registry = build_services(settings).require_registry()

    def register(chunk: list[str]) -> None:
        with contextlib.closing(db.connect(settings.database)) as connection:
            for path in chunk:
                registry.register(connection, jpeg_480x360(path), GenerationRequest(model="bench"))

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(register, [files[i::2] for i in range(2)]))
    db.close_pools()
    done.touch()
    return settings


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and its children (gunicorn's workers are the master's direct children)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == root_pid:
                    children.append(int(entry.name))
    return [root_pid, *children]


def pss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total


@contextlib.contextmanager
def serving(
    tree: Path, data_dir: Path, workers: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """``provenance serve`` from ``tree``, ready: its base URL, process and seconds to /readyz."""
    port = free_port()
    command = [sys.executable, "-m", "provenance", "--data-dir", str(data_dir), "serve"]
    command += ["--port", str(port), "--workers", str(workers)]
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=tree,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {}), "PYTHONPATH": str(tree)},
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, process, log, timeout=600)
        yield base, process, time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def settled_pss(process: subprocess.Popen[bytes], workers: int) -> int:
    """Summed PSS of a server once it stops changing (each worker loaded, none growing)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    previous = -1
    while time.monotonic() < deadline:
        pids = process_tree(process.pid)
        current = pss_bytes(pids) if len(pids) == workers + 1 else -1
        if current > 0 and abs(current - previous) < 0.005 * current:
            return current
        previous = current
        time.sleep(2)
    raise SystemExit(f"PSS of a server with {workers} workers did not settle in {SETTLE_SECONDS}s")


def host_pss(tree: Path, data_dir: Path, workers: int, log: Path) -> int:
    with serving(tree, data_dir, workers, log) as (_, process, _):
        return settled_pss(process, workers)


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass(frozen=True)
class Row:
    tree: str
    workers: int
    empty: int
    filled: int

    def per_record(self, records: int) -> float:
        return (self.filled - self.empty) / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to measure the same way")
    parser.add_argument("--data", type=Path, default=Path("/work/scale-data/memory"))
    args = parser.parse_args()
    filled = registered_store(args.data / "filled", args.records)
    trees = [("this tree", ROOT)]
    if args.baseline_tree:
        trees.insert(0, ("baseline", args.baseline_tree.resolve()))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        empty = fresh_data_dir(Path(scratch) / "empty")
        for name, tree in trees:
            for workers in args.workers:
                log = Path(scratch) / f"server-{workers}.log"
                rows.append(
                    Row(
                        name,
                        workers,
                        host_pss(tree, empty.data_dir, workers, log),
                        host_pss(tree, filled.data_dir, workers, log),
                    )
                )
    baseline = {row.workers: row for row in rows if row.tree == "baseline"}
    header = f"{'tree':10} {'workers':>7} {'PSS empty MB':>12} {'PSS filled MB':>13} {'KB/record':>10}"
    header += f" {'x baseline':>10}"
    print(f"{args.records} registered {SIZE[0]}x{SIZE[1]} JPEGs; PSS of master + workers per host")
    print(header)
    print("-" * len(header))
    for row in rows:
        base = baseline.get(row.workers)
        per_record = row.per_record(args.records)
        ratio = f"{per_record / base.per_record(args.records):10.2f}" if base else f"{'':>10}"
        print(
            f"{row.tree:10} {row.workers:>7} {row.empty / 1e6:>12.1f} {row.filled / 1e6:>13.1f} "
            f"{per_record / 1e3:>10.1f} {ratio}"
        )
    store = disk_bytes(filled.data_dir) - disk_bytes(filled.data_dir / "keys")
    print(f"store on disk: {store / args.records / 1e3:.1f} KB per record (data directory, keys excluded)")
    saved = index_file(filled).stat().st_size
    print(f"saved index file: {saved / args.records / 1e3:.1f} KB per record")


if __name__ == "__main__":
    main()
