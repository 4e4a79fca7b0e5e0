"""The read path's looks, listed once in order (``LOOKS``): each takes the query and the evidence
so far and adds to it; a later look runs only while nothing matched, so a found copy costs one pass.

PDQ first, then local features at the processing side, turned upright where PDQ saw the suspect
mirrored or turned, smooth pictures compared whole by colour, local features at two smaller
sides (crops), a dense placement without keypoints (flat drawings), at twice the side
(screenshots), and of the suspect mirrored (mirrored crops). Adding a look is adding one entry to ``LOOKS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from index.calibration import Calibration
from index.engine import SearchIndex
from index.evidence import Evidence, MethodEvidence, Picture, QueryDetail, judged, matched
from index.features import PROCESSING_SIDE, LocalFeatures, describe, detect, extract_local_features, mirrored
from index.fingerprints import dihedral_variant
from index.judging import dense_placement, verify_candidates, vote_and_verify, whole_image_agreement
from index.preview import Previews, PreviewSource
from index.query import Found, Query
from index.scoring import MATCH_CONFIDENCE, fill_confidence, pdq_agreement_needed, pdq_confidence
from index.smooth import FillAgreement, SmoothRecords, fill_agreement, smooth
from index.store import FingerprintStore


@dataclass(frozen=True)
class Look:
    """One look at the query: ``run`` adds what it finds to the evidence. With ``while_unmatched``
    it runs only while no record's evidence makes it a match (``Matcher.search``)."""

    name: str
    run: Callable[[Query, Found], None]
    while_unmatched: bool


class Matcher:
    """Finds the records a suspect may be a copy of, cheapest look first. One per process."""

    def __init__(
        self,
        index: SearchIndex,
        calibration: Calibration,
        looks: tuple[Look, ...] | None = None,
        smooth: SmoothRecords | None = None,
    ) -> None:
        """``smooth``: the smooth records, as the process or its master caught them up before
        serving; by default, none yet, and the first search catches them up."""
        self._index = index
        self.calibration = calibration
        self._looks = LOOKS if looks is None else looks  # another list: tests and experiments
        if smooth is None:
            smooth = SmoothRecords(calibration)
        elif smooth.calibration != calibration:
            raise ValueError("the smooth records were chosen under another calibration")
        self._smooth = smooth

    def search(
        self,
        image: Image.Image,
        previews: PreviewSource,
        store: FingerprintStore,
        evidence: Found,
        lap: Callable[[str], None],
    ) -> QueryDetail:
        """Add every record that ``image`` may be a copy of to ``evidence`` (by record id), calling
        ``lap`` with each step's name as it ends; returns how much detail the image has.
        ``previews`` gives a record's stored preview, for the dense checks."""
        calibration = self.calibration
        query = Query(
            Picture(image),
            self._index,
            store,
            Previews(previews, calibration.looks.judged_side),
            calibration,
            lap,
            self._smooth,
        )
        for look in self._looks:
            # The one place of the rule: evidence only grows, so once a record matched every
            # further conditional look is skipped.
            if look.while_unmatched and matched(evidence):
                continue
            look.run(query, evidence)
        assert query.features is not None  # the first keypoint look always runs
        quality, keypoints = query.hashes[0].quality, len(query.features)
        thresholds = calibration.thresholds
        low_detail = quality < thresholds.pdq_min_quality and keypoints < thresholds.low_detail_keypoints
        return QueryDetail(pdq_quality=quality, keypoints=keypoints, low_detail=low_detail)


# ---- the looks, in the order LOOKS lists them -------------------------------------------------


def pdq_look(query: Query, evidence: Found) -> None:
    """PDQ over the 8 rotations and mirrors, each hit confirmed by the whole image's agreement."""
    thresholds = query.calibration.thresholds
    hashes = query.hashes
    query.pdq_hits = query.index.search_pdq(hashes, thresholds.pdq_possible)
    for record_id, hit in query.pdq_hits.items():
        # Two near-blank images share a hash by chance: the weaker side's quality decides.
        quality = min(hashes[0].quality, query.store.pdq_quality(record_id))
        agreement, hue = None, None
        if quality >= thresholds.pdq_min_quality:
            # A hit is confirmed the way a geometric match is: aligned, does the whole
            # image agree? That keeps two simple layouts alike to PDQ apart, and makes a
            # whole copy that PDQ sees a little too far off (a thumbnail of a drawing) a match.
            needed = pdq_agreement_needed(hit.distance, thresholds)
            agreement, hue = whole_image_agreement(query, record_id, hit.variant, needed)
        share = None if agreement is None else agreement.share
        confidence = pdq_confidence(hit.distance, quality, thresholds, share, hue)
        evidence.setdefault(record_id, Evidence()).keep(
            judged("pdq", agreement, confidence, distance=hit.distance)
        )
    query.lap("pdq")


def local_look(query: Query, evidence: Found) -> None:
    """Local features at the processing side: vote, then verify the best candidates."""
    query.detection = detect(query.suspect.gray_image)
    query.features = describe(query.detection)
    query.lap("local_extract")
    retrieval = query.calibration.retrieval
    vote_and_verify(query, evidence, "", query.features, retrieval.query_descriptors)


def upright_look(query: Query, evidence: Found) -> None:
    """Local features do not survive mirroring. A PDQ hit through a mirrored or turned hash (too
    weak alone: a smooth picture's hash has low quality) tells which way to turn the suspect
    back; its local features then confirm that one record."""
    turned_back: dict[int, tuple[Picture, LocalFeatures]] = {}
    for record_id, hit in query.pdq_hits.items():
        if hit.variant and evidence[record_id].confidence < MATCH_CONFIDENCE:
            if hit.variant not in turned_back:
                upright = Picture(dihedral_variant(query.suspect.image, hit.variant))
                turned_back[hit.variant] = (upright, extract_local_features(upright.image))
            upright, features = turned_back[hit.variant]
            verify_candidates(query, upright, features, [record_id], evidence)
            query.lap("local_upright")


def smooth_look(query: Query, evidence: Found) -> None:
    """A smooth picture (a gradient, a soft wallpaper, a flat illustration) has a PDQ hash of low
    quality and few keypoints, so neither finds its copy: the smooth records whose colour
    layouts lie nearest are compared with the whole suspect, block by block, under the mild
    global colour edit that fits best (index.smooth)."""
    if not _smooth_suspect(query):
        return  # a copy of a smooth picture is smooth too: mild edits add no detail
    for record_id in query.smooth.nearest(query.suspect.rgb, query.store, query.previews):
        _colour_fill(query, record_id, [query.suspect], evidence)
    query.lap("smooth")


def colour_veto_look(query: Query, evidence: Found) -> None:
    """Keypoints, blocks and PDQ compare lightness and structure, so a flag or a flat
    illustration with one part recoloured lines up with its original everywhere (benchmark hard
    negatives: 15-61 inliers at agreements of 0.7-1.0). A smooth suspect that a match makes a
    whole copy of a smooth record (its region covers the original, or PDQ alone found it) with
    fewer inliers than need no confirmation is therefore held to the colour comparison too, as
    it shows: turned as PDQ's eight variants can turn it. Where its colours disagree the match
    stays a possible one; a near-uniform picture has no colours to tell by."""
    if not _smooth_suspect(query):
        return
    thresholds, fill = query.calibration.thresholds, query.calibration.fill
    for record_id, found in evidence.items():
        whole = found.coverage is None or found.coverage >= fill.whole_coverage
        if (
            found.confidence < MATCH_CONFIDENCE
            or found.confidence_of("colour_fill") >= MATCH_CONFIDENCE  # the colours agreed
            or found.inliers >= thresholds.inliers_alone  # keypoints that need no confirmation
            or not whole
            or not query.smooth.holds(record_id, query.store)
        ):
            continue
        # Compared at the preview's 256 px: turning a copy twice that size is as good and cheap.
        small = query.suspect.image.copy()
        small.thumbnail((2 * query.calibration.looks.judged_side,) * 2, Image.Resampling.BOX)
        turned = [Picture(dihedral_variant(small, variant)) for variant in range(8)]
        agreement = _colour_fill(query, record_id, turned, evidence)
        # A near-uniform picture has no colours to tell by: the comparison cannot veto it.
        if (
            agreement is not None
            and agreement.spread >= fill.min_spread
            and agreement.share < fill.share
            and not _whole_copy_edited(query, record_id, turned)
        ):
            found.methods = [
                dataclasses.replace(m, confidence=min(m.confidence, MATCH_CONFIDENCE - 0.01))
                for m in found.methods
            ]
    query.lap("colour_veto")


def _whole_copy_edited(query: Query, record_id: int, suspects: list[Picture]) -> bool:
    """Whether one of ``suspects`` agrees whole with the record's preview under a stronger global
    edit than a barely edited copy's, but one that turns no hue either (the colour families:
    contrast -50 %, gamma 0.6, grayscale; index.calibration.Recolour): a copy so edited keeps
    its match."""
    preview = query.previews.get(record_id)
    if preview is None:
        return False
    fill = dataclasses.replace(query.calibration.fill, edit=query.calibration.recolour.edit)
    found = [fill_agreement(suspect.rgb, preview.coarse.rgb, fill) for suspect in suspects]
    return any(a is not None and a.share >= fill.share for a in found)


def _smooth_suspect(query: Query) -> bool:
    assert query.features is not None  # the first keypoint look always runs
    return smooth(query.hashes[0].quality, len(query.features), query.calibration.thresholds)


def _colour_fill(
    query: Query, record_id: int, suspects: list[Picture], evidence: Found
) -> FillAgreement | None:
    """The best colour comparison of ``suspects`` (the suspect, maybe turned) with the record's
    preview, kept as evidence where it makes a match; None: no whole copy of it in any."""
    fill = query.calibration.fill
    preview = query.previews.get(record_id)
    if preview is None:
        return None
    found = [fill_agreement(suspect.rgb, preview.coarse.rgb, fill) for suspect in suspects]
    agreement = max((a for a in found if a is not None), key=lambda a: a.share, default=None)
    if agreement is None:
        return None
    confidence = fill_confidence(agreement.share, agreement.spread, fill)
    if confidence > 0:
        kept = evidence.setdefault(record_id, Evidence())
        if kept.region is None:
            kept.region = (
                (0.0, 0.0),
                (preview.width, 0.0),
                (preview.width, preview.height),
                (0.0, preview.height),
            )
            kept.coverage = 1.0
        kept.keep(
            MethodEvidence(
                "colour_fill",
                agreement=round(agreement.share, 3),
                blocks=agreement.blocks,
                confidence=round(confidence, 4),
            )
        )
    return agreement


def _small_look(name: str, side: Callable[[Calibration], int]) -> Callable[[Query, Found], None]:
    def look(query: Query, evidence: Found) -> None:
        """A crop shows part of the original enlarged, beyond ORB's pyramid at the processing
        side; seen smaller it meets the original's scale (index.calibration.Looks)."""
        looks = query.calibration.looks
        features = extract_local_features(
            query.suspect.gray_image, side=side(query.calibration), max_keypoints=looks.small_keypoints
        )
        query.lap("local_extract_" + name)
        vote_and_verify(query, evidence, name, features, looks.small_query_descriptors)

    return look


def mirrored_look(query: Query, evidence: Found) -> None:
    """Local features do not survive mirroring, and PDQ's mirrored hash is lost once a mirrored
    copy is also cropped or overlaid, so the upright look has no record to turn it back for:
    look at the suspect mirrored, as the first keypoint look did upright. The region needs no
    correction: the mirrored suspect shows the same part of the original."""
    assert query.detection is not None  # the first keypoint look always runs
    looks = query.calibration.looks
    suspect = Picture(dihedral_variant(query.suspect.image, _MIRRORED))
    # The first look's keypoints, mirrored.
    features = describe(mirrored(query.detection), max_keypoints=looks.mirrored_keypoints)
    query.lap("local_extract_mirrored")
    # Only the first candidates: a mirrored copy keeps most of the original (a crop to 60-80 %),
    # so its record ranks among them, and every never-registered query pays for this look
    # (benchmark: verifying down to the 8th cost 50 ms at the median of those queries).
    vote_and_verify(
        query,
        evidence,
        "mirrored",
        features,
        looks.mirrored_query_descriptors,
        suspect=suspect,
        look_further=False,
    )


def dense_look(query: Query, evidence: Found) -> None:
    """Keypoints of a flat drawing's crop are too few or too alike to align it, yet its record is
    usually among the first voted for: place the suspect, as an upright crop or rescaled copy,
    in the previews of the first records each keypoint look so far voted for, without
    keypoints, and judge the placement block by block (and by hue, which can only veto a
    placement that the blocks confirm)."""
    looks = query.calibration.looks
    voted = [r for ranked in query.voted.values() for r in ranked[: looks.dense_candidates]]
    dense_placement(query, list(dict.fromkeys(voted)), evidence)
    query.lap("dense")


def large_look(query: Query, evidence: Found) -> None:
    """A screenshot shows the original small, among page chrome: look again at twice the
    resolution (upsampling a small screenshot), where the picture's keypoints meet the
    original's at a similar scale, and count each record's votes where they cluster."""
    looks = query.calibration.looks
    features = extract_local_features(
        query.suspect.gray_image, side=2 * PROCESSING_SIDE, max_keypoints=looks.large_keypoints
    )
    query.lap("local_extract_large")
    vote_and_verify(query, evidence, "large", features, looks.large_query_descriptors, densest_window=True)


_MIRRORED = 4  # pdq_dihedral's variant: mirrored left to right, not turned

# The order is the cost order: a found copy stops before the dearer looks. The mirrored look comes
# last: whole mirrored copies are found earlier, by PDQ's dihedral variants and the upright look,
# so only mirrored crops and overlaid mirrored copies need it, and only queries that nothing
# matched pay for it (never-registered ones: scripts/bench_robustness.py measures the cost).
LOOKS: tuple[Look, ...] = (
    Look("pdq", pdq_look, while_unmatched=False),
    Look("local", local_look, while_unmatched=False),
    Look("upright", upright_look, while_unmatched=False),  # per record: only those not matched
    Look("smooth", smooth_look, while_unmatched=True),
    Look("small", _small_look("small", lambda c: c.looks.small_side), while_unmatched=True),
    Look("smaller", _small_look("smaller", lambda c: c.looks.smaller_side), while_unmatched=True),
    Look("dense", dense_look, while_unmatched=True),
    Look("large", large_look, while_unmatched=True),
    Look("mirrored", mirrored_look, while_unmatched=True),
    Look("colour_veto", colour_veto_look, while_unmatched=False),  # smooth suspects only
)
