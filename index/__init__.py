"""Image fingerprints, their store and FAISS search: image -> fingerprints -> candidate records."""

from index.alignment import Agreement, block_agreement, hue_agreement, locate_within, placed_finer
from index.errors import FingerprintError, IndexNotReady
from index.features import (
    PROCESSING_SIDE,
    GeometricMatch,
    LocalFeatures,
    extract_local_features,
    mapped_region,
    verify_geometry,
)
from index.fingerprints import PdqHash, dihedral_variant, pdq, pdq_dihedral
from index.scoring import (
    MATCH_CONFIDENCE,
    POSSIBLE_CONFIDENCE,
    Thresholds,
    dense_confidence,
    geometry_confidence,
    pdq_agreement_needed,
    pdq_confidence,
    required_agreement,
    verdict_for,
)
from index.search import Candidate, FingerprintIndex, PdqHit, one_thread_per_process
from index.store import FingerprintStore, ImageFingerprints, fingerprint_image

__all__ = [
    "MATCH_CONFIDENCE",
    "Agreement",
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
    "PdqHit",
    "Thresholds",
    "block_agreement",
    "dense_confidence",
    "dihedral_variant",
    "extract_local_features",
    "fingerprint_image",
    "geometry_confidence",
    "hue_agreement",
    "locate_within",
    "mapped_region",
    "one_thread_per_process",
    "pdq",
    "pdq_agreement_needed",
    "pdq_confidence",
    "pdq_dihedral",
    "placed_finer",
    "required_agreement",
    "verdict_for",
    "verify_geometry",
]
