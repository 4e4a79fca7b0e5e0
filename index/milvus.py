"""The index on Milvus: the same searches as index.search's FAISS indexes, in collections that every
API host shares, so that hosts hold no index of their own and Milvus shards and replicates it.

Three collections per name prefix, each reached through an alias (``<prefix>_pdq`` ...) so that a
rebuild fills fresh collections while the old ones serve, then moves every host over at once:
- pdq: one 256-bit PDQ hash per record, primary key = record id; BIN_FLAT, i.e. exact Hamming
  search, as FAISS's flat PDQ index (8 dihedral query variants, k per variant).
- local: the same INDEXED_DESCRIPTORS TEBLID descriptors per record as FAISS, primary key =
  record id * 256 + rank (so a hit names its record without a stored field); BIN_IVF_FLAT.
- cursor: one row, how far into the store the collections are (last record id, last removal
  seq), shared by every host. A host that finds new records in the store starts from it, so a
  record is written once by the host that registered it, not once per host.

Hosts' writes are upserts by those deterministic keys: two hosts catching up at once write the
same rows. A rebuild, the only writer of the collections it fills, inserts.
Removals are read after additions, as FAISS's catch-up does, so a record deleted while a host adds
it is removed again by that host. Searches use Session consistency: this process's own writes are
visible to its next search; other hosts' within Milvus's time tick (0.2 s by default). Deletions
are the exception: Milvus 2.3 does not give a delete's timestamp to the session, so for a moment
after a catch-up meets a removal (its own or another host's) searches are Strong, which waits
out the time tick: a deleted record is not matched again once its DELETE has answered.

``pymilvus`` is an optional dependency (``pip install 'provenance[milvus]'``), imported on first use.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.calibration import Retrieval
from index.errors import IndexNotReady
from index.features import LocalFeatures
from index.fingerprints import PDQ_BITS, PdqHash
from index.search import INDEXED_DESCRIPTORS, Candidate, PdqHit, closest_per_record, vote
from index.store import FingerprintStore, IndexRows

logger = logging.getLogger(__name__)

_RANKS = 256  # local primary key = record id * _RANKS + the descriptor's rank in its record
assert INDEXED_DESCRIPTORS <= _RANKS
# Inverted lists per sealed segment (Milvus builds one index per segment; under its default sizes
# a segment is sealed at 2.3 million of these rows, and compaction merges up to three into one)
# and lists probed in each. A search costs about nlist + nprobe x rows / nlist distances per query
# descriptor and segment, so 4,096 lists rather than 1,024: at 10,000 records (one segment of
# 1.92 million rows; scripts/bench_milvus.py's records and queries) a 500-descriptor search
# probing 8 took 33 ms instead of 117 with 1,024 lists probed 32. More lists cost more index
# building (k-means): 4,096 took ~3.5 minutes per segment of 2.3 million rows here. 2 probed:
# at 100,000 records (five segments of 1.1 to 6.8 million rows) probing 8, 4 and 2 took 167, 97
# and 71 ms against FAISS's 60, 39 and 38 in the same passes, with the same top record for 40
# of 40 copies each time and 191, 186 and 173 votes for it (FAISS 183); and on the benchmark's
# 10,000-record store, probing 2, each of 740 copies got the verdict and the top record it gets
# on FAISS (README, Scaling out). 2 is the one within issue #19's +50 ms over FAISS.
_NLIST = 4096
_NPROBE = 2
_BATCH_VECTORS = 50_000  # per insert request: well under gRPC's 64 MB message limit
_CONSISTENCY = "Session"
_STRONG_SECONDS = 2.0  # after a removal: several of Milvus's 0.2 s time ticks
_CURSOR_ID = 0


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:  # the default install has no Milvus client
        raise IndexNotReady("PROVENANCE_MILVUS_URI needs pymilvus: pip install 'provenance[milvus]'") from exc
    return pymilvus


@dataclass(frozen=True)
class _Names:
    """Collection names under one prefix: aliases, or the collections of one generation."""

    pdq: str
    local: str
    cursor: str

    @classmethod
    def under(cls, prefix: str, generation: str = "") -> _Names:
        suffix = f"_{generation}" if generation else ""
        return cls(f"{prefix}_pdq{suffix}", f"{prefix}_local{suffix}", f"{prefix}_cursor{suffix}")

    def pairs(self, other: _Names) -> list[tuple[str, str]]:
        return [(self.pdq, other.pdq), (self.local, other.local), (self.cursor, other.cursor)]


class MilvusIndex:
    """PDQ and local-descriptor search in a Milvus server's collections named by ``prefix``.

    Nothing is asked of Milvus until first use, so a host starts while Milvus is down or still
    loading: catch-up and searches raise IndexNotReady until the collections are loaded.
    """

    def __init__(
        self, uri: str, prefix: str, *, names: _Names | None = None, sole_writer: bool = False
    ) -> None:
        _pymilvus()  # a missing client is a configuration error: say so at start
        self._uri, self._prefix = uri, prefix
        self._names = names or _Names.under(prefix)
        self._client: Any = None
        self._loaded = False
        self._strong_until = 0.0
        # Rows are upserted: two hosts catching up at once write the same keys. Milvus 2.3 makes
        # an upsert a delete and an insert, and the deletes' logs get every sealed segment
        # compacted, i.e. rewritten and indexed again (a 100,000-record rebuild's log: each of
        # its nine segments of 2.3 million rows compacted alone into the same rows, then indexed
        # again, ~3.5 minutes each here). A rebuild fills collections no host writes to, so it
        # inserts (``sole_writer``).
        self._sole_writer = sole_writer
        self.probes = _NPROBE  # lists searched per segment (scripts/bench_milvus.py --probes varies it)
        self._lock = threading.Lock()
        self.last_record_id = 0
        self.last_removal_seq = 0
        self.records = 0

    def memory_bytes(self) -> int:
        return 0  # the vectors live on Milvus's query nodes

    # -- connection and readiness --

    def _connected(self) -> Any:
        if self._client is None:
            pymilvus = _pymilvus()
            try:
                self._client = pymilvus.MilvusClient(uri=self._uri, timeout=10)
            except pymilvus.MilvusException as exc:
                raise IndexNotReady(f"Milvus at {self._uri} is unreachable: {exc.message}") from exc
        return self._client

    def _ready(self) -> Any:
        """The client, once the collections exist and are loaded; IndexNotReady before."""
        client = self._connected()
        if self._loaded:
            return client
        pymilvus = _pymilvus()
        try:
            if not client.has_collection(self._names.cursor):
                _create_generation(client, self._prefix)
            states = [client.get_load_state(name)["state"] for name in _each(self._names)]
            if any(state != pymilvus.client.types.LoadState.Loaded for state in states):
                for name in _each(self._names):
                    client.load_collection(name, _async=True)
                raise IndexNotReady(f"Milvus is loading the collections {self._prefix}_*")
            self.last_record_id, self.last_removal_seq = _read_cursor(client, self._names.cursor)
            self.records = _count(client, self._names.pdq)
        except pymilvus.MilvusException as exc:
            raise IndexNotReady(f"Milvus at {self._uri}: {exc.message}") from exc
        self._loaded = True
        return client

    # -- catch-up --

    def catch_up(self, store: FingerprintStore) -> int:
        """Write the store's records beyond the cursor, then delete those removed since."""
        with self._lock:
            client = self._ready()
            pending = store.rows_after(self.last_record_id, INDEXED_DESCRIPTORS)
            first = next(pending, None)
            if first is None and not store.removals_after(self.last_removal_seq):
                return 0
            # Another host may have indexed them already: start where the shared cursor is.
            shared_record, shared_removal = _read_cursor(client, self._names.cursor)
            if shared_record > self.last_record_id:
                self.last_record_id = shared_record
                pending = store.rows_after(self.last_record_id, INDEXED_DESCRIPTORS)
                first = next(pending, None)
            if shared_removal > self.last_removal_seq:
                self.last_removal_seq = shared_removal
                self._strong_until = time.monotonic() + _STRONG_SECONDS
            added = self._add(client, itertools.chain([first], pending) if first else iter(()))
            removals = store.removals_after(self.last_removal_seq)
            if removals:
                self._strong_until = time.monotonic() + _STRONG_SECONDS
                _delete(client, self._names, [record_id for _, record_id in removals])
                self.last_removal_seq = removals[-1][0]
            if (self.last_record_id, self.last_removal_seq) > (shared_record, shared_removal):
                _write_cursor(client, self._names.cursor, self.last_record_id, self.last_removal_seq)
            self.records = _count(client, self._names.pdq)
            return added

    def _add(self, client: Any, rows: Iterator[IndexRows]) -> int:
        added = 0
        pdq_rows: list[dict[str, Any]] = []
        local_rows: list[dict[str, Any]] = []
        for found in rows:
            if found.pdq is not None:
                pdq_rows.append({"id": found.record_id, "v": found.pdq.bits})
            if found.local_prefix:
                codes = LocalFeatures.descriptor_prefix(found.local_prefix, INDEXED_DESCRIPTORS)
                base = found.record_id * _RANKS
                local_rows.extend({"id": base + rank, "v": code.tobytes()} for rank, code in enumerate(codes))
            added += 1
            if len(local_rows) >= _BATCH_VECTORS:
                self._write(client, pdq_rows, local_rows, found.record_id)
                pdq_rows, local_rows = [], []
            self.last_record_id = max(self.last_record_id, found.record_id)
        if added:
            self._write(client, pdq_rows, local_rows, self.last_record_id)
        return added

    def _write(
        self, client: Any, pdq_rows: list[dict[str, Any]], local_rows: list[dict[str, Any]], through: int
    ) -> None:
        write = client.insert if self._sole_writer else client.upsert
        if pdq_rows:
            write(self._names.pdq, pdq_rows)
        if local_rows:
            write(self._names.local, local_rows)
        logger.debug("indexed into Milvus through record %d", through)

    # -- search --

    def search_pdq(self, hashes: list[PdqHash], max_distance: int, k: int = 8) -> dict[int, PdqHit]:
        """Per record within ``max_distance`` of any of the query hashes: the closest of them."""
        if not hashes:
            return {}
        distances, labels = self._search(self._names.pdq, [h.bits for h in hashes], k, {})
        return closest_per_record(distances, labels, max_distance)

    def search_local(
        self,
        descriptors: np.ndarray,
        retrieval: Retrieval,
        *,
        positions: np.ndarray | None = None,
        limit: int | None = None,
    ) -> list[Candidate]:
        """As ``FingerprintIndex.search_local``: the same votes over Milvus's neighbours."""
        if len(descriptors) == 0:
            return []
        codes = np.ascontiguousarray(descriptors, dtype=np.uint8).reshape(-1, PDQ_BITS // 8)
        distances, keys = self._search(
            self._names.local,
            [code.tobytes() for code in codes],
            retrieval.neighbours,
            {"nprobe": self.probes},
        )
        labels = np.where(keys >= 0, keys // _RANKS, -1)
        return vote(distances, labels, retrieval, positions, limit)

    def _search(
        self, collection: str, vectors: list[bytes], k: int, params: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Distances and primary keys, one row per query vector, padded with -1 where fewer than k."""
        client = self._ready()
        pymilvus = _pymilvus()
        try:
            found = client.search(
                collection,
                data=vectors,
                anns_field="v",
                limit=k,
                search_params={"metric_type": "HAMMING", "params": params},
                consistency_level="Strong" if time.monotonic() < self._strong_until else _CONSISTENCY,
            )
        except pymilvus.MilvusException as exc:
            raise IndexNotReady(f"Milvus search failed: {exc.message}") from exc
        distances = np.full((len(vectors), k), np.iinfo(np.int32).max, np.int64)
        keys = np.full((len(vectors), k), -1, np.int64)
        for row, hits in enumerate(found):
            distances[row, : len(hits.distances)] = hits.distances
            keys[row, : len(hits.ids)] = hits.ids
        return distances, keys

    # -- rebuild --

    @classmethod
    def rebuild_from(cls, store: FingerprintStore, uri: str, prefix: str) -> MilvusIndex:
        """Fill fresh collections from the store, then point the aliases at them and drop the old.

        Hosts keep searching the old collections meanwhile. Records committed during the rebuild
        went to the old ones: a last catch-up through the aliases, after the switch, adds them.
        """
        client = cls(uri, prefix)._connected()
        pymilvus = _pymilvus()
        try:
            fresh = _create_generation(client, prefix, aliased=False)
            building = cls(uri, prefix, names=fresh, sole_writer=True)
            building._client, building._loaded = client, True
            building.catch_up(store)
            for name in _each(fresh):
                client.flush(name)  # seal the segments so that their IVF index is built
            for name in (fresh.pdq, fresh.local):
                _wait_for_index(client, name)  # hosts move over once searches are fast
            for name in _each(fresh):
                client.load_collection(name)
            old = _switch_aliases(client, prefix, fresh)
            live = cls(uri, prefix)
            live.catch_up(store)
            for name in old:
                client.drop_collection(name)
        except pymilvus.MilvusException as exc:
            raise IndexNotReady(f"Milvus at {uri}: {exc.message}") from exc
        return live


def _wait_for_index(client: Any, collection: str, timeout: float = 3600.0) -> None:
    """Until Milvus has built the vector index of every sealed segment of ``collection``."""
    deadline = time.monotonic() + timeout
    while True:
        built = client.describe_index(collection, "v")
        if built["state"] == "Finished" and built["pending_index_rows"] == 0:
            return
        if time.monotonic() > deadline:
            raise IndexNotReady(f"Milvus has not indexed {collection} after {timeout:.0f} s: {built}")
        time.sleep(1)


def _each(names: _Names) -> tuple[str, str, str]:
    return (names.pdq, names.local, names.cursor)


def _create_generation(client: Any, prefix: str, *, aliased: bool = True) -> _Names:
    """Empty collections for a new generation; with ``aliased``, the aliases named after them
    too (the first host to start on an empty Milvus; a host that loses that race uses the winner's)."""
    pymilvus = _pymilvus()
    names = _Names.under(prefix, str(time.time_ns()))
    specs: tuple[tuple[str, int, str, dict[str, int]], ...] = (
        (names.pdq, PDQ_BITS, "BIN_FLAT", {}),
        (names.local, PDQ_BITS, "BIN_IVF_FLAT", {"nlist": _NLIST}),
        (names.cursor, 8, "BIN_FLAT", {}),  # Milvus needs a vector field in every collection
    )
    for name, dimension, index_type, params in specs:
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
        if name == names.cursor:
            schema.add_field("last_record_id", pymilvus.DataType.INT64)
            schema.add_field("last_removal_seq", pymilvus.DataType.INT64)
        schema.add_field("v", pymilvus.DataType.BINARY_VECTOR, dim=dimension)
        index_params = client.prepare_index_params()
        index_params.add_index("v", index_type=index_type, metric_type="HAMMING", params=params)
        client.create_collection(
            name, schema=schema, index_params=index_params, consistency_level=_CONSISTENCY
        )
    _write_cursor(client, names.cursor, 0, 0)
    if aliased:
        aliases = _Names.under(prefix)
        try:
            for collection, alias in names.pairs(aliases):
                client.create_alias(collection, alias)
        except pymilvus.MilvusException:
            for name in _each(names):
                client.drop_collection(name)
            if not client.has_collection(aliases.cursor):
                raise
            return aliases
    return names


def _switch_aliases(client: Any, prefix: str, fresh: _Names) -> list[str]:
    """Point the prefix's aliases at ``fresh``; returns the collections they named before."""
    old: list[str] = []
    for collection, alias in fresh.pairs(_Names.under(prefix)):
        if client.has_collection(alias):
            old.append(client.describe_alias(alias)["collection_name"])
            client.alter_alias(collection, alias)
        else:
            client.create_alias(collection, alias)
    return old


def _read_cursor(client: Any, collection: str) -> tuple[int, int]:
    rows = client.query(
        collection,
        ids=[_CURSOR_ID],
        output_fields=["last_record_id", "last_removal_seq"],
        # Not Strong, which waits out Milvus's time tick (~0.2 s): a stale cursor only means
        # upserting again rows another host has just written.
        consistency_level=_CONSISTENCY,
    )
    if not rows:
        return 0, 0
    return int(rows[0]["last_record_id"]), int(rows[0]["last_removal_seq"])


def _write_cursor(client: Any, collection: str, last_record_id: int, last_removal_seq: int) -> None:
    client.upsert(
        collection,
        [
            {
                "id": _CURSOR_ID,
                "last_record_id": last_record_id,
                "last_removal_seq": last_removal_seq,
                "v": b"\0",
            }
        ],
    )


def _count(client: Any, collection: str) -> int:
    rows = client.query(collection, filter="", output_fields=["count(*)"], consistency_level=_CONSISTENCY)
    return int(rows[0]["count(*)"])


def _delete(client: Any, names: _Names, record_ids: Iterable[int]) -> None:
    ids = list(record_ids)
    client.delete(names.pdq, ids=ids)
    client.delete(names.local, ids=[r * _RANKS + rank for r in ids for rank in range(_RANKS)])
