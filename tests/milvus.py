"""A throwaway Milvus 2.3 standalone server for the tests: the PyPI package ``milvus`` runs the real
server binary (embedded etcd, local storage) in a temp folder, on ports it finds free.

One server per run (it starts in about 10 s); each test gets its own collection prefix, and its
collections are dropped afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from pymilvus import MilvusClient


class MilvusCluster:
    def __init__(self, directory: Path, server: object, uri: str) -> None:
        self.directory, self._server, self.uri = directory, server, uri
        self._names = itertools.count()

    @classmethod
    def start(cls) -> MilvusCluster:
        try:
            from milvus import MilvusServer
        except ImportError as exc:
            raise RuntimeError("the embedded Milvus server is missing: scripts/setup installs it") from exc
        directory = Path(tempfile.mkdtemp(prefix="provenance-milvus-"))
        server = MilvusServer()
        server.set_base_dir(str(directory))
        with warnings.catch_warnings():
            # Its search for free ports leaves each port it cannot bind (one of an earlier run, in
            # TIME_WAIT) to a socket it never closes.
            warnings.simplefilter("ignore", ResourceWarning)
            server.start()
        return cls(directory, server, f"http://127.0.0.1:{server.listen_port}")

    def client(self) -> MilvusClient:
        return MilvusClient(uri=self.uri)

    @contextlib.contextmanager
    def prefix(self) -> Iterator[str]:
        """A collection prefix no other test uses; its collections are dropped afterwards."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        try:
            yield name
        finally:
            client = self.client()
            for collection in client.list_collections():
                if collection.startswith(name + "_"):
                    for alias in client.list_aliases(collection)["aliases"]:
                        client.drop_alias(alias)
                    client.drop_collection(collection)
            client.close()

    def stop(self) -> None:
        self._server.stop()  # type: ignore[attr-defined]
        shutil.rmtree(self.directory, ignore_errors=True)
