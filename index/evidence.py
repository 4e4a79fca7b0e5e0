"""What the read path's looks find: each method's evidence for a record, and the pictures they compare."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from index.alignment import Agreement
from index.scoring import MATCH_CONFIDENCE


@dataclass(frozen=True)
class MethodEvidence:
    """One method's raw evidence for a record: a distance (PDQ, bits) or a score (inliers), and
    the share of the aligned overlap that agrees over how many structured blocks (None: not
    judged)."""

    method: str  # exact_bytes | exact_pixels | c2pa | pdq | local_features | dense_alignment | colour_fill
    distance: int | None = None
    score: int | None = None
    agreement: float | None = None
    blocks: int | None = None
    confidence: float = 0.0


def judged(method: str, agreement: Agreement | None, confidence: float, **raw: int | None) -> MethodEvidence:
    """A method's evidence with the dense agreement it was judged on, if any."""
    return MethodEvidence(
        method,
        agreement=None if agreement is None else round(agreement.share, 3),
        blocks=None if agreement is None else agreement.blocks,
        confidence=round(confidence, 4),
        **raw,
    )


@dataclass(frozen=True)
class QueryDetail:
    """How much identifying detail the suspect has. Flat or featureless images (PDQ quality
    below Thresholds.pdq_min_quality and fewer keypoints than Thresholds.low_detail_keypoints:
    a plain gradient, a blank page) can only be matched whole, by colour and fill
    (index.smooth); ``low_detail`` says so, which tells a reviewer why "no match" means little
    for a crop or a collage of one."""

    pdq_quality: int
    keypoints: int
    low_detail: bool


class Picture:
    """A decoded image (the suspect, a turned or shrunk copy of it, a record's preview) with the
    grey and colour arrays that dense checks share, each made at most once."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image

    @functools.cached_property
    def gray_image(self) -> Image.Image:
        """The image in grey: each keypoint look scales it to its own side (converting the
        suspect once, not at every look)."""
        return self.image.convert("L")

    @functools.cached_property
    def gray(self) -> np.ndarray:
        return np.asarray(self.gray_image)

    @functools.cached_property
    def rgb(self) -> np.ndarray:
        return np.asarray(self.image.convert("RGB"))


@dataclass
class Evidence:
    """Evidence gathered for one record while the looks run."""

    methods: list[MethodEvidence] = field(default_factory=list)
    inliers: int = 0  # of the best geometric match so far
    region: tuple[tuple[float, float], ...] | None = None
    coverage: float | None = None

    def keep(self, method: MethodEvidence) -> None:
        """Keep ``method`` as this method's evidence, in place of any earlier one."""
        self.methods = [m for m in self.methods if m.method != method.method] + [method]

    def confidence_of(self, method: str) -> float:
        """The confidence of ``method``'s evidence so far; 0 where it has none."""
        return max((m.confidence for m in self.methods if m.method == method), default=0.0)

    @property
    def confidence(self) -> float:
        return max((m.confidence for m in self.methods), default=0.0)


def matched(evidence: dict[int, Evidence]) -> bool:
    """Whether any record's evidence so far makes it a match."""
    return max((e.confidence for e in evidence.values()), default=0.0) >= MATCH_CONFIDENCE
