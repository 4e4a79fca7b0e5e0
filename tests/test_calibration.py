"""The calibration: one frozen object the read path is given, and the README's numbers are its numbers."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from index.calibration import Calibration

README = Path(__file__).parents[1] / "README.md"
WORDS = {2: "two", 0.1: "a tenth"}  # numbers the README spells out


def readme_text() -> str:
    return re.sub(r"\s+", " ", README.read_text())


def stated_numbers(calibration: Calibration) -> list[str]:
    """The README's sentences that state a calibrated number, written from ``calibration``."""
    t, looks, r = calibration.thresholds, calibration.looks, calibration.ransac
    recolour = calibration.recolour
    return [
        f"a hit within {t.pdq_match} bits is a match unless the whole suspect disagrees",
        f"(agreement below {t.pdq_match_agreement}:",
        f"between {t.pdq_match} and {t.pdq_possible} bits, {t.pdq_agreement} makes it a match",
        f"Hashes of quality below {t.pdq_min_quality} never match",
        f"so {t.inliers_match} inliers need an agreement of {t.agreement_at_fewest_inliers}, falling to "
        f"{t.agreement_at_many_inliers} at {t.inliers_match + t.agreement_span_inliers}",
        f"from {t.inliers_alone} inliers the keypoints suffice, as do {t.inliers_unjudged} where",
        f"With {t.inliers_possible}-{t.inliers_match - 1} inliers",
        f"near-identical overlap ({t.agreement_below_match}) will do",
        f"({round(100 * t.dense_hue_agreement)} % of the coloured blocks coloured alike",
        f"it needs {t.dense_min_blocks} blocks or more agreeing at {t.dense_agreement_few} "
        f"({t.dense_agreement} from {t.dense_many_blocks} blocks;",
        f"fewer than {t.inliers_reviewed_anyway} inliers whose overlap agrees below {t.agreement_to_review}",
        f"(PDQ quality below {t.pdq_min_quality} and fewer than {t.low_detail_keypoints} keypoints",
        f"where its overlap agrees below {r.similarity_fits} and {r.richer_from_inliers} inliers",
        f"(at least {t.nested_share} of it, as below {t.inliers_reviewed_anyway} inliers:",
        f"axes stretched apart at most {r.max_anisotropy:g} times, depth across the corners varying at "
        f"most {r.max_perspective:g} times",
        f"brightness, contrast or gamma map in {round(100 * t.agreement_levels)} % of its overlap",
        f"Below {t.inliers_reviewed_anyway} inliers one picture must also lie within the other, at "
        f"least {t.nested_share} of it",
        f"judged at {looks.judged_side} px first",
        f"looks at {looks.small_side} and at {looks.smaller_side} px, "
        f"{looks.small_keypoints:,} keypoints each",
        f"({looks.large_keypoints:,} keypoints, the first {looks.large_query_descriptors:,} searched)",
        f"described at the first {looks.mirrored_keypoints:,} of the first look's keypoints mirrored",
        "the first record of each look"
        if looks.dense_candidates == 1
        else f"the first {WORDS[looks.dense_candidates]} records of each look",
        f"(at most {t.band_kinds} kinds of row and of column,",
        f"at every scale down to {WORDS[looks.dense_min_coverage]} of their area",
        f"A placement that correlates below {calibration.alignment.min_placement_correlation} is not judged",
        "where the upright search already places it at a correlation of "
        f"{calibration.alignment.stretched_from_correlation} or more",
        f"a `local_features` match below {t.inliers_alone} inliers and a `dense_alignment`",
        f"no match where more than {round(100 * recolour.share)} % of the overlap is flat in both",
        f"differs from the original by over {recolour.tolerance:g} CIELAB units",
        f"a saturation from {recolour.edit.min_saturation:g} to {recolour.edit.max_saturation:g}, "
        f"per-channel gains from {1 / recolour.edit.max_gain:g} to {recolour.edit.max_gain:g} that differ by "
        f"at most {round(100 * (recolour.edit.max_tint - 1))} %",
    ]


@pytest.mark.parametrize("sentence", stated_numbers(Calibration()))
def test_the_readme_states_the_calibrated_numbers(sentence: str) -> None:
    assert sentence in readme_text()


def test_a_recalibrated_number_no_longer_matches_the_readme() -> None:
    """The check above reads the numbers from the calibration, not from a copy of them."""
    thresholds = dataclasses.replace(Calibration().thresholds, inliers_match=25)
    recalibrated = dataclasses.replace(Calibration(), thresholds=thresholds)
    assert [s for s in stated_numbers(recalibrated) if s not in readme_text()]


def test_a_calibration_is_frozen() -> None:
    calibration = Calibration()
    with pytest.raises(dataclasses.FrozenInstanceError):
        calibration.thresholds.inliers_match = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        calibration.looks = calibration.looks  # type: ignore[misc]


def test_every_number_has_its_reason() -> None:
    """Every field carries a comment, on its line or on the lines just above its group."""
    source = (Path(__file__).parents[1] / "index" / "calibration.py").read_text()
    explained: dict[str, bool] = {}
    under_comment = False
    for line in (raw.strip() for raw in source.splitlines()):
        field = re.match(r"(\w+): [\w |]+ = ", line)
        if line.startswith("#"):
            under_comment = True
        elif field:
            explained[field.group(1)] = under_comment or "#" in line
        else:
            under_comment = False
    for group in dataclasses.fields(Calibration()):
        for number in dataclasses.fields(getattr(Calibration(), group.name)):
            assert explained.get(number.name), f"{group.name}.{number.name} has no reason"
