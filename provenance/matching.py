"""The read path's perceptual matching: PDQ, then local features at three scales and a dense
look, each later look only while nothing matched, gathering evidence per record."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

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
    placed_finer,
    required_agreement,
    verify_geometry,
)
from provenance.evidence import Evidence, Picture, QueryDetail, judged, matched
from provenance.records import GenerationRecord, RecordStore

QUERY_DESCRIPTORS = 500
# The small looks, for crops: a crop shows part of the original enlarged, so at the processing
# side its details are finer than the original's, beyond ORB's pyramid. Seen smaller they meet
# the original's scale: a crop keeping half the area near 450 px, one keeping a quarter at 320.
# (Benchmark, crops of 300 registered images: adding the 320 px look and judging each look's
# alignment raised 25 % crops from 88.7 to 90.1 % and 50 % crops from 96.0 to 96.2 %.)
SMALL_LOOKS = (("small", 400), ("smaller", 320))
SMALL_QUERY_DESCRIPTORS = 300
# The large look: page chrome around a screenshotted picture wins the strongest corners, so
# the picture's own keypoints only show up in a larger budget.
LARGE_KEYPOINTS = 3000
LARGE_QUERY_DESCRIPTORS = 600
CANDIDATES_TO_VERIFY = 4
MAX_CANDIDATES_TO_VERIFY = 8  # when none of the first four matched
MIN_VOTES = 3
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
# The agreement thresholds (index.scoring.Thresholds) were calibrated on previews of this long
# side: every judgement is made there first. A larger stored preview is judged again, finely,
# where that first judgement fails and the suspect resolves it (see Preview).
JUDGED_SIDE = 256
# A placement that the coarse preview could judge is judged finely only from this share
# (benchmark: each crop that the fine judgement made a match had 0.55 or more, or too few
# structured blocks to judge; three in four wrong candidates of never-registered queries are
# below 0.3, one in twenty above 0.5, and each fine judgement costs ~9 ms).
DENSE_FINE_FROM = 0.5


class Preview:
    """A record's stored preview, as judged first (``coarse``, at most JUDGED_SIDE on its long
    side) and, where the store keeps it larger, at its full size (``fine``).

    A crop of a small drawing on a large page, or a crop keeping a quarter of the original,
    covers few blocks of a 256 px preview: too few to judge (a drawing of 60 preview pixels
    gives some 20 structured blocks, where a crop placed without keypoints needs 32), or too
    coarse for the thin strokes that the suspect, seen at twice that scale, shows sharply. At
    512 px the same overlap holds four times the blocks, with the original's own detail in each.
    """

    def __init__(self, stored: bytes) -> None:
        self._stored = stored
        image: Image.Image = Image.open(io.BytesIO(stored))
        self.stored_width, self._stored_side = image.width, max(image.size)
        if self._stored_side > JUDGED_SIDE:
            # JPEG decodes at a fraction of its size in the DCT (draft), far cheaper than a
            # full decode and a resize; the scale to the original is read from the width.
            image.draft("RGB", _fitting(image.size, JUDGED_SIDE))
            image = image.resize(_fitting(image.size, JUDGED_SIDE), Image.Resampling.BILINEAR)
        self.coarse = Picture(image)

    @functools.cached_property
    def _fine(self) -> Picture:
        return Picture(Image.open(io.BytesIO(self._stored)))

    def fine_for(self, to_stored: np.ndarray) -> Picture | None:
        """The preview at its stored size, for a suspect mapped onto it by ``to_stored`` (2x3);
        None where it is no larger than the coarse one, or finer than the suspect resolves
        (judging blur against detail)."""
        if self._stored_side <= JUDGED_SIDE or float(np.hypot(to_stored[0, 0], to_stored[1, 0])) > 1.0:
            return None
        return self._fine


class _Previews:
    """The records' stored previews for one search, each looked up and decoded at most once: a
    record may be judged by PDQ, by every keypoint look and by the dense look."""

    def __init__(self, records: RecordStore) -> None:
        self._records = records
        self._found: dict[int, tuple[GenerationRecord, Preview] | None] = {}

    def get(self, record_id: int) -> tuple[GenerationRecord, Preview] | None:
        """The record and its preview; None if the record is gone."""
        if record_id not in self._found:
            record = self._records.by_id(record_id)
            self._found[record_id] = None if record is None else (record, Preview(record.thumbnail))
        return self._found[record_id]


def _preview_agreement(
    suspect: Picture, record: GenerationRecord, preview: Picture, to_original: np.ndarray, enough: float
) -> Agreement | None:
    """How the overlap agrees once the suspect is mapped by ``to_original`` (2x3, suspect pixels
    to the original's) onto the record's ``preview``; None: cannot judge."""
    to_preview = to_original * (preview.image.width / record.width)
    return block_agreement(suspect.gray, preview.gray, to_preview, enough=enough)


def _hue(suspect: Picture, preview: Picture, agreement: Agreement) -> float | None:
    """How the suspect's colours agree with a record's preview under the agreement's map."""
    return hue_agreement(suspect.rgb, preview.rgb, agreement.transform)


def _fitting(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled down, if needed, to fit ``side`` on its long side."""
    scale = min(1.0, side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


class Matcher:
    """Finds the records a suspect may be a copy of, cheapest look first. One per process."""

    def __init__(self, index: FingerprintIndex, thresholds: Thresholds) -> None:
        self._index = index
        self.thresholds = thresholds

    def search(
        self,
        suspect: Picture,
        records: RecordStore,
        store: FingerprintStore,
        evidence: dict[int, Evidence],
        lap: Callable[[str], None],
    ) -> QueryDetail:
        """Add every record the suspect may be a copy of to ``evidence`` (by record id), calling
        ``lap`` with each stage's name as it ends; returns how much detail the suspect has."""
        previews = _Previews(records)
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
                agreement = self._whole_image_agreement(suspect, previews, record_id, hit.variant, needed)
            share = None if agreement is None else agreement.share
            confidence = pdq_confidence(hit.distance, quality, thresholds, share)
            evidence.setdefault(record_id, Evidence()).keep(
                judged("pdq", agreement, confidence, distance=hit.distance)
            )
        lap("pdq")
        query = extract_local_features(image)
        lap("local_extract")
        voted_main = self._local_stage(suspect, query, previews, store, evidence, lap)
        detail = QueryDetail(pdq_quality=hashes[0].quality, keypoints=len(query))
        # Local features do not survive mirroring. A PDQ hit through a mirrored or turned hash
        # (too weak alone: a smooth picture's hash has low quality) tells which way to turn the
        # suspect back; its local features then confirm that one record.
        turned_back: dict[int, tuple[Picture, LocalFeatures]] = {}
        for record_id, hit in pdq_hits.items():
            if hit.variant and evidence[record_id].confidence < MATCH_CONFIDENCE:
                if hit.variant not in turned_back:
                    upright = Picture(dihedral_variant(image, hit.variant))
                    turned_back[hit.variant] = (upright, extract_local_features(upright.image))
                upright, features = turned_back[hit.variant]
                self._verify_candidates(upright, features, [record_id], previews, store, evidence)
                lap("local_upright")
        # The further looks only run while nothing matched, so a found copy costs one pass. (A
        # mirrored look would find mirrored crops too, at another ~70 ms for every unmatched
        # query; whole mirrored copies are found by PDQ's dihedral variants and the upright look.)
        dense_candidates = voted_main[:DENSE_CANDIDATES]
        for variant, side in SMALL_LOOKS:
            if matched(evidence):
                break
            small = extract_local_features(image, side=side)
            lap("local_extract_" + variant)
            voted = self._local_stage(
                suspect, small, previews, store, evidence, lap, variant, SMALL_QUERY_DESCRIPTORS
            )
            dense_candidates += voted[:DENSE_CANDIDATES]
        if not matched(evidence):
            # Keypoints of a flat drawing's crop are too few or too alike to align it, yet its
            # record is usually among the first voted for (benchmark: 58 of 71 such misses in
            # the top four of the main and the first small look): place the crop in their
            # previews densely.
            self._dense_look(suspect, list(dict.fromkeys(dense_candidates)), previews, evidence)
            lap("dense")
        if not matched(evidence):
            # A screenshot shows the original small, among page chrome: look again at twice the
            # resolution (upsampling a small screenshot), where the picture's keypoints meet the
            # original's at a similar scale, and count each record's votes where they cluster.
            large = extract_local_features(image, side=2 * PROCESSING_SIDE, max_keypoints=LARGE_KEYPOINTS)
            lap("local_extract_large")
            self._local_stage(
                suspect,
                large,
                previews,
                store,
                evidence,
                lap,
                "large",
                LARGE_QUERY_DESCRIPTORS,
                densest_window=True,
            )
        return detail

    def _local_stage(
        self,
        suspect: Picture,
        query: LocalFeatures,
        previews: _Previews,
        store: FingerprintStore,
        evidence: dict[int, Evidence],
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
        self._verify_candidates(suspect, query, first, previews, store, evidence, windows)
        if not matched(evidence):
            # A crop or a small screenshot shares only part of the original's indexed descriptors
            # and can rank below records with generic texture: look further down before giving up.
            later = ranked[CANDIDATES_TO_VERIFY:]
            self._verify_candidates(suspect, query, later, previews, store, evidence, windows)
        lap("local_verify" + suffix)
        return ranked

    def _verify_candidates(
        self,
        suspect: Picture,
        query: LocalFeatures,
        record_ids: list[int],
        previews: _Previews,
        store: FingerprintStore,
        evidence: dict[int, Evidence],
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
            found = evidence.setdefault(record_id, Evidence())
            kept = found.confidence_of("local_features")
            # Another look's alignment with fewer inliers may fit better where the first was
            # off (a crop seen at the scale of the original's keypoints): judge it too while
            # the record is not a match yet.
            if geometry.inliers > found.inliers or (
                kept < MATCH_CONFIDENCE and geometry.inliers >= self.thresholds.inliers_possible
            ):
                agreement, confidence = self._judge_geometry(suspect, previews, record_id, geometry)
                if confidence > kept or (confidence == kept and geometry.inliers > found.inliers):
                    found.inliers = geometry.inliers
                    found.region, found.coverage = geometry.region, geometry.coverage
                    found.keep(judged("local_features", agreement, confidence, score=geometry.inliers))

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

    def _judge_geometry(
        self, suspect: Picture, previews: _Previews, record_id: int, geometry: GeometricMatch
    ) -> tuple[Agreement | None, float]:
        """A geometric match's confidence and the dense agreement it was judged on (None: not
        judged, only where it can decide a match): on the coarse preview, and on the fine one
        where that did not confirm the match."""
        thresholds = self.thresholds
        unjudged = None, geometry_confidence(geometry.inliers, None, thresholds)
        if not thresholds.inliers_possible <= geometry.inliers < thresholds.inliers_alone:
            return unjudged
        found = previews.get(record_id)
        if found is None:
            return unjudged
        record, preview = found
        # Refining the alignment costs ~4 ms; it can only matter below the share the rule asks.
        enough = required_agreement(geometry.inliers, thresholds)
        agreement = _preview_agreement(suspect, record, preview.coarse, geometry.transform, enough)
        confidence = self._geometry_confidence(suspect, preview.coarse, geometry, agreement)
        fine = preview.fine_for(geometry.transform * (preview.stored_width / record.width))
        if confidence >= MATCH_CONFIDENCE or fine is None:
            return agreement, confidence
        fine_agreement = _preview_agreement(suspect, record, fine, geometry.transform, enough)
        fine_confidence = self._geometry_confidence(suspect, fine, geometry, fine_agreement)
        return (fine_agreement, fine_confidence) if fine_confidence > confidence else (agreement, confidence)

    def _geometry_confidence(
        self, suspect: Picture, preview: Picture, geometry: GeometricMatch, agreement: Agreement | None
    ) -> float:
        """A geometric match's confidence; one of few inliers must keep the original's hues too
        (asked only where the rest confirms it)."""
        share = None if agreement is None else agreement.share
        confidence = geometry_confidence(geometry.inliers, share, self.thresholds)
        if (
            agreement is not None
            and confidence >= MATCH_CONFIDENCE
            and geometry.inliers < self.thresholds.inliers_match
        ):
            hue = _hue(suspect, preview, agreement)
            confidence = geometry_confidence(geometry.inliers, share, self.thresholds, hue)
        return confidence

    def _dense_look(
        self, suspect: Picture, record_ids: list[int], previews: _Previews, evidence: dict[int, Evidence]
    ) -> None:
        """Place the suspect, as an upright crop or rescaled copy, in each record's preview
        without keypoints, and judge the placement block by block (and by hue, which can only
        veto a placement that the blocks confirm)."""
        # Previews are small: shrink the suspect to their size once, not for every record.
        small = Picture(
            suspect.image.resize(_fitting(suspect.image.size, JUDGED_SIDE), Image.Resampling.BILINEAR)
        )
        shrink = (small.image.width / suspect.image.width, small.image.height / suspect.image.height)
        to_small = np.diag([*shrink, 1.0])
        for record_id in record_ids:
            reference = previews.get(record_id)
            if reference is None:
                continue
            record, preview = reference
            placed = locate_within(small.gray, preview.coarse.gray, min_coverage=DENSE_MIN_COVERAGE)
            if placed is None:
                continue
            agreement = self._dense_agreement(small, preview.coarse, placed)
            judged_on, query = preview.coarse, small
            if not self._dense_confirms(agreement) and (
                agreement is None or agreement.share >= DENSE_FINE_FROM
            ):
                # Too few blocks to judge, or near a copy's share: judge the placement again on
                # the full-size suspect and preview, made precise at that resolution (a pixel
                # off at the coarse preview's half resolution is four there).
                to_fine = (placed @ to_small) * (preview.stored_width / preview.coarse.image.width)
                fine = preview.fine_for(to_fine)
                if fine is not None:
                    to_fine = placed_finer(suspect.gray, fine.gray, to_fine)
                    agreement, judged_on, query = self._dense_agreement(suspect, fine, to_fine), fine, suspect
            if agreement is None or not self._dense_confirms(agreement):
                continue
            hue = _hue(query, judged_on, agreement)
            confidence = dense_confidence(agreement.share, agreement.blocks, hue, self.thresholds)
            if confidence <= 0:
                continue
            found = evidence.setdefault(record_id, Evidence())
            to_original = agreement.transform * (record.width / judged_on.image.width)
            found.region, found.coverage = mapped_region(
                to_original, query.image.size, (record.width, record.height)
            )
            found.keep(judged("dense_alignment", agreement, confidence))
            return

    def _dense_agreement(self, query: Picture, preview: Picture, placed: np.ndarray) -> Agreement | None:
        """Block agreement of a placement found without keypoints (edge-tolerant, see
        index.alignment), refined where it comes near a copy's."""
        return block_agreement(
            query.gray,
            preview.gray,
            placed,
            enough=self.thresholds.dense_agreement_few,
            refine_from=DENSE_REFINE_FROM,
            edge_tolerant=True,
        )

    def _dense_confirms(self, agreement: Agreement | None) -> bool:
        """Whether a placement's blocks make it a match, before its hues are asked."""
        return agreement is not None and (
            dense_confidence(agreement.share, agreement.blocks, None, self.thresholds) > 0
        )

    def _whole_image_agreement(
        self, suspect: Picture, previews: _Previews, record_id: int, variant: int, enough: float
    ) -> Agreement | None:
        """Dense agreement of the whole suspect, turned as PDQ's winning hash saw it, with the
        record's preview."""
        found = previews.get(record_id)
        if found is None:
            return None
        record, preview = found
        upright = suspect if variant == 0 else Picture(dihedral_variant(suspect.image, variant))
        to_original = np.array(
            [[record.width / upright.image.width, 0, 0], [0, record.height / upright.image.height, 0]]
        )
        return _preview_agreement(upright, record, preview.coarse, to_original, enough)
