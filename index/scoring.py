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
    # inliers_match (a small crop, a thumbnail) only a near-identical overlap will do.
    agreement_at_fewest_inliers: float = 0.9
    agreement_at_many_inliers: float = 0.6
    agreement_span_inliers: int = 40
    agreement_below_match: float = 0.95
    inliers_alone: int = 300  # so many inliers need no dense confirmation (largest coincidence: 60)
    # A PDQ hit between possible and match (a thumbnail of a drawing, a heavy re-encode) is a
    # match when the whole suspect, scaled onto the original, agrees this much (benchmark: wrong
    # records within pdq_possible reach at most 0.74).
    pdq_agreement: float = 0.9


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
    """Confidence from a PDQ Hamming distance and, for a possible match, the share of the whole
    aligned image that agrees (None: not judged); low-quality hashes never reach a match."""
    confidence = _ramp(distance, thresholds.pdq_possible, thresholds.pdq_match, 0)
    if quality < thresholds.pdq_min_quality:
        return min(confidence, MATCH_CONFIDENCE - 0.01)
    if confidence >= POSSIBLE_CONFIDENCE and agreement is not None and agreement >= thresholds.pdq_agreement:
        return max(confidence, MATCH_CONFIDENCE)
    return confidence


def required_agreement(inliers: int, thresholds: Thresholds) -> float:
    """The dense agreement share a geometric match with ``inliers`` inliers needs to be a match."""
    if inliers < thresholds.inliers_match:
        return thresholds.agreement_below_match
    progress = min(1.0, max(0.0, (inliers - thresholds.inliers_match) / thresholds.agreement_span_inliers))
    high, low = thresholds.agreement_at_fewest_inliers, thresholds.agreement_at_many_inliers
    return high - (high - low) * progress


def geometry_confidence(inliers: int, agreement: float | None, thresholds: Thresholds) -> float:
    """Confidence from the inlier count of a verified similarity transform and the share of the
    aligned overlap that agrees (None: too little structure to judge). Confirmed geometry is a
    match even with few inliers; unconfirmed geometry stays a possible match, for a person to
    review."""
    match = thresholds.inliers_match
    confidence = _ramp(inliers, thresholds.inliers_possible, match, 4 * match)
    if inliers >= thresholds.inliers_alone:
        return confidence
    if inliers >= thresholds.inliers_possible and agreement is not None:
        if agreement >= required_agreement(inliers, thresholds):
            return max(confidence, MATCH_CONFIDENCE)
    return min(confidence, MATCH_CONFIDENCE - 0.01)


def verdict_for(confidence: float) -> str:
    """The verification verdict a search confidence supports on its own."""
    if confidence >= MATCH_CONFIDENCE:
        return "matched"
    if confidence >= POSSIBLE_CONFIDENCE:
        return "possible_match"
    return "no_match"
