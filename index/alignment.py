"""Dense confirmation of a geometric match: does the aligned query look like the original?

RANSAC finds a transform that a few dozen keypoints agree on. For clip art and text that is not
enough: two different drawings share a circle's rim, a road sign's border or the glyphs of one
font, and those parts alone align under one similarity (benchmark: a rooster badge against a
glossy round button, a map caption against a name in the same typeface, 20-40 inliers each). A
copy differs from such a coincidence everywhere else: once aligned, a copy agrees with the
original all over the shared area, a coincidence only where its keypoints were.

So we warp the query onto the original's stored preview and compare them block by block: the
share of blocks with structure (in either image) whose structure correlates. Edits that a copy
survives change this little: correlation ignores brightness and contrast, the query's structure
is measured on the original's contrast scale, and comparing at preview scale evens out blur,
noise and JPEG blocking. An overlay claims the blocks it covers, which is why the rule that uses
this share (``index.scoring.geometry_confidence``) asks less of it as the inliers grow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_BLOCK = 8  # preview pixels per block side (a 256 px preview has 32 blocks across)
_SMOOTHING_SIGMA = 1.5  # preview pixels; resampling, JPEG and noise differ at the pixel level
_STRUCTURE_STD = 6.0  # grey-level standard deviation that makes a block count as structured
_AGREEING_CORRELATION = 0.5
_MIN_JUDGED_BLOCKS = 16  # fewer cannot tell a copy from a coincidence (a tiny or flat overlap)


@dataclass(frozen=True)
class Agreement:
    """``share`` of the ``judged`` structured blocks whose content correlates, 0..1."""

    share: float
    judged: int


def _blocks(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    cut = values[: rows * _BLOCK, : cols * _BLOCK]
    return cut.reshape(rows, _BLOCK, cols, _BLOCK).transpose(0, 2, 1, 3).reshape(rows, cols, -1)


def block_agreement(
    query_gray: np.ndarray, preview_gray: np.ndarray, query_to_preview: np.ndarray
) -> Agreement | None:
    """How much of the overlap agrees once the query is aligned onto the original's preview.

    ``query_gray`` and ``preview_gray`` are 2-D uint8 arrays; ``query_to_preview`` is the 2x3
    affine map from query pixels to preview pixels. Returns None when the overlap holds fewer
    than 16 structured blocks: too little to judge.
    """
    height, width = preview_gray.shape
    rows, cols = height // _BLOCK, width // _BLOCK
    if rows < 3 or cols < 3:
        return None
    transform = np.array(query_to_preview, np.float64)
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    if scale < 1:
        # Average the query down to the preview's scale first: warping straight from a large
        # query would alias, and the averaging is what evens out noise and JPEG blocking.
        small = cv2.resize(
            query_gray,
            (max(1, round(query_gray.shape[1] * scale)), max(1, round(query_gray.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
        transform[:, :2] *= [query_gray.shape[1] / small.shape[1], query_gray.shape[0] / small.shape[0]]
        query_gray = small
    warped = cv2.warpAffine(query_gray, transform, (width, height), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(
        np.full(query_gray.shape, 255, np.uint8), transform, (width, height), flags=cv2.INTER_NEAREST
    )
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8))  # interpolated edge pixels are not the query's
    warped = cv2.GaussianBlur(warped, (0, 0), _SMOOTHING_SIGMA).astype(np.float32)
    preview = cv2.GaussianBlur(preview_gray, (0, 0), _SMOOTHING_SIGMA).astype(np.float32)

    complete = _blocks(inside, rows, cols).min(axis=2) > 0
    # Borders, frames, letterbox bars and rotation fill meet the original's edge, where a small
    # misalignment brings them inside: leave out the outermost ring of blocks.
    complete[[0, -1], :] = False
    complete[:, [0, -1]] = False
    if not complete.any():
        return None
    q, p = _blocks(warped, rows, cols), _blocks(preview, rows, cols)
    q = q - q.mean(axis=2, keepdims=True)
    p = p - p.mean(axis=2, keepdims=True)
    q_std, p_std = np.sqrt((q * q).mean(axis=2)), np.sqrt((p * p).mean(axis=2))
    correlation = (q * p).mean(axis=2) / np.maximum(q_std * p_std, 1e-6)
    # A contrast change scales every block's spread alike: judge the query's structure on the
    # original's scale.
    gain = np.sqrt((p_std[complete] ** 2).mean() / max(float((q_std[complete] ** 2).mean()), 1e-6))
    q_std *= float(np.clip(gain, 0.25, 4.0))
    in_query = complete & (q_std > _STRUCTURE_STD)
    in_preview = complete & (p_std > _STRUCTURE_STD)
    judged = int((in_query | in_preview).sum())
    if judged < _MIN_JUDGED_BLOCKS:
        return None
    agreeing = int((in_query & in_preview & (correlation > _AGREEING_CORRELATION)).sum())
    return Agreement(share=agreeing / judged, judged=judged)
