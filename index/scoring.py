"""Pure scoring: raw evidence (PDQ distance, RANSAC inliers, dense agreement) -> one confidence 0..1.

Each method's raw value maps piecewise-linearly onto a shared scale whose anchors are the
calibrated thresholds: 0.5 at the "possible" threshold and 0.9 at the "match" threshold, rising
towards 0.99 as the evidence grows. A record's confidence is the strongest of its methods. The
thresholds themselves are arguments (index.calibration.Thresholds); the benchmark in
scripts/bench_robustness.py calibrated them.
"""

from __future__ import annotations

from index.calibration import Fill, Thresholds

MATCH_CONFIDENCE = 0.9
POSSIBLE_CONFIDENCE = 0.5
_TOP = 0.99


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
    distance: int,
    quality: int,
    thresholds: Thresholds,
    agreement: float | None = None,
    hue: float | None = None,
) -> float:
    """Confidence from a PDQ Hamming distance, the share of the whole aligned image that
    agrees (None: not judged) and the share of its coloured blocks coloured alike (None: not
    asked, or no colour to tell); low-quality hashes never reach a match."""
    confidence = _ramp(distance, thresholds.pdq_possible, thresholds.pdq_match, 0)
    if quality < thresholds.pdq_min_quality:
        return min(confidence, MATCH_CONFIDENCE - 0.01)
    if agreement is None or confidence < POSSIBLE_CONFIDENCE:
        return confidence
    if hue is not None and hue < thresholds.dense_hue_agreement:
        return min(confidence, MATCH_CONFIDENCE - 0.01)
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
    inliers: int,
    agreement: float | None,
    thresholds: Thresholds,
    hue: float | None = None,
    within: float = 1.0,
    richer_model: bool = False,
) -> float:
    """Confidence from the inlier count of a verified similarity transform, the share of the
    aligned overlap that agrees (None: too little structure to judge), for few inliers the hue
    agreement (None: no colour to tell), and ``within``: the larger of the shares of the query
    inside the original and of the original inside the query. Confirmed geometry is a match
    even with few inliers; unconfirmed geometry stays a possible match, for a person to review,
    unless its few inliers align an overlap that mostly disagrees. An overlap too calm to judge
    is confirmed by many inliers alone. Fewer than inliers_reviewed_anyway inliers confirm a
    copy only where one picture lies within the other (Thresholds.nested_share), as do any
    number of them aligned by ``richer_model`` (an affine map or a homography): the freedom
    that fits a stretched or photographed copy also bends chance alignments into agreement."""
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
    if (inliers < thresholds.inliers_reviewed_anyway or richer_model) and within < thresholds.nested_share:
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


def fill_confidence(share: float, spread: float, fill: Fill) -> float:
    """Confidence from the share of a smooth picture's blocks that agree in colour with a
    record's preview under a mild global edit (index.smooth): a match or nothing, as for a
    dense placement; a near-uniform picture (colour spread below Fill.min_spread) identifies
    nothing however well it agrees."""
    if spread < fill.min_spread or share < fill.share:
        return 0.0
    return MATCH_CONFIDENCE + (_TOP - MATCH_CONFIDENCE) * (share - fill.share) / (1 - fill.share)


def verdict_for(confidence: float) -> str:
    """The verification verdict a search confidence supports on its own."""
    if confidence >= MATCH_CONFIDENCE:
        return "matched"
    if confidence >= POSSIBLE_CONFIDENCE:
        return "possible_match"
    return "no_match"
