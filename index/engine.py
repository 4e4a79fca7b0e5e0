"""SearchIndex: what the read and write paths need of an index, whichever engine holds it.

Two engines implement it: ``index.search.FingerprintIndex`` (FAISS in this process, the default)
and ``index.milvus.MilvusIndex`` (collections in a Milvus cluster that every API host shares).
Both are caches of the fingerprint store: they catch up from it by record id and removal log.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from index.calibration import Retrieval
from index.fingerprints import PdqHash
from index.search import Candidate, PdqHit
from index.store import FingerprintStore


class SearchIndex(Protocol):
    """PDQ and local-descriptor search over every record up to ``last_record_id``."""

    @property
    def last_record_id(self) -> int: ...

    @property
    def records(self) -> int: ...

    def catch_up(self, store: FingerprintStore) -> int:
        """Add the store's records beyond ``last_record_id``, then drop those removed since;
        returns how many were added. Raises IndexNotReady while the engine cannot serve."""
        ...

    def search_pdq(self, hashes: list[PdqHash], max_distance: int, k: int = 8) -> dict[int, PdqHit]: ...

    def search_local(
        self,
        descriptors: np.ndarray,
        retrieval: Retrieval,
        *,
        positions: np.ndarray | None = None,
        limit: int | None = None,
    ) -> list[Candidate]: ...

    def memory_bytes(self) -> int:
        """RAM this process holds for the index (0 where the engine holds it elsewhere)."""
        ...
