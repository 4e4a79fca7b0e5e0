"""How the looks judge a candidate: geometric verification of the suspect's keypoints, and the
dense agreement of the aligned suspect with the record's preview, coarse first and finely where
that falls short."""

from __future__ import annotations

import numpy as np
from PIL import Image

from index.alignment import (
    Agreement,
    block_agreement,
    hue_agreement,
    is_stretched,
    locate_within,
    made_of_bands,
    made_of_straight_edges,
    placed_finer,
)
from index.calibration import Calibration
from index.evidence import Evidence, Picture, judged, matched
from index.features import (
    GeometricMatch,
    LocalFeatures,
    mapped_region,
    output_scaled,
    refit,
    verify_geometry,
)
from index.fingerprints import dihedral_variant
from index.preview import Preview, fitting
from index.query import Found, Query
from index.scoring import MATCH_CONFIDENCE, dense_confidence, geometry_confidence, required_agreement
from index.smooth import recoloured_share


def vote_and_verify(
    query: Query,
    evidence: Found,
    name: str,
    features: LocalFeatures,
    descriptors: int,
    densest_window: bool = False,
    suspect: Picture | None = None,
    look_further: bool = True,
) -> None:
    """Vote for candidates with the first ``descriptors`` of ``features`` and verify the best
    (and, with ``look_further``, the next ones while none matched); records the voted record
    ids, best first, under ``name`` in ``query.voted``. ``features`` are those of ``suspect``
    (default: the query's suspect as it came)."""
    suspect = suspect or query.suspect
    retrieval = query.calibration.retrieval
    suffix = f"_{name}" if name else ""
    positions = None
    if densest_window:
        positions = features.points[:descriptors] / np.array([features.width, features.height], np.float32)
    candidates = query.index.search_local(
        features.descriptors[:descriptors],
        retrieval,
        positions=positions,
        limit=retrieval.max_candidates_to_verify,
    )
    ranked = [c.record_id for c in candidates if c.votes >= retrieval.min_votes]
    windows = {c.record_id: c.window for c in candidates if c.window is not None}
    # Records that earlier looks found something for are verified here too (a PDQ hit gets a
    # region, a crop may align better at this look's scale), but not those whose keypoints
    # lined up too few to count: a never-registered query collects several such records, and
    # each later look would verify them all again.
    thresholds = query.calibration.thresholds
    worth_another_look = [
        r
        for r, found in evidence.items()
        if r not in ranked and (found.confidence > 0 or found.inliers >= thresholds.inliers_possible)
    ]
    first = ranked[: retrieval.candidates_to_verify] + worth_another_look
    query.lap("local_search" + suffix)
    verify_candidates(query, suspect, features, first, evidence, windows)
    if look_further and not matched(evidence):
        # A crop or a small screenshot shares only part of the original's indexed descriptors
        # and can rank below records with generic texture: look further down before giving up.
        later = ranked[retrieval.candidates_to_verify :]
        verify_candidates(query, suspect, features, later, evidence, windows)
    query.lap("local_verify" + suffix)
    query.voted[name or "main"] = ranked


# A later look judges a record again, while it is not a match, only for another part of it than
# the looks before judged (its region's bounding box overlapping each earlier one's by less than
# this, as intersection over union), or with more inliers. Drawings that share a shape with a
# registered one are found look after look, and each judgement (similarity, affine, homography,
# dense refinement) costs tens of milliseconds: at a million records (scripts/bench_scale.py
# --keep-index) unrelated images' p95 744 -> 431 ms; the slowest had spent half their time
# judging the same records' same parts again. Replayed on the 1,102 saved copies of the full run of
# 2026-12-04 that reached the small, large, mirrored or upright look: not one outcome changed,
# nor when no second judgement without more inliers was made at all (413 of them).
SAME_REGION = 0.8


def verify_candidates(
    query: Query,
    suspect: Picture,
    features: LocalFeatures,
    record_ids: list[int],
    evidence: Found,
    windows: dict[int, tuple[float, float, float, float]] | None = None,
) -> None:
    thresholds = query.calibration.thresholds
    for record_id in record_ids:
        reference = query.reference(record_id)
        if reference is None:
            continue
        window = windows.get(record_id) if windows else None
        geometry = _geometry(query.calibration, features, reference, window)
        if geometry is None:
            continue
        # The region is in reference coordinates, and a rescaled query covers the same
        # rectangle, so the larger look needs no correction.
        found = evidence.setdefault(record_id, Evidence())
        kept = found.confidence_of("local_features")
        # Another look's alignment with fewer inliers may fit better where the first was
        # off (a crop seen at the scale of the original's keypoints): judge it too while
        # the record is not a match yet, if it shows another part of the record (SAME_REGION).
        box = _box(geometry.region)
        judged_boxes = query.judged_regions.setdefault(record_id, [])
        same_part = box is not None and any(_box_overlap(box, b) >= SAME_REGION for b in judged_boxes)
        if geometry.inliers > found.inliers or (
            kept < MATCH_CONFIDENCE and geometry.inliers >= thresholds.inliers_possible and not same_part
        ):
            if box is not None:
                judged_boxes.append(box)
            geometry, agreement, confidence = _judge_models(query, suspect, record_id, geometry)
            if confidence > kept or (confidence == kept and geometry.inliers > found.inliers):
                found.inliers = geometry.inliers
                found.region, found.coverage = geometry.region, geometry.coverage
                found.keep(judged("local_features", agreement, confidence, score=geometry.inliers))


def _box(region: tuple[tuple[float, float], ...]) -> tuple[float, float, float, float] | None:
    """A region's bounding box (left, top, right, bottom); None for an empty one."""
    if not region:
        return None
    points = np.array(region)
    left, top = points.min(axis=0)
    right, bottom = points.max(axis=0)
    return float(left), float(top), float(right), float(bottom)


def _box_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union if union > 0 else 0.0


def _geometry(
    calibration: Calibration,
    features: LocalFeatures,
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
    ransac = calibration.ransac
    if window is None:
        return verify_geometry(features, reference, ransac)
    margin = calibration.retrieval.window_margin
    left, top, right, bottom = window
    near = features.within(left - margin, top - margin, right + margin, bottom + margin)
    geometry = verify_geometry(near, reference, ransac)
    if geometry is None or geometry.inliers < calibration.retrieval.window_inliers_for_whole:
        return geometry
    whole = verify_geometry(features, reference, ransac)
    return whole if whole is not None and whole.inliers > geometry.inliers else geometry


def _judge_models(
    query: Query, suspect: Picture, record_id: int, similarity: GeometricMatch
) -> tuple[GeometricMatch, Agreement | None, float]:
    """A geometric match judged under the simplest model that fits it: the similarity first,
    then, where its overlap agrees less than ``similarity_fits`` and enough inliers support more
    freedom, an affine map and a homography fitted to the same correspondences
    (index.features.refit); returns the match taken, its agreement and its confidence.

    A stretched crop or a photographed print aligns only roughly under a similarity: the dense
    check turns it down or, if it passes, the region has the wrong shape. The richer models come
    second because on a screenshot's small picture among page chrome their extra freedom finds
    worse fits (a probe on held-back images: screenshots 94 -> 90 % with the affine map alone);
    a copy that the similarity fits never depends on them.
    """
    agreement, confidence = _judge_geometry(query, suspect, record_id, similarity)
    best = similarity, agreement, confidence
    ransac = query.calibration.ransac
    # A match on inliers alone (agreement None) says nothing of the fit: refit it too, which
    # costs a RANSAC, not a dense check, since its inliers decide again.
    if similarity.inliers < ransac.richer_from_inliers or (
        confidence >= MATCH_CONFIDENCE and agreement is not None and agreement.share >= ransac.similarity_fits
    ):
        return best
    for model in ("affine", "homography"):
        richer = refit(similarity, model, ransac)
        # A fit that explains fewer matches than the similarity did is no better account of them.
        if richer is None or richer.inliers < similarity.inliers:
            continue
        agreement, confidence = _judge_geometry(query, suspect, record_id, richer)
        if _better_fit((richer, agreement, confidence), best, ransac.better_fit_share):
            best = richer, agreement, confidence
        if best[2] >= MATCH_CONFIDENCE and best[1] is not None and best[1].share >= ransac.similarity_fits:
            break
    return best


def _better_fit(
    judged: tuple[GeometricMatch, Agreement | None, float],
    than: tuple[GeometricMatch, Agreement | None, float],
    margin: float,
) -> bool:
    """Whether a richer model's judgement beats the best so far: a higher confidence, or, at the
    same, an overlap that agrees clearly more (a match of a stretched copy under a similarity is
    still one, but its region is the wrong shape); where either was not judged densely (too many
    inliers to need it, too calm to judge), clearly more inliers under the same tolerance."""
    if judged[2] != than[2]:
        return judged[2] > than[2]
    if judged[1] is not None and than[1] is not None:
        return judged[1].share >= than[1].share + margin
    return judged[0].inliers >= (1 + margin) * than[0].inliers


def _judge_geometry(
    query: Query, suspect: Picture, record_id: int, geometry: GeometricMatch
) -> tuple[Agreement | None, float]:
    """A geometric match's confidence and the dense agreement it was judged on (None: not
    judged, only where it can decide a match): on the coarse preview, and on the fine one
    where that did not confirm the match."""
    thresholds = query.calibration.thresholds
    unjudged = None, geometry_confidence(geometry.inliers, None, thresholds)
    if not thresholds.inliers_possible <= geometry.inliers < thresholds.inliers_alone:
        return unjudged
    preview = query.previews.get(record_id)
    if preview is None:
        return unjudged
    # Refining the alignment costs ~4 ms; it can only matter below the share the rule asks.
    enough = required_agreement(geometry.inliers, thresholds)
    agreement = _preview_agreement(query, suspect, preview, preview.coarse, geometry.transform, enough)
    confidence = _geometry_confidence(query, suspect, preview.coarse, geometry, agreement)
    fine = preview.fine_for(output_scaled(geometry.transform, preview.stored_width / preview.width))
    if confidence >= MATCH_CONFIDENCE or fine is None:
        return agreement, confidence
    fine_agreement = _preview_agreement(query, suspect, preview, fine, geometry.transform, enough)
    fine_confidence = _geometry_confidence(query, suspect, fine, geometry, fine_agreement)
    return (fine_agreement, fine_confidence) if fine_confidence > confidence else (agreement, confidence)


def _geometry_confidence(
    query: Query, suspect: Picture, judged_on: Picture, geometry: GeometricMatch, agreement: Agreement | None
) -> float:
    """A geometric match's confidence; its overlap must keep the original's block levels, and
    one of few inliers the original's hues too (asked only where the rest confirms it)."""
    thresholds = query.calibration.thresholds
    share = None if agreement is None else agreement.share
    within = max(geometry.coverage, geometry.inside)  # of one picture within the other
    # A meme caption's letters, bent by an affine map onto a stored word: a similarity of 56
    # inliers at 0.46 became 60 at 0.62, over a quarter of one picture and a tenth of the other.
    richer = geometry.model != "similarity"
    confidence = geometry_confidence(geometry.inliers, share, thresholds, within=within, richer_model=richer)
    if agreement is not None and agreement.levels < thresholds.agreement_levels:
        # Its structure agrees, its levels do not: one layout drawn twice (Thresholds).
        confidence = min(confidence, MATCH_CONFIDENCE - 0.01)
    if (
        agreement is not None
        and confidence >= MATCH_CONFIDENCE
        and geometry.inliers < thresholds.inliers_match
    ):
        hue = _hue(query, suspect, judged_on, agreement)
        confidence = geometry_confidence(geometry.inliers, share, thresholds, hue, within, richer)
    if (
        agreement is not None
        and confidence >= MATCH_CONFIDENCE
        and _recoloured(query, suspect, judged_on, agreement)
    ):
        confidence = MATCH_CONFIDENCE - 0.01  # the structure is the original's, some colours not
    return confidence


def _recoloured(query: Query, suspect: Picture, preview: Picture, agreement: Agreement) -> bool:
    """Whether more of the aligned overlap's flat parts differ in colour from the preview's, beyond
    one global colour edit, than an overlay could cover (index.smooth.recoloured_share)."""
    recolour = query.calibration.recolour
    share = recoloured_share(suspect.rgb, preview.rgb, agreement.transform, recolour)
    return share is not None and share > recolour.share


def dense_placement(query: Query, record_ids: list[int], evidence: Found) -> None:
    """The dense look for ``record_ids``, in order, until one placement is a match."""
    looks, thresholds = query.calibration.looks, query.calibration.thresholds
    alignment = query.calibration.alignment
    suspect = query.suspect
    # Previews are small: shrink the suspect to their size once, not for every record.
    small = Picture(
        suspect.image.resize(fitting(suspect.image.size, looks.judged_side), Image.Resampling.BILINEAR)
    )
    shrink = (small.image.width / suspect.image.width, small.image.height / suspect.image.height)
    to_small = np.diag([*shrink, 1.0])
    for rank, record_id in enumerate(record_ids):
        preview = query.previews.get(record_id)
        if preview is None:
            continue
        placed = locate_within(
            small.gray,
            preview.coarse.gray,
            alignment,
            min_coverage=looks.dense_min_coverage,
            stretched=rank < looks.dense_stretched_candidates,
        )
        if placed is None:
            continue
        agreement = _dense_agreement(query, small, preview.coarse, placed)
        judged_on, placed_query = preview.coarse, small
        # A stretched placement has one more free parameter to fit a wrong drawing with: even
        # confirmed, it is judged again where the lines' widths show (a crop of a grey
        # cylinder stretched onto another drawing's white one: 0.97 of 37 blocks coarse, 0.71
        # of 156 full size; a false match in the full benchmark run otherwise).
        if (is_stretched(placed, alignment) or not _dense_confirms(query, agreement)) and (
            agreement is None or agreement.share >= looks.dense_fine_from
        ):
            # Too few blocks to judge, or near a copy's share: judge the placement again on
            # the full-size suspect and preview, made precise at that resolution (a pixel
            # off at the coarse preview's half resolution is four there).
            to_fine = (placed @ to_small) * (preview.stored_width / preview.coarse.image.width)
            fine = preview.fine_for(to_fine)
            if fine is not None:
                to_fine = placed_finer(suspect.gray, fine.gray, to_fine, alignment)
                agreement = _dense_agreement(query, suspect, fine, to_fine)
                judged_on, placed_query = fine, suspect
        if agreement is None or not _dense_confirms(query, agreement):
            continue
        hue = _hue(query, placed_query, judged_on, agreement)
        confidence = dense_confidence(agreement.share, agreement.blocks, hue, thresholds)
        if confidence <= 0 or _recoloured(query, placed_query, judged_on, agreement):
            continue
        to_original = agreement.transform * (preview.width / judged_on.image.width)
        region, coverage = mapped_region(
            to_original, placed_query.image.size, (preview.width, preview.height)
        )
        # A part of the picture that is only stripes and crosses, or a polygon's corner, is in
        # every drawing so designed; a whole copy keeps the design's proportions and colours,
        # which the smooth looks judge.
        if (
            confidence >= MATCH_CONFIDENCE
            and coverage < query.calibration.fill.whole_coverage
            and (made_of_bands(small.rgb, thresholds) or made_of_straight_edges(small.rgb, thresholds))
        ):
            confidence = MATCH_CONFIDENCE - 0.01
        found = evidence.setdefault(record_id, Evidence())
        found.region, found.coverage = region, coverage
        found.keep(judged("dense_alignment", agreement, confidence))
        return


def _dense_agreement(
    query: Query, placed: Picture, preview: Picture, to_preview: np.ndarray
) -> Agreement | None:
    """Block agreement of a placement found without keypoints (edge-tolerant, see
    index.alignment), refined where it comes near a copy's."""
    return block_agreement(
        placed.gray,
        preview.gray,
        to_preview,
        query.calibration.alignment,
        enough=query.calibration.thresholds.dense_agreement_few,
        refine_from=query.calibration.looks.dense_refine_from,
        edge_tolerant=True,
    )


def _dense_confirms(query: Query, agreement: Agreement | None) -> bool:
    """Whether a placement's blocks make it a match, before its hues are asked."""
    thresholds = query.calibration.thresholds
    return agreement is not None and dense_confidence(agreement.share, agreement.blocks, None, thresholds) > 0


def whole_image_agreement(
    query: Query, record_id: int, variant: int, enough: float
) -> tuple[Agreement | None, float | None]:
    """Dense agreement of the whole suspect, turned as PDQ's winning hash saw it, with the
    record's preview, and where that confirms it, how their hues agree (None: not asked, or no
    colour to tell). PDQ and the block check see only luminance: a flag with one band in another
    colour of like lightness has the same hash and the same structure."""
    preview = query.previews.get(record_id)
    if preview is None:
        return None, None
    suspect = query.suspect
    upright = suspect if variant == 0 else Picture(dihedral_variant(suspect.image, variant))
    to_original = np.array(
        [[preview.width / upright.image.width, 0, 0], [0, preview.height / upright.image.height, 0]]
    )
    agreement = _preview_agreement(query, upright, preview, preview.coarse, to_original, enough)
    if agreement is None or agreement.share < enough or _grey(upright):
        return agreement, None  # a grey copy keeps no hue to compare
    return agreement, _hue(query, upright, preview.coarse, agreement)


def _grey(picture: Picture) -> bool:
    """Whether a picture has (almost) no colour: its channels within a few levels of each other."""
    rgb = picture.rgb.astype(np.int16)
    return float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean()) < _GREY_LEVELS


_GREY_LEVELS = 3.0  # mean distance of a channel from the pixel's mean; JPEG leaves a grey copy ~1


def _preview_agreement(
    query: Query,
    suspect: Picture,
    preview: Preview,
    judged_on: Picture,
    to_original: np.ndarray,
    enough: float,
) -> Agreement | None:
    """How the overlap agrees once the suspect is mapped by ``to_original`` (2x3 or 3x3, suspect
    pixels to the original's) onto ``judged_on``, the record's preview coarse or fine; None:
    cannot judge."""
    to_preview = output_scaled(to_original, judged_on.image.width / preview.width)
    return block_agreement(
        suspect.gray, judged_on.gray, to_preview, query.calibration.alignment, enough=enough
    )


def _hue(query: Query, suspect: Picture, preview: Picture, agreement: Agreement) -> float | None:
    """How the suspect's colours agree with a record's preview under the agreement's map."""
    return hue_agreement(suspect.rgb, preview.rgb, agreement.transform, query.calibration.alignment)
