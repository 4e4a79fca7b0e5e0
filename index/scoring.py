"""Pure scoring: raw evidence (PDQ distance, RANSAC inliers, dense agreement) -> one confidence 0..1.

Each method's raw value maps piecewise-linearly onto a shared scale whose anchors are the
calibrated thresholds: 0.5 at the "possible" threshold and 0.9 at the "match" threshold, rising
towards 0.99 as the evidence grows. A record's confidence is the strongest of its methods. The
thresholds themselves are arguments; the benchmark in scripts/bench_robustness.py sets them.
"""

from __future__ import annotations

from dataclasses import dataclass

MATCH_CONFIDENCE = 0.9
POSSIBLE_CONFIDENCE = 0.5
_TOP = 0.99


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds, calibrated for zero false matches on the benchmark's distractors."""

    pdq_match: int = 31
    pdq_possible: int = 45
    pdq_min_quality: int = 50
    inliers_match: int = 20
    inliers_possible: int = 10
    # A geometric match counts as a match only if the aligned images agree (index.alignment):
    # a share of 0.9 at inliers_match, falling linearly to 0.6 at 40 more inliers. Coincidences
    # of shapes and glyphs bring 20-40 inliers (an empty circle against part of a bowling ball:
    # 24 inliers, share 0.83); overlays lower a copy's share but not its inliers. Below
    # inliers_match (a small crop, a thumbnail) only a near-identical overlap will do, in the
    # same hues where it has colour (dense_hue_agreement: flags share designs, not colours).
    agreement_at_fewest_inliers: float = 0.9
    agreement_at_many_inliers: float = 0.6
    agreement_span_inliers: int = 40
    agreement_below_match: float = 0.95
    # So many inliers need no dense confirmation (benchmark: wrong records reach 123, a mirrored
    # Wesnoth sprite against its neighbour in the same set).
    inliers_alone: int = 300
    # Where the overlap is too calm for the dense check to judge (a misty wallpaper's crop), a
    # coincidence has little to align: shapes and glyphs that line up by chance are structure,
    # which the check would judge. So many inliers there are a copy's (benchmark: wrong records
    # on unjudgeable overlaps reach at most 34 inliers).
    inliers_unjudged: int = 60
    # Nor is every unconfirmed geometric match worth a person's review: with fewer than
    # inliers_reviewed_anyway inliers, an overlap that mostly disagrees is shapes lining up by
    # chance (a meme caption's letters on a stored word: 22-61 inliers, shares 0.11-0.5), and
    # below agreement_to_review it is no match. Benchmark run of 2026-12-01: 1,808 of the 2,354
    # never-registered queries that were possible matches fell below, and none of the copies
    # left as possible matches of their own record (an overlay hides part of a copy, not its
    # 100 and more inliers).
    agreement_to_review: float = 0.3
    inliers_reviewed_anyway: int = 40
    # A PDQ hit between possible and match (a thumbnail of a drawing, a heavy re-encode) is a
    # match when the whole suspect, scaled onto the original, agrees this much (benchmark: wrong
    # records within pdq_possible reach at most 0.74).
    pdq_agreement: float = 0.9
    # PDQ sees only where an image is dark and where it is light, so two simple layouts can
    # share a hash (a flag's coloured bands against a dark screen's frame: 18-26 bits apart).
    # A hit within pdq_match whose whole aligned image disagrees below this share stays a
    # possible match.
    pdq_match_agreement: float = 0.5
    # A crop placed without keypoints (index.alignment.locate_within, compared edge-tolerantly)
    # is a match when so much of it, with at least dense_min_blocks structured blocks, agrees
    # (more below dense_many_blocks), and so many of its coloured blocks are coloured alike in
    # both (hue cannot tell only where neither has colour). The best placement of a wrong record
    # is the best of thousands (benchmark probe, 19,485 wrong candidates of crops and
    # never-registered images, where hue did not tell: 0.88 with 32-47 blocks, 0.86 with 48-63,
    # 0.66 with 64 or more; in full runs flags in other colours reached 0.96-0.99: stripes on
    # stripes, a black-and-white cross on a Nordic one, bands on bands).
    dense_agreement: float = 0.9
    dense_agreement_few: float = 0.95
    dense_min_blocks: int = 32
    dense_many_blocks: int = 64
    dense_hue_agreement: float = 0.8


def _ramp(value: float, possible: float, match: float, saturate: float) -> float:
    """0.5 at ``possible``, 0.9 at ``match``, 0.99 at ``saturate``; values run in that order."""
    if (value - possible) * (match - possible) < 0:
        return 0.0
    if (value - match) * (match - possible) < 0:
        return POSSIBLE_CONFIDENCE + (MATCH_CONFIDENCE - POSSIBLE_CONFIDENCE) * (
            (value - possible) / (match - possible)
        )
    progress = min(1.0, (value - match) / (saturate - match))
    return MATCH_CONFIDENCE + (_TOP - MATCH_CONFIDENCE) * progress


def pdq_confidence(
    distance: int, quality: int, thresholds: Thresholds, agreement: float | None = None
) -> float:
    """Confidence from a PDQ Hamming distance and the share of the whole aligned image that
    agrees (None: not judged); low-quality hashes never reach a match."""
    confidence = _ramp(distance, thresholds.pdq_possible, thresholds.pdq_match, 0)
    if quality < thresholds.pdq_min_quality:
        return min(confidence, MATCH_CONFIDENCE - 0.01)
    if agreement is None or confidence < POSSIBLE_CONFIDENCE:
        return confidence
    if agreement >= pdq_agreement_needed(distance, thresholds):
        return max(confidence, MATCH_CONFIDENCE)
    return min(confidence, MATCH_CONFIDENCE - 0.01)


def pdq_agreement_needed(distance: int, thresholds: Thresholds) -> float:
    """The whole-image agreement a PDQ hit at ``distance`` needs to be a match: a little to
    stay one within pdq_match, a near-identical image beyond it."""
    return thresholds.pdq_match_agreement if distance <= thresholds.pdq_match else thresholds.pdq_agreement


def required_agreement(inliers: int, thresholds: Thresholds) -> float:
    """The agreement a geometric match with ``inliers`` inliers needs to be a match."""
    if inliers < thresholds.inliers_match:
        return thresholds.agreement_below_match
    progress = min(1.0, (inliers - thresholds.inliers_match) / thresholds.agreement_span_inliers)
    high, low = thresholds.agreement_at_fewest_inliers, thresholds.agreement_at_many_inliers
    return high - (high - low) * progress


def dense_agreement_needed(blocks: int, thresholds: Thresholds) -> float | None:
    """The agreement a crop placed without keypoints needs, by how many blocks were judged;
    None: too few to tell."""
    if blocks < thresholds.dense_min_blocks:
        return None
    return (
        thresholds.dense_agreement
        if blocks >= thresholds.dense_many_blocks
        else thresholds.dense_agreement_few
    )


def geometry_confidence(
    inliers: int, agreement: float | None, thresholds: Thresholds, hue: float | None = None
) -> float:
    """Confidence from the inlier count of a verified similarity transform, the share of the
    aligned overlap that agrees (None: too little structure to judge) and, for few inliers, the
    hue agreement (None: no colour to tell). Confirmed geometry is a match even with few
    inliers; unconfirmed geometry stays a possible match, for a person to review, unless its
    few inliers align an overlap that mostly disagrees. An overlap too calm to judge is
    confirmed by many inliers alone."""
    match = thresholds.inliers_match
    confidence = _ramp(inliers, thresholds.inliers_possible, match, 4 * match)
    if inliers >= thresholds.inliers_alone:
        return confidence
    if agreement is None:
        confirmed = inliers >= thresholds.inliers_unjudged
    else:
        confirmed = inliers >= thresholds.inliers_possible and agreement >= required_agreement(
            inliers, thresholds
        )
        if inliers < match and hue is not None and hue < thresholds.dense_hue_agreement:
            confirmed = False
    if confirmed:
        return max(confidence, MATCH_CONFIDENCE)
    if (
        agreement is not None
        and agreement < thresholds.agreement_to_review
        and inliers < thresholds.inliers_reviewed_anyway
    ):
        return min(confidence, POSSIBLE_CONFIDENCE - 0.01)
    return min(confidence, MATCH_CONFIDENCE - 0.01)


def dense_confidence(agreement: float, blocks: int, hue: float | None, thresholds: Thresholds) -> float:
    """Confidence from the block agreement (``agreement`` over ``blocks`` judged blocks) and the
    hue agreement (None: neither image has colour to tell) of a crop placed by dense search: a
    match or nothing, since a placement is always found and a weak one is no evidence at all."""
    needed = dense_agreement_needed(blocks, thresholds)
    if needed is None or agreement < needed:
        return 0.0
    if hue is not None and hue < thresholds.dense_hue_agreement:
        return 0.0
    return MATCH_CONFIDENCE + (_TOP - MATCH_CONFIDENCE) * (agreement - needed) / (1 - needed)


def verdict_for(confidence: float) -> str:
    """The verification verdict a search confidence supports on its own."""
    if confidence >= MATCH_CONFIDENCE:
        return "matched"
    if confidence >= POSSIBLE_CONFIDENCE:
        return "possible_match"
    return "no_match"
