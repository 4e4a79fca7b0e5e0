"""One suspect under search, as every look sees it: its picture, what the looks computed of it, and
what they search with; and the evidence so far that the looks add to."""

from __future__ import annotations

import functools
from collections.abc import Callable

from index.calibration import Calibration
from index.engine import SearchIndex
from index.evidence import Evidence, Picture
from index.features import Detection, LocalFeatures
from index.fingerprints import PdqHash, pdq_dihedral
from index.preview import Previews
from index.search import PdqHit
from index.smooth import SmoothRecords
from index.store import FingerprintStore

Found = dict[int, Evidence]  # the evidence so far, by record id, in the order records were found


class Query:
    """One suspect under search: its picture, what the looks computed of it (each at most once),
    and what they search with."""

    def __init__(
        self,
        suspect: Picture,
        index: SearchIndex,
        store: FingerprintStore,
        previews: Previews,
        calibration: Calibration,
        lap: Callable[[str], None],
        smooth: SmoothRecords,
    ) -> None:
        self.suspect = suspect
        self.index, self.store, self.previews = index, store, previews
        self.smooth = smooth  # the smooth records and their colour layouts (index.smooth)
        self.calibration = calibration
        self.lap = lap  # called with each step's name as it ends (the answer's timings)
        self.pdq_hits: dict[int, PdqHit] = {}
        # At the processing side, once extracted; the detection, for the mirrored look too.
        self.detection: Detection | None = None
        self.features: LocalFeatures | None = None
        self.voted: dict[str, list[int]] = {}  # per keypoint look, the records voted for, best first
        # per record, the bounding boxes (reference pixels) of the regions judged so far
        self.judged_regions: dict[int, list[tuple[float, float, float, float]]] = {}
        self._references: dict[int, LocalFeatures | None] = {}

    def reference(self, record_id: int) -> LocalFeatures | None:
        """A record's stored local features, read and decoded at most once per search: the looks
        verify the same records again (a never-registered query: 33 reads of 22 records)."""
        if record_id not in self._references:
            self._references[record_id] = self.store.local_features(record_id)
        return self._references[record_id]

    @functools.cached_property
    def hashes(self) -> list[PdqHash]:
        return pdq_dihedral(self.suspect.image)
