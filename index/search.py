"""In-memory FAISS indexes over the stored fingerprints: a derived, rebuildable cache.

Two binary indexes, both keyed by record id:
- PDQ: one 256-bit hash per record in a flat index (exact Hamming search; 8 query variants).
- local descriptors: the first ``INDEXED_DESCRIPTORS`` TEBLID descriptors of each record (a
  spatially balanced sample, with some of the finest scale; index.features._indexed_order).
  Below ``IVF_MIN_VECTORS`` they sit in a flat index; above it in an inverted file whose coarse
  centroids are a random sample of the indexed descriptors (k-means on millions of binary codes
  would stall a serving process for minutes; sampled centroids train in milliseconds and only
  cost some recall, which the vote over many descriptors absorbs). With many lists, each
  descriptor finds its lists through a second, smaller inverted file over the centroids
  (``_coarse_quantizer``).

RAM per record: 32 + 8 bytes (PDQ) + INDEXED_DESCRIPTORS (192) * (32 + 8) bytes (code + id) = ~7.7 KB.
The full descriptor sets for verification stay in the store on disk.
"""

from __future__ import annotations

import math
import os
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import faiss
import numpy as np

from index.calibration import Retrieval
from index.errors import IndexNotReady
from index.features import INDEXED_KEYPOINTS, LocalFeatures
from index.fingerprints import PDQ_BITS, PdqHash
from index.store import FingerprintStore, IndexRows

INDEXED_DESCRIPTORS = INDEXED_KEYPOINTS
IVF_MIN_VECTORS = 200_000
_RETRAIN_GROWTH = 8  # re-sample centroids once the index has grown this much since the last time
# Lists each query descriptor scans (of ~8,192 at 10,000 records). 8, not 16: in a probe of 400
# copies of the hardest families and 120 never-registered queries, the same verdicts, and each
# search ~40 % cheaper (the first look's 500 descriptors: 13.4 -> 8.2 ms). Its cost in the full
# benchmark: 2 of 5,370 copies no longer found (a flag in a screenshot, a wallpaper's crop
# stretched), both found again with 16.
_NPROBE = 8
# Codes each query descriptor scans at most, its nearest lists first (FAISS's max_codes). Lists
# grow with the store (~230 codes on average at 10,000 records, ~1,940 at a million), the lists
# of common descriptors most, and a search's time with them. At 10,000 records 4,000 cuts the
# longest 8 lists of 19 % of query descriptors (9 % of the codes they held); replayed on the 825
# saved copies of the full run of 2026-12-04 that reached the small or the large look, not one
# outcome changed. At a million records (scripts/bench_scale.py's store, 100 fixed copies and 99
# unrelated images, one process): copies p50 137 -> 94 ms, unrelated p50 408 -> 254, p95 952 ->
# 782, the same 98 copies matched.
_MAX_CODES = 4_000
NESTED_QUANTIZER_LISTS = 16_384  # from this many lists on, they are found through an inverted file
_CENTROID_NPROBE = 64  # lists of centroids each descriptor visits to find its _NPROBE lists
_ADD_BATCH = 1_000_000  # descriptors added per FAISS call at most (~0.8 GB of work space)
_SEED = 20261125
# Any: faiss's Python-callback readers and writers exist only at run time (SWIG).
_callback_io: Any = faiss


def one_thread_per_process() -> None:
    """Keep FAISS and OpenCV to the calling thread.

    A server runs one worker process per core; OpenMP and OpenCV thread pools inside each
    would contend for the same cores and spin (a 500-descriptor search measured 3x slower).
    """
    faiss.omp_set_num_threads(1)
    cv2.setNumThreads(1)


@dataclass(frozen=True)
class PdqHit:
    """A record's closest PDQ distance and which of the query's hashes (e.g. dihedral variant) won."""

    distance: int
    variant: int


@dataclass(frozen=True)
class Candidate:
    """A record that a query's descriptors voted for.

    ``window`` (left, top, right, bottom as fractions of the query's width and height) is where
    its votes were counted, when the search counted them in the densest window.
    """

    record_id: int
    votes: int
    window: tuple[float, float, float, float] | None = None


def _densest_window_votes(
    record_ids: np.ndarray, positions: np.ndarray, grid_cells: int, window_cells: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record, its votes inside the densest window of ``window_cells`` of ``grid_cells``
    cells per side of the query (Retrieval: 3 of 8), and that window's top-left cell (column, row).

    A picture inside a screenshot holds a fraction of the query's descriptors; the page chrome
    around it (text, icons) gives its votes to every record with similar glyphs, and counted over
    the whole query those outvote the picture's own record (benchmark: the right record ranked
    10-30th for a third of missed screenshots). A copy's votes cluster where the copy is. Windows
    slide by 1/8 of the query's side; 3/8 ranked the right record best among sides of 1/4 to 1/2
    on 300 benchmark screenshots (and ranked crops, which fill the query, as well as counting
    over the whole query did).
    """
    cells = np.clip((positions * grid_cells).astype(np.int64), 0, grid_cells - 1)
    unique_ids, row = np.unique(record_ids, return_inverse=True)
    grid = np.zeros((len(unique_ids), grid_cells + 1, grid_cells + 1), np.int32)
    np.add.at(grid, (row, cells[:, 1] + 1, cells[:, 0] + 1), 1)
    table = grid.cumsum(axis=1).cumsum(axis=2)  # summed-area table: any window's sum in 4 reads
    w = window_cells
    windows = table[:, w:, w:] - table[:, :-w, w:] - table[:, w:, :-w] + table[:, :-w, :-w]
    flat = windows.reshape(len(unique_ids), -1)
    densest = flat.argmax(axis=1)
    rows, columns = np.divmod(densest, windows.shape[2])
    return unique_ids, flat[np.arange(len(unique_ids)), densest], np.stack([columns, rows], axis=1)


def _window_fractions(corner: np.ndarray, retrieval: Retrieval) -> tuple[float, float, float, float]:
    left, top = (float(c) / retrieval.window_grid for c in corner)
    side = retrieval.window_cells / retrieval.window_grid
    return (left, top, left + side, top + side)


def _nearest(indexes: list[Any], codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and labels of the ``k`` nearest neighbours of each code among all ``indexes``
    (fewer where they hold fewer), closest first."""
    found = [index.search(codes, min(k, int(index.ntotal))) for index in indexes if index.ntotal]
    if not found:
        empty = np.zeros((len(codes), 0), np.int64)
        return empty.astype(np.int32), empty
    distances = np.concatenate([d for d, _ in found], axis=1)
    labels = np.concatenate([ids for _, ids in found], axis=1)
    if len(found) > 1:
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]
        distances, labels = np.take_along_axis(distances, order, 1), np.take_along_axis(labels, order, 1)
    return distances, labels


def closest_per_record(distances: np.ndarray, labels: np.ndarray, max_distance: int) -> dict[int, PdqHit]:
    """Per record within ``max_distance`` of any query hash (a row of ``labels``, -1 for none):
    its closest distance and that row."""
    best: dict[int, PdqHit] = {}
    for variant, (row_distances, row_labels) in enumerate(zip(distances, labels, strict=True)):
        for distance, label in zip(row_distances, row_labels, strict=True):
            record_id = int(label)
            if record_id >= 0 and distance <= max_distance:
                if record_id not in best or distance < best[record_id].distance:
                    best[record_id] = PdqHit(int(distance), variant)
    return best


def vote(
    distances: np.ndarray,
    labels: np.ndarray,
    retrieval: Retrieval,
    positions: np.ndarray | None,
    limit: int | None,
) -> list[Candidate]:
    """Candidates from each query descriptor's neighbours (a row of record ids, -1 for none): see
    ``FingerprintIndex.search_local``."""
    close = (labels >= 0) & (distances <= retrieval.max_distance)
    rows = np.nonzero(close)[0]
    # One vote per (record, descriptor): unique keys, record-major, as one sort of integers
    # (np.unique over rows sorts them as opaque bytes, four times slower at these sizes).
    keys = np.unique(labels[close].astype(np.int64) * len(labels) + rows)
    votes = np.stack(np.divmod(keys, len(labels)), axis=1)  # (record, descriptor)
    if len(votes) == 0:  # an empty index, or nothing close
        return []
    corners = None
    if positions is None:
        record_ids, counts = np.unique(votes[:, 0], return_counts=True)
    else:
        record_ids, counts, corners = _densest_window_votes(
            votes[:, 0], positions[votes[:, 1]], retrieval.window_grid, retrieval.window_cells
        )
    order = np.lexsort((record_ids, -counts))[:limit]  # most votes first, ties by record id
    return [
        Candidate(
            int(record_ids[i]),
            int(counts[i]),
            None if corners is None else _window_fractions(corners[i], retrieval),
        )
        for i in order
    ]


def _as_codes(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.uint8).reshape(-1, PDQ_BITS // 8)


class _LocalDescriptorIndex:
    """Binary descriptor index that moves itself from flat to IVF as it grows."""

    def __init__(self) -> None:
        # Any: faiss's SWIG classes expose their fields only at run time.
        self.index: Any = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(PDQ_BITS))
        self.trained_at = 0

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Add each part's codes, labelled by its ids. When this takes the index past its
        threshold, its lists are chosen once, for the size it reaches, with these codes among
        those sampled: a rebuild adds the whole store in one call, so it trains once and adds
        each descriptor once (grown a record at a time, a million records' rebuild retrained
        four times and re-added 117 million descriptors)."""
        added = sum(len(codes) for codes, _ in parts)
        if self.ntotal + added >= max(IVF_MIN_VECTORS, self.trained_at * _RETRAIN_GROWTH):
            self._train([self._all_vectors(), *parts] if self.ntotal else parts)
            return
        for codes, ids in parts:
            _add_in_batches(self.index, codes, ids)

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.index, faiss.IndexBinaryIVF):
            invlists = self.index.invlists
            codes: list[np.ndarray] = []
            ids: list[np.ndarray] = []
            for list_no in range(self.index.nlist):
                size = invlists.list_size(list_no)
                if size:
                    code_ptr = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * 32)
                    id_ptr = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
                    codes.append(np.array(code_ptr).reshape(size, 32))
                    ids.append(np.array(id_ptr))
            return np.concatenate(codes), np.concatenate(ids)
        flat: Any = faiss.downcast_IndexBinary(self.index.index)
        return faiss.vector_to_array(flat.xb).reshape(-1, 32), faiss.vector_to_array(self.index.id_map)

    def _train(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Replace the index by an inverted file over all of ``parts``, its centroids a random
        sample of their codes."""
        sizes = np.array([len(codes) for codes, _ in parts])
        total = int(sizes.sum())
        # The usual 4 * sqrt(n) lists, for the size halfway to the next retraining: lists sized
        # for today's n would grow 8x long before then, and scanning them dominates a search.
        nlist = max(256, 1 << round(math.log2(4 * math.sqrt(total * _RETRAIN_GROWTH / 2))))
        rng = np.random.default_rng(_SEED)
        picks = rng.choice(total, size=min(nlist, total), replace=False)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        part_of = np.searchsorted(starts, picks, side="right") - 1
        centroids = np.empty((len(picks), PDQ_BITS // 8), np.uint8)
        for number, (codes, _) in enumerate(parts):
            mine = part_of == number
            centroids[mine] = codes[picks[mine] - starts[number]]
        ivf = _inverted_file(len(centroids), _coarse_quantizer(centroids, rng))
        _set_search_scope(ivf)
        for codes, ids in parts:
            _add_in_batches(ivf, codes, ids)
        self.index = ivf
        self.trained_at = total

    def remove(self, record_ids: np.ndarray) -> None:
        self.index.remove_ids(record_ids)


def _add_in_batches(index: Any, codes: np.ndarray, ids: np.ndarray) -> None:
    # FAISS assigns a whole call's descriptors at once, and through the nested quantizer it holds
    # _CENTROID_NPROBE candidate lists per descriptor (12 bytes each): 102 million descriptors
    # in one call, a million records' retraining, asked for 52 GB.
    for start in range(0, len(codes), _ADD_BATCH):
        end = start + _ADD_BATCH
        index.add_with_ids(np.ascontiguousarray(codes[start:end]), np.ascontiguousarray(ids[start:end]))


def _joined(records: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Records' codes as one array, and the record id of each code."""
    codes = [record_codes for record_codes, _ in records]
    ids = np.repeat(np.array([record_id for _, record_id in records], np.int64), [len(c) for c in codes])
    return np.concatenate(codes), ids


def _set_search_scope(ivf: Any) -> None:
    """How much of the inverted file each query descriptor scans."""
    ivf.nprobe = _NPROBE
    ivf.max_codes = _MAX_CODES


def _inverted_file(lists: int, quantizer: Any) -> Any:
    """An empty inverted file of ``lists`` lists, which ``quantizer`` (holding one centroid per
    list) assigns descriptors to."""
    ivf = faiss.IndexBinaryIVF(quantizer, PDQ_BITS, lists)
    ivf.is_trained = True
    ivf.own_fields = True
    quantizer.this.disown()
    return ivf


def _coarse_quantizer(centroids: np.ndarray, rng: np.random.Generator) -> Any:
    """Finds each descriptor's nearest centroids: a flat index of them, or from
    ``NESTED_QUANTIZER_LISTS`` centroids on, an inverted file over them (its own centroids about
    4 sqrt(n) of the n, sampled; ``_CENTROID_NPROBE`` of its lists searched).

    Every added and every query descriptor is first assigned its nearest centroids. A flat
    index compares it with all of them: 32,768 from about 100,000 records, 65,536 at a million,
    and rebuilding is then mostly this assignment. The inverted file compares a few thousand, at
    a fixed cost that only pays from about 16,384 centroids on (one thread, adding one record's
    160 corpus descriptors at a time: 8,192 centroids 2.7 ms flat, 4.5 ms nested; 32,768 14.7
    ms flat, 6.5 ms nested). Of each descriptor's 4 nearest neighbours it finds 0.7 and 0.5
    points fewer at 32,768 and 65,536 centroids (260,000 corpus descriptors); 100,000
    bench_scale records rebuilt into 32,768 lists in 439 s instead of 588, and their 100 fixed
    copies ranked the right record first as often (79 and 77) with as many votes (47.0 and
    47.1). An HNSW graph over the centroids (IndexBinaryHNSW) was slower for the same recall:
    its binary distances come one at a time, a flat scan's in blocks.
    """
    flat: Any = faiss.IndexBinaryFlat(PDQ_BITS)
    if len(centroids) < NESTED_QUANTIZER_LISTS:
        flat.add(np.ascontiguousarray(centroids))
        return flat
    samples = int(4 * math.sqrt(len(centroids)))
    flat.add(np.ascontiguousarray(centroids[rng.choice(len(centroids), samples, replace=False)]))
    quantizer = _inverted_file(samples, flat)
    quantizer.nprobe = _CENTROID_NPROBE
    quantizer.add(np.ascontiguousarray(centroids))  # labelled 0..n-1: the outer file's list numbers
    return quantizer


class FingerprintIndex:
    """PDQ and local-descriptor indexes for every record up to ``last_record_id``, less the
    removals logged up to ``last_removal_seq``.

    Thread-safe: one lock guards catch-up and queries (Flask may serve requests in threads).
    After ``freeze``, the vectors held then sit apart from those added later, never written again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pdq: Any = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(PDQ_BITS))
        self._local = _LocalDescriptorIndex()
        self._frozen: list[tuple[Any, _LocalDescriptorIndex]] = []
        self.last_record_id = 0
        self.last_removal_seq = 0
        self.records = 0

    def freeze(self) -> None:
        """Add later records to new indexes of their own, leaving the present ones as they are.

        For a worker forked from the process that loaded the index: the pages they share stay
        shared. Added to in place, they did not: an addition reallocates its inverted list, and
        a few hundred records touch every list (1,000 new records cost each of two workers a
        private copy of the whole index: 114 KB per new record per host). Removals still write
        the frozen indexes, as they are rare. A frozen index is not saved (workers never save).
        """
        with self._lock:
            self._frozen.append((self._pdq, self._local))
            self._pdq = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(PDQ_BITS))
            self._local = _LocalDescriptorIndex()

    def _parts(self) -> list[tuple[Any, _LocalDescriptorIndex]]:
        return [*self._frozen, (self._pdq, self._local)]

    def catch_up(self, store: FingerprintStore) -> int:
        """Add every record the store has beyond ``last_record_id``, then drop every record removed
        since ``last_removal_seq``; returns how many were added.

        Removals are read after the additions, so a record deleted while this runs is dropped
        whichever of the two reads saw it.
        """
        with self._lock:
            added = self._add_all(store.rows_after(self.last_record_id, INDEXED_DESCRIPTORS))
            removals = store.removals_after(self.last_removal_seq)
            if removals:
                self._remove(np.array([record_id for _, record_id in removals], np.int64))
                self.last_removal_seq = removals[-1][0]
            return added

    def _add_all(self, records: Iterator[IndexRows]) -> int:
        """Add the records' vectors in a few large FAISS calls (one a record cost a million
        records' rebuild most of its time), their descriptors joined in parts of at most
        ``_ADD_BATCH``; returns how many records were read."""
        pdq_codes: list[np.ndarray] = []
        pdq_ids: list[int] = []
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        pending: list[tuple[np.ndarray, int]] = []  # (codes, record id), not yet joined
        last_record_id, added = self.last_record_id, 0
        for rows in records:
            if rows.pdq is not None:
                pdq_codes.append(np.frombuffer(rows.pdq.bits, np.uint8))
                pdq_ids.append(rows.record_id)
            if rows.local_prefix:
                pending.append(
                    (LocalFeatures.descriptor_prefix(rows.local_prefix, INDEXED_DESCRIPTORS), rows.record_id)
                )
                if len(pending) == _ADD_BATCH // INDEXED_DESCRIPTORS:
                    parts.append(_joined(pending))
                    pending = []
            last_record_id, added = max(last_record_id, rows.record_id), added + 1
        if pending:
            parts.append(_joined(pending))
        if pdq_codes:
            self._pdq.add_with_ids(np.stack(pdq_codes), np.array(pdq_ids, np.int64))
        if parts:
            self._local.add(parts)
        self.last_record_id = last_record_id  # only once their vectors are in
        self.records += added
        return added

    def _remove(self, record_ids: np.ndarray) -> None:
        # remove_ids rather than a filter at search time: a deleted record's vectors must not
        # linger in memory or in the saved file. It scans the whole index, once per deletion and
        # process, holding the lock (a search waits): 8 ms at 10,000 records, 141 ms at 100,000
        # (scripts/bench_deletion.py --records 10000 100000; a search of 500 descriptors takes
        # 20 and 74 ms). Deletions are rare.
        for pdq, local in self._parts():
            self.records -= int(pdq.remove_ids(record_ids))
            local.remove(record_ids)

    def search_pdq(self, hashes: list[PdqHash], max_distance: int, k: int = 8) -> dict[int, PdqHit]:
        """Per record within ``max_distance`` of any of the query hashes: the closest of them."""
        if not hashes:
            return {}
        codes = _as_codes(np.stack([np.frombuffer(h.bits, np.uint8) for h in hashes]))
        with self._lock:
            distances, labels = _nearest([pdq for pdq, _ in self._parts()], codes, k)
        return closest_per_record(distances, labels, max_distance)

    def search_local(
        self,
        descriptors: np.ndarray,
        retrieval: Retrieval,
        *,
        positions: np.ndarray | None = None,
        limit: int | None = None,
    ) -> list[Candidate]:
        """The ``limit`` records (all by default) with most query descriptors that have a close
        neighbour among theirs (``retrieval``: how many neighbours, how close), best first.

        Each query descriptor votes at most once per record. With ``positions`` (each
        descriptor's place as a fraction of the query's width and height), a record's votes are
        counted only inside the query window where it has most of them (see
        ``_densest_window_votes``).
        """
        if len(descriptors) == 0:
            return []
        with self._lock:
            indexes = [local.index for _, local in self._parts()]
            distances, labels = _nearest(indexes, _as_codes(descriptors), retrieval.neighbours)
        return vote(distances, labels, retrieval, positions, limit)

    def memory_bytes(self) -> int:
        """Approximate RAM held by both indexes (their serialised size)."""
        with self._lock:
            return sum(
                int(faiss.serialize_index_binary(index).size)
                for pdq, local in self._parts()
                for index in (pdq, local.index)
            )

    def save(self, path: Path) -> None:
        """Write both indexes and the last record id to one file, atomically (temp file + rename).

        One file, so that a process loading it never pairs indexes of different ages. It is an
        ``.npz`` archive (``np.load`` reads it), written a chunk at a time: a whole serialised
        copy of the index, freed after writing, would stay in the process's heap (glibc keeps
        freed memory of that size), and a server saves in the process its workers fork from.
        """
        if self._frozen:
            raise RuntimeError("a frozen index is not saved: save the one it was frozen from")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
        with self._lock:
            state = np.array(
                [self.last_record_id, self.records, self._local.trained_at, self.last_removal_seq]
            )
            with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                _write_member(archive, "pdq", self._pdq)
                _write_member(archive, "local", self._local.index)
                with archive.open("state.npy", "w") as member:
                    np.lib.format.write_array(member, state)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> FingerprintIndex:
        """Load a saved index; raises IndexNotReady when there is none (rebuild from the store).

        Each index is read straight from the file into FAISS's own arrays: reading a whole
        member into memory first tripled a loading process's peak, and most of it stayed
        allocated as freed heap (51 MB of RSS for a 17.8 MB index).
        """
        try:
            with zipfile.ZipFile(path) as archive:
                pdq_index = _read_member(archive, "pdq")
                local_index = _read_member(archive, "local")
                with archive.open("state.npy") as member:
                    state = [int(v) for v in np.lib.format.read_array(member)]
        except (OSError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile) as exc:
            raise IndexNotReady(f"no usable saved index at {path}: {exc}") from exc
        last, records, trained_at = state[:3]
        # Files saved before deletions existed hold three numbers: no removal applied yet.
        removal_seq = state[3] if len(state) > 3 else 0
        if isinstance(local_index, faiss.IndexBinaryIVF):
            _set_search_scope(local_index)  # settings of this code, not of the file's age
            quantizer = faiss.downcast_IndexBinary(local_index.quantizer)
            if isinstance(quantizer, faiss.IndexBinaryIVF):  # with few lists, a flat one
                quantizer.nprobe = _CENTROID_NPROBE
        loaded = cls()
        loaded._pdq = pdq_index
        loaded._local.index = local_index
        loaded._local.trained_at = trained_at
        loaded.last_record_id = last
        loaded.last_removal_seq = removal_seq
        loaded.records = records
        return loaded

    @classmethod
    def rebuild_from(cls, store: FingerprintStore, threads: int = 1) -> FingerprintIndex:
        """A fresh index over every record in the store, FAISS sharing the work among
        ``threads``: its calls assign a million descriptors each here (a search's few hundred
        would only spin, see ``one_thread_per_process``)."""
        index = cls()
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads)
        try:
            index.catch_up(store)
        finally:
            faiss.omp_set_num_threads(before)
        return index


def _serialised_size(index: Any) -> int:
    size = 0

    def count(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)

    faiss.write_index_binary(index, _callback_io.PyCallbackIOWriter(count))
    return size


def _write_member(archive: zipfile.ZipFile, name: str, index: Any) -> None:
    """``index`` serialised as the byte array ``name`` of an .npz archive, a chunk at a time (the
    .npy header states the length, so the index is serialised twice: once only to count)."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (_serialised_size(index),)}
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_2_0(member, header)
        faiss.write_index_binary(index, _callback_io.PyCallbackIOWriter(member.write))


def _read_member(archive: zipfile.ZipFile, name: str) -> Any:
    with archive.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(member)
        else:
            np.lib.format.read_array_header_2_0(member)
        return faiss.read_index_binary(_callback_io.PyCallbackIOReader(member.read))
