"""A record's stored preview as the dense checks judge it: coarse first, finely where that fails."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from index.evidence import Picture


@dataclass(frozen=True)
class StoredPreview:
    """What the caller stores of a record for the dense checks: the original's size and a small
    JPEG of it. The application keeps it with its record (its privacy rules govern who sees it),
    so the matcher asks for it by record id (``PreviewSource``)."""

    width: int
    height: int
    data: bytes


# A record id's stored preview; None where the record is gone.
PreviewSource = Callable[[int], StoredPreview | None]


def fitting(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled down, if needed, to fit ``side`` on its long side."""
    scale = min(1.0, side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


class Preview:
    """A record's stored preview, as judged first (``coarse``, at most ``judged_side`` on its long
    side) and, where the store keeps it larger, at its full size (``fine``).

    A crop of a small drawing on a large page, or a crop keeping a quarter of the original,
    covers few blocks of a 256 px preview: too few to judge (a drawing of 60 preview pixels
    gives some 20 structured blocks, where a crop placed without keypoints needs 32), or too
    coarse for the thin strokes that the suspect, seen at twice that scale, shows sharply. At
    512 px the same overlap holds four times the blocks, with the original's own detail in each.
    """

    def __init__(self, stored: StoredPreview, judged_side: int) -> None:
        self.width, self.height = stored.width, stored.height  # the original's
        self._stored = stored.data
        self._judged_side = judged_side
        image: Image.Image = Image.open(io.BytesIO(stored.data))
        self.stored_width, self._stored_side = image.width, max(image.size)
        if self._stored_side > judged_side:
            # JPEG decodes at a fraction of its size in the DCT (draft), far cheaper than a
            # full decode and a resize; the scale to the original is read from the width.
            image.draft("RGB", fitting(image.size, judged_side))
            image = image.resize(fitting(image.size, judged_side), Image.Resampling.BILINEAR)
        self.coarse = Picture(image)

    @functools.cached_property
    def _fine(self) -> Picture:
        return Picture(Image.open(io.BytesIO(self._stored)))

    def fine_for(self, to_stored: np.ndarray) -> Picture | None:
        """The preview at its stored size, for a suspect mapped onto it by ``to_stored`` (2x3);
        None where it is no larger than the coarse one, or finer than the suspect resolves
        (judging blur against detail)."""
        if self._stored_side <= self._judged_side or float(np.hypot(to_stored[0, 0], to_stored[1, 0])) > 1.0:
            return None
        return self._fine


class Previews:
    """The records' stored previews for one search, each looked up and decoded at most once: a
    record may be judged by PDQ, by every keypoint look and by the dense look."""

    def __init__(self, source: PreviewSource, judged_side: int) -> None:
        self._source = source
        self._judged_side = judged_side
        self._found: dict[int, Preview | None] = {}

    def get(self, record_id: int, keep: bool = True) -> Preview | None:
        """The record's preview; None if the record is gone. ``keep=False`` for a pass over
        many records that each need theirs once: a decoded preview holds some 360 KB, and
        the smooth records' first catch-up decodes every smooth record's."""
        if record_id in self._found:
            return self._found[record_id]
        stored = self._source(record_id)
        preview = None if stored is None else Preview(stored, self._judged_side)
        if keep:
            self._found[record_id] = preview
        return preview
