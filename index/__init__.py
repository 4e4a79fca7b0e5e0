"""Image -> fingerprints -> candidates -> evidence -> verdict; the names the application uses.

Everything else (features, alignment, scoring internals) is reached through its own module by
tests, benchmarks and the looks themselves, never by ``provenance``: tests/test_layering.py
checks that the application imports only these.
"""

from index.calibration import Calibration, Thresholds
from index.engine import SearchIndex
from index.errors import IndexNotReady
from index.evidence import Evidence, MethodEvidence, QueryDetail
from index.fingerprints import PdqHash
from index.matching import Matcher
from index.milvus import MilvusIndex
from index.preview import StoredPreview
from index.scoring import pdq_confidence, verdict_for
from index.search import FingerprintIndex, one_thread_per_process
from index.smooth import SmoothRecords
from index.store import FingerprintStore, ImageFingerprints, fingerprint_image

__all__ = [
    "Calibration",
    "Evidence",
    "FingerprintIndex",
    "FingerprintStore",
    "ImageFingerprints",
    "IndexNotReady",
    "Matcher",
    "MethodEvidence",
    "MilvusIndex",
    "PdqHash",
    "QueryDetail",
    "SearchIndex",
    "SmoothRecords",
    "StoredPreview",
    "Thresholds",
    "fingerprint_image",
    "one_thread_per_process",
    "pdq_confidence",
    "verdict_for",
]
