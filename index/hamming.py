"""Exact k-nearest-neighbour search between two small sets of binary descriptors.

Geometric verification compares a query's descriptors with one reference's (a few thousand
each). FAISS's flat binary index does that about four times faster than OpenCV's brute-force
matcher, whose per-match Python objects and thread pool dominate at this size.
"""

from __future__ import annotations

import faiss
import numpy as np


def nearest_two(query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query descriptor: Hamming distances to, and indices of, its two nearest references.

    Both arrays are (n, bytes) uint8. Missing neighbours (a reference set of one) have index -1.
    """
    index = faiss.IndexBinaryFlat(reference.shape[1] * 8)
    index.add(np.ascontiguousarray(reference))
    distances, indices = index.search(np.ascontiguousarray(query), 2)
    return distances, indices
