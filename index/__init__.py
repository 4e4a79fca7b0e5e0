"""Image fingerprints, their store and FAISS search: image -> fingerprints -> candidate records."""

from index.errors import FingerprintError, IndexNotReady
from index.features import (
    PROCESSING_SIDE,
    GeometricMatch,
    LocalFeatures,
    extract_local_features,
    verify_geometry,
)
from index.fingerprints import PdqHash, pdq, pdq_dihedral
from index.scoring import (
    MATCH_CONFIDENCE,
    POSSIBLE_CONFIDENCE,
    Thresholds,
    geometry_confidence,
    pdq_confidence,
    verdict_for,
)
from index.search import Candidate, FingerprintIndex, one_thread_per_process
from index.store import FingerprintStore, ImageFingerprints, fingerprint_image

__all__ = [
    "MATCH_CONFIDENCE",
    "POSSIBLE_CONFIDENCE",
    "PROCESSING_SIDE",
    "Candidate",
    "FingerprintError",
    "FingerprintIndex",
    "FingerprintStore",
    "GeometricMatch",
    "ImageFingerprints",
    "IndexNotReady",
    "LocalFeatures",
    "PdqHash",
    "Thresholds",
    "extract_local_features",
    "fingerprint_image",
    "geometry_confidence",
    "one_thread_per_process",
    "pdq",
    "pdq_confidence",
    "pdq_dihedral",
    "verdict_for",
    "verify_geometry",
]
