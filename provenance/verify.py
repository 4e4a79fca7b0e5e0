"""The read path: suspect image bytes -> manifest report, exact and perceptual matches, a verdict."""

from __future__ import annotations

import functools
import io
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from index import (
    MATCH_CONFIDENCE,
    PROCESSING_SIDE,
    Agreement,
    FingerprintIndex,
    FingerprintStore,
    GeometricMatch,
    LocalFeatures,
    Thresholds,
    block_agreement,
    dense_confidence,
    dihedral_variant,
    extract_local_features,
    geometry_confidence,
    hue_agreement,
    locate_within,
    mapped_region,
    pdq_agreement_needed,
    pdq_confidence,
    pdq_dihedral,
    required_agreement,
    verdict_for,
    verify_geometry,
)
from provenance.config import Settings
from provenance.imaging import decode_image
from provenance.manifest import ManifestReader, ManifestReport
from provenance.records import GenerationRecord, RecordStore

QUERY_DESCRIPTORS = 500
# The small look, for crops (the part shown is enlarged).
SMALL_SIDE = 400
SMALL_QUERY_DESCRIPTORS = 300
# The large look: page chrome around a screenshotted picture wins the strongest corners, so
# the picture's own keypoints only show up in a larger budget.
LARGE_KEYPOINTS = 3000
LARGE_QUERY_DESCRIPTORS = 600
CANDIDATES_TO_VERIFY = 4
MAX_CANDIDATES_TO_VERIFY = 8  # when none of the first four matched
MIN_VOTES = 3
LOW_DETAIL_PDQ_QUALITY = 50
LOW_DETAIL_KEYPOINTS = 100
# The large look verifies a candidate first in and around the densest window of its votes
# (margin: a fraction of the query's side) and the whole query only from this many inliers
# there: chance alignments of a wrong record mostly stop at RANSAC's minimum of 4 or 5, and a
# threshold of 10 lost a screenshot whose picture spread beyond the window (11 inliers in all).
WINDOW_MARGIN = 1 / 8
WINDOW_INLIERS_FOR_WHOLE = 6
# The dense look: the first candidates of the main and the small look, for crops that keep at
# least a tenth of the original.
DENSE_CANDIDATES = 3
DENSE_MIN_COVERAGE = 0.1
# A placement found at half the preview's resolution is a pixel or two off; refining it can
# only rescue one that already agrees this much (benchmark probe: copies that end up passing
# start at 0.43 or more; 3,488 of 3,538 wrong candidates below 0.5 skip the ~3 ms refinement).
DENSE_REFINE_FROM = 0.3


@dataclass(frozen=True)
class MethodEvidence:
    """One method's raw evidence for a record: a distance (PDQ, bits) or a score (inliers), and
    the share of the aligned overlap that agrees over how many structured blocks (None: not
    judged)."""

    method: str  # exact_bytes | exact_pixels | c2pa | pdq | local_features | dense_alignment
    distance: int | None = None
    score: int | None = None
    agreement: float | None = None
    blocks: int | None = None
    confidence: float = 0.0


@dataclass(frozen=True)
class RecordMatch:
    record: GenerationRecord
    confidence: float
    verdict: str
    methods: tuple[MethodEvidence, ...]
    region: tuple[tuple[float, float], ...] | None = None
    coverage: float | None = None


@dataclass(frozen=True)
class QueryDetail:
    """How much identifying detail the suspect has. Flat or featureless images (PDQ quality
    below 50 and few keypoints: a plain gradient, a blank page) cannot be matched with
    precision by anyone; saying so tells a reviewer why "no match" means little there."""

    pdq_quality: int
    keypoints: int

    @property
    def low_detail(self) -> bool:
        return self.pdq_quality < LOW_DETAIL_PDQ_QUALITY and self.keypoints < LOW_DETAIL_KEYPOINTS


@dataclass(frozen=True)
class VerificationResult:
    verdict: str  # authentic | matched | possible_match | no_match
    manifest: ManifestReport
    matches: tuple[RecordMatch, ...]
    query: QueryDetail | None = None  # None when an exact match made the search unnecessary
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Suspect:
    """The decoded suspect image, with the grey copy that dense checks share made at most once."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image

    @functools.cached_property
    def gray(self) -> np.ndarray:
        return np.asarray(self.image.convert("L"))

    @functools.cached_property
    def rgb(self) -> np.ndarray:
        return np.asarray(self.image.convert("RGB"))


@dataclass
class _Evidence:
    """Evidence gathered for one record while the stages run."""

    methods: list[MethodEvidence] = field(default_factory=list)
    inliers: int = 0  # of the best geometric match so far
    region: tuple[tuple[float, float], ...] | None = None
    coverage: float | None = None

    def keep(self, method: MethodEvidence) -> None:
        """Keep ``method`` as this method's evidence, in place of any earlier one."""
        self.methods = [m for m in self.methods if m.method != method.method] + [method]

    @property
    def confidence(self) -> float:
        return max((m.confidence for m in self.methods), default=0.0)


def _preview_agreement(
    suspect: _Suspect, record: GenerationRecord, to_original: np.ndarray, enough: float
) -> Agreement | None:
    """How the overlap agrees once the suspect is mapped by ``to_original`` (2x3, suspect pixels
    to the original's) onto the record's stored preview; None: cannot judge."""
    preview = np.asarray(Image.open(io.BytesIO(record.thumbnail)).convert("L"))
    to_preview = to_original * (preview.shape[1] / record.width)
    return block_agreement(suspect.gray, preview, to_preview, enough=enough)


def _judged(method: str, agreement: Agreement | None, confidence: float, **raw: int | None) -> MethodEvidence:
    """A method's evidence with the dense agreement it was judged on, if any."""
    return MethodEvidence(
        method,
        agreement=None if agreement is None else round(agreement.share, 3),
        blocks=None if agreement is None else agreement.blocks,
        confidence=round(confidence, 4),
        **raw,
    )


def _fitting(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled down, if needed, to fit ``side`` on its long side."""
    scale = min(1.0, side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


class Verifier:
    """Runs the stages cheapest first. One per process; the index is shared by its requests."""

    def __init__(
        self,
        settings: Settings,
        index: FingerprintIndex,
        reader: ManifestReader,
        thresholds: Thresholds | None = None,
    ) -> None:
        self._settings = settings
        self._index = index
        self._reader = reader
        self.thresholds = thresholds or Thresholds()

    def verify(self, connection: sqlite3.Connection, data: bytes) -> VerificationResult:
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round((now - clock) * 1000, 2)
            clock = now

        decoded = decode_image(
            data, max_bytes=self._settings.max_upload_bytes, max_pixels=self._settings.max_pixels
        )
        lap("decode")
        manifest = self._reader.read(data, decoded.mime_type)
        lap("c2pa")
        records = RecordStore(connection)
        evidence: dict[int, _Evidence] = {}
        self._exact(records, decoded.sha256, decoded.pixels_sha256(), manifest, evidence)
        lap("exact")
        store = FingerprintStore(connection)
        self._index.catch_up(store)
        lap("catch_up")
        detail = None
        if not any(e.confidence >= 1.0 for e in evidence.values()):
            detail = self._search(_Suspect(decoded.image), records, store, evidence, lap)
        matches = self._matches(records, evidence)
        lap("rank")
        authentic = manifest.generation_id is not None and any(
            m.record.generation_id == manifest.generation_id for m in matches
        )
        verdict = "authentic" if authentic else (matches[0].verdict if matches else "no_match")
        return VerificationResult(verdict, manifest, matches, detail, timings)

    def _exact(
        self,
        records: RecordStore,
        bytes_sha256: str,
        pixels_sha256: str,
        manifest: ManifestReport,
        evidence: dict[int, _Evidence],
    ) -> None:
        found = [
            ("exact_bytes", records.by_signed_sha256(bytes_sha256)),
            ("exact_pixels", records.by_pixels_sha256(pixels_sha256)),
        ]
        if manifest.generation_id:
            found.append(("c2pa", records.by_generation_id(manifest.generation_id)))
        for method, record in found:
            if record is not None:
                evidence.setdefault(record.id, _Evidence()).methods.append(
                    MethodEvidence(method, confidence=1.0)
                )

    def _search(
        self,
        suspect: _Suspect,
        records: RecordStore,
        store: FingerprintStore,
        evidence: dict[int, _Evidence],
        lap: Callable[[str], None],
    ) -> QueryDetail:
        thresholds = self.thresholds
        image = suspect.image
        hashes = pdq_dihedral(image)
        pdq_hits = self._index.search_pdq(hashes, thresholds.pdq_possible)
        for record_id, hit in pdq_hits.items():
            # Two near-blank images share a hash by chance: the weaker side's quality decides.
            quality = min(hashes[0].quality, store.pdq_quality(record_id))
            agreement = None
            if quality >= thresholds.pdq_min_quality:
                # A hit is confirmed the way a geometric match is: aligned, does the whole
                # image agree? That keeps two simple layouts alike to PDQ apart, and makes a
                # whole copy that PDQ sees a little too far off (a thumbnail of a drawing) a match.
                needed = pdq_agreement_needed(hit.distance, thresholds)
                agreement = self._whole_image_agreement(suspect, records, record_id, hit.variant, needed)
            share = None if agreement is None else agreement.share
            confidence = pdq_confidence(hit.distance, quality, thresholds, share)
            evidence.setdefault(record_id, _Evidence()).keep(
                _judged("pdq", agreement, confidence, distance=hit.distance)
            )
        lap("pdq")
        query = extract_local_features(image)
        lap("local_extract")
        voted = self._local_stage(suspect, query, records, store, evidence, lap)
        detail = QueryDetail(pdq_quality=hashes[0].quality, keypoints=len(query))
        # Local features do not survive mirroring. A PDQ hit through a mirrored or turned hash
        # (too weak alone: a smooth picture's hash has low quality) tells which way to turn the
        # suspect back; its local features then confirm that one record.
        turned_back: dict[int, tuple[_Suspect, LocalFeatures]] = {}
        for record_id, hit in pdq_hits.items():
            if hit.variant and evidence[record_id].confidence < MATCH_CONFIDENCE:
                if hit.variant not in turned_back:
                    upright = _Suspect(dihedral_variant(image, hit.variant))
                    turned_back[hit.variant] = (upright, extract_local_features(upright.image))
                upright, features = turned_back[hit.variant]
                self._verify_candidates(upright, features, [record_id], records, store, evidence)
                lap("local_upright")
        # The further looks only run while nothing matched, so a found copy costs one pass. (A
        # mirrored look would find mirrored crops too, at another ~70 ms for every unmatched
        # query; whole mirrored copies are found by PDQ's dihedral variants and the upright look.)
        voted_small: list[int] = []
        if not self._matched(evidence):
            # A crop shows a part of the original enlarged: at the processing side its details
            # are finer than the original's, beyond ORB's pyramid; a smaller look meets them.
            small = extract_local_features(image, side=SMALL_SIDE)
            lap("local_extract_small")
            voted_small = self._local_stage(
                suspect, small, records, store, evidence, lap, "small", SMALL_QUERY_DESCRIPTORS
            )
        if not self._matched(evidence):
            # Keypoints of a flat drawing's crop are too few or too alike to align it, yet its
            # record is usually among the first voted for (benchmark: 58 of 71 such misses in
            # the top four of these two looks): place the crop in their previews densely.
            top = voted[:DENSE_CANDIDATES] + voted_small[:DENSE_CANDIDATES]
            self._dense_look(suspect, list(dict.fromkeys(top)), records, evidence)
            lap("dense")
        if not self._matched(evidence):
            # A screenshot shows the original small, among page chrome: look again at twice the
            # resolution (upsampling a small screenshot), where the picture's keypoints meet the
            # original's at a similar scale, and count each record's votes where they cluster.
            large = extract_local_features(image, side=2 * PROCESSING_SIDE, max_keypoints=LARGE_KEYPOINTS)
            lap("local_extract_large")
            self._local_stage(
                suspect,
                large,
                records,
                store,
                evidence,
                lap,
                "large",
                LARGE_QUERY_DESCRIPTORS,
                densest_window=True,
            )
        return detail

    @staticmethod
    def _matched(evidence: dict[int, _Evidence]) -> bool:
        return max((e.confidence for e in evidence.values()), default=0.0) >= MATCH_CONFIDENCE

    def _local_stage(
        self,
        suspect: _Suspect,
        query: LocalFeatures,
        records: RecordStore,
        store: FingerprintStore,
        evidence: dict[int, _Evidence],
        lap: Callable[[str], None],
        variant: str = "",
        descriptors: int = QUERY_DESCRIPTORS,
        densest_window: bool = False,
    ) -> list[int]:
        """Vote for candidates with the query's descriptors and verify the best; returns the
        voted record ids, best first."""
        suffix = f"_{variant}" if variant else ""
        positions = None
        if densest_window:
            positions = query.points[:descriptors] / np.array([query.width, query.height], np.float32)
        candidates = self._index.search_local(
            query.descriptors[:descriptors], positions=positions, limit=MAX_CANDIDATES_TO_VERIFY
        )
        ranked = [c.record_id for c in candidates if c.votes >= MIN_VOTES]
        windows = {c.record_id: c.window for c in candidates if c.window is not None}
        first = ranked[:CANDIDATES_TO_VERIFY] + [
            r for r in evidence if r not in ranked
        ]  # PDQ hits get a region too
        lap("local_search" + suffix)
        self._verify_candidates(suspect, query, first, records, store, evidence, windows)
        if not self._matched(evidence):
            # A crop or a small screenshot shares only part of the original's indexed descriptors
            # and can rank below records with generic texture: look further down before giving up.
            later = ranked[CANDIDATES_TO_VERIFY:]
            self._verify_candidates(suspect, query, later, records, store, evidence, windows)
        lap("local_verify" + suffix)
        return ranked

    def _verify_candidates(
        self,
        suspect: _Suspect,
        query: LocalFeatures,
        record_ids: list[int],
        records: RecordStore,
        store: FingerprintStore,
        evidence: dict[int, _Evidence],
        windows: dict[int, tuple[float, float, float, float]] | None = None,
    ) -> None:
        for record_id in record_ids:
            reference = store.local_features(record_id)
            if reference is None:
                continue
            window = windows.get(record_id) if windows else None
            geometry = self._geometry(query, reference, window)
            if geometry is None:
                continue
            # The region is in reference coordinates, and a rescaled query covers the same
            # rectangle, so the larger look needs no correction.
            found = evidence.setdefault(record_id, _Evidence())
            if geometry.inliers > found.inliers:
                agreement = self._agreement(suspect, records, record_id, geometry)
                confidence = self._geometry_confidence(suspect, records, record_id, geometry, agreement)
                found.inliers = geometry.inliers
                found.region, found.coverage = geometry.region, geometry.coverage
                found.keep(_judged("local_features", agreement, confidence, score=geometry.inliers))

    def _geometry(
        self,
        query: LocalFeatures,
        reference: LocalFeatures,
        window: tuple[float, float, float, float] | None,
    ) -> GeometricMatch | None:
        """Verify a candidate, first where its votes cluster when the search says where that is.

        The large look's 3,000 query descriptors cost ~14 ms per candidate, and a query that
        matches nothing verifies eight there. A copy lies where its record's votes cluster, so
        the query's keypoints in and around that window are checked first; the whole query is
        matched only when they begin a transform (the picture may reach beyond the window),
        which most wrong candidates never do. Benchmark, same hour: large-look verification
        median 48 -> 33 ms on never-registered queries, no screenshot lost.
        """
        if window is None:
            return verify_geometry(query, reference)
        left, top, right, bottom = window
        near = query.within(
            left - WINDOW_MARGIN, top - WINDOW_MARGIN, right + WINDOW_MARGIN, bottom + WINDOW_MARGIN
        )
        geometry = verify_geometry(near, reference)
        if geometry is None or geometry.inliers < WINDOW_INLIERS_FOR_WHOLE:
            return geometry
        whole = verify_geometry(query, reference)
        return whole if whole is not None and whole.inliers > geometry.inliers else geometry

    def _geometry_confidence(
        self,
        suspect: _Suspect,
        records: RecordStore,
        record_id: int,
        geometry: GeometricMatch,
        agreement: Agreement | None,
    ) -> float:
        """A geometric match's confidence; one of few inliers is judged as a placement found
        without keypoints is, its hue included (only asked for where the blocks confirm it)."""
        if agreement is None:
            return geometry_confidence(geometry.inliers, None, 0, self.thresholds)
        confidence = geometry_confidence(geometry.inliers, agreement.share, agreement.blocks, self.thresholds)
        if confidence >= MATCH_CONFIDENCE and geometry.inliers < self.thresholds.inliers_match:
            hue = self._hue(suspect, records, record_id, agreement)
            confidence = geometry_confidence(
                geometry.inliers, agreement.share, agreement.blocks, self.thresholds, hue
            )
        return confidence

    @staticmethod
    def _hue(suspect: _Suspect, records: RecordStore, record_id: int, agreement: Agreement) -> float | None:
        """How the suspect's colours agree with the record's preview under the agreement's map."""
        record = records.by_id(record_id)
        if record is None:
            return None
        preview = np.asarray(Image.open(io.BytesIO(record.thumbnail)).convert("RGB"))
        return hue_agreement(suspect.rgb, preview, agreement.transform)

    def _agreement(
        self, suspect: _Suspect, records: RecordStore, record_id: int, geometry: GeometricMatch
    ) -> Agreement | None:
        """Dense agreement with the record's preview, judged only where it can decide a match."""
        if not self.thresholds.inliers_possible <= geometry.inliers < self.thresholds.inliers_alone:
            return None
        record = records.by_id(record_id)
        if record is None:
            return None
        # Refining the alignment costs ~4 ms; it can only matter below the share the rule asks.
        enough = required_agreement(geometry.inliers, self.thresholds)
        return _preview_agreement(suspect, record, geometry.transform, enough)

    def _dense_look(
        self, suspect: _Suspect, record_ids: list[int], records: RecordStore, evidence: dict[int, _Evidence]
    ) -> None:
        """Place the suspect, as an upright crop or rescaled copy, in each record's preview
        without keypoints, and judge the placement block by block (and by hue, which can only
        veto a placement that the blocks confirm)."""
        # Previews are small: shrink the suspect to their size once, not for every record.
        side = self._settings.thumbnail_side
        small = _Suspect(suspect.image.resize(_fitting(suspect.image.size, side), Image.Resampling.BILINEAR))
        for record_id in record_ids:
            record = records.by_id(record_id)
            if record is None:
                continue
            preview_gray = np.asarray(Image.open(io.BytesIO(record.thumbnail)).convert("L"))
            placed = locate_within(small.gray, preview_gray, min_coverage=DENSE_MIN_COVERAGE)
            if placed is None:
                continue
            agreement = block_agreement(
                small.gray,
                preview_gray,
                placed,
                enough=self.thresholds.dense_agreement_few,
                refine_from=DENSE_REFINE_FROM,
            )
            if (
                agreement is None
                or dense_confidence(agreement.share, agreement.blocks, None, self.thresholds) <= 0
            ):
                continue
            hue = self._hue(small, records, record_id, agreement)
            confidence = dense_confidence(agreement.share, agreement.blocks, hue, self.thresholds)
            if confidence <= 0:
                continue
            found = evidence.setdefault(record_id, _Evidence())
            to_original = agreement.transform * (record.width / preview_gray.shape[1])
            found.region, found.coverage = mapped_region(
                to_original, small.image.size, (record.width, record.height)
            )
            found.keep(_judged("dense_alignment", agreement, confidence))
            return

    def _whole_image_agreement(
        self, suspect: _Suspect, records: RecordStore, record_id: int, variant: int, enough: float
    ) -> Agreement | None:
        """Dense agreement of the whole suspect, turned as PDQ's winning hash saw it, with the
        record's preview."""
        upright = suspect if variant == 0 else _Suspect(dihedral_variant(suspect.image, variant))
        record = records.by_id(record_id)
        if record is None:
            return None
        to_original = np.array(
            [[record.width / upright.image.width, 0, 0], [0, record.height / upright.image.height, 0]]
        )
        return _preview_agreement(upright, record, to_original, enough)

    def _matches(self, records: RecordStore, evidence: dict[int, _Evidence]) -> tuple[RecordMatch, ...]:
        matches = []
        for record_id, found in evidence.items():
            confidence = found.confidence
            if confidence <= 0:
                continue
            record = records.by_id(record_id)
            if record is None:
                continue
            matches.append(
                RecordMatch(
                    record=record,
                    confidence=round(confidence, 4),
                    verdict=verdict_for(confidence),
                    methods=tuple(m for m in found.methods if m.confidence > 0),
                    region=found.region,
                    coverage=found.coverage,
                )
            )
        matches.sort(key=lambda m: m.confidence, reverse=True)
        return tuple(matches)
