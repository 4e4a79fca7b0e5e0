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
_ECC_ITERATIONS, _ECC_EPSILON, _ECC_SMOOTHING = 30, 1e-3, 3
_ECC_ERODE = np.ones((3, 3), np.uint8)  # leave out the overlap's interpolated rim
_MAX_REFINEMENT = float(_BLOCK)  # preview pixels a refinement may move the preview's corners


@dataclass(frozen=True)
class Agreement:
    """``share`` of the ``judged`` structured blocks whose content correlates, 0..1."""

    share: float
    judged: int


def _blocks(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    cut = values[: rows * _BLOCK, : cols * _BLOCK]
    return cut.reshape(rows, _BLOCK, cols, _BLOCK).transpose(0, 2, 1, 3).reshape(rows, cols, -1)


def block_agreement(
    query_gray: np.ndarray, preview_gray: np.ndarray, query_to_preview: np.ndarray, *, enough: float = 1.0
) -> Agreement | None:
    """How much of the overlap agrees once the query is aligned onto the original's preview.

    ``query_gray`` and ``preview_gray`` are 2-D uint8 arrays; ``query_to_preview`` is the 2x3
    affine map from query pixels to preview pixels. While the share is below ``enough`` the map
    is refined densely (see ``_refined``) and the better of the two alignments counts. Returns
    None when the overlap holds fewer than 16 structured blocks: too little to judge.
    """
    height, width = preview_gray.shape
    if height // _BLOCK < 3 or width // _BLOCK < 3:
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
    coarse = _share_of_agreeing_blocks(query_gray, preview_gray, transform)
    if coarse is not None and coarse.share >= enough:
        return coarse
    refined_transform = _refined(query_gray, preview_gray, transform)
    if refined_transform is None:
        return coarse
    refined = _share_of_agreeing_blocks(query_gray, preview_gray, refined_transform)
    if refined is None or (coarse is not None and coarse.share >= refined.share):
        return coarse
    return refined


def _warp_onto(
    query_gray: np.ndarray, transform: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The query warped into a (width, height) canvas, and the mask of pixels it covers."""
    warped = cv2.warpAffine(query_gray, transform, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(
        np.full(query_gray.shape, 255, np.uint8), transform, size, flags=cv2.INTER_NEAREST
    )
    return warped, inside


def _refined(query_gray: np.ndarray, preview_gray: np.ndarray, transform: np.ndarray) -> np.ndarray | None:
    """The query-to-preview map refined by ECC (Evangelidis & Psarakis 2008), if it stays close.

    RANSAC fits the map to the few keypoints of a small crop or a thumbnail (10-30 inliers), and
    a map that is off by a pixel or two at preview scale makes a copy disagree where it is
    furthest from them (benchmark: copies at 0.8-0.9 of the 0.9-0.95 asked). ECC aligns all of
    the overlap's pixels. Only a refinement that moves the preview's corners by at most a block
    is taken: a copy's map needs less (median 1.7 preview pixels, 90 % under 4.5), while on a
    wrong record ECC wanders off to align other content (median 75 pixels). Measured on the
    benchmark's saved queries: 15 of 53 copies that had fallen short now pass; none of 2,344
    wrong records comes closer to passing.
    """
    height, width = preview_gray.shape
    warped, inside = _warp_onto(query_gray, transform, (width, height))
    # At half the preview's resolution ECC costs a quarter (~3 ms) and still places the map to
    # about a pixel of the preview's, well within a block.
    half = np.diag([0.5, 0.5, 1.0])
    preview_half = cv2.pyrDown(preview_gray)
    size = (preview_half.shape[1], preview_half.shape[0])
    inside_half = cv2.resize(inside, size, interpolation=cv2.INTER_NEAREST)
    try:
        _, found = cv2.findTransformECC(
            preview_half.astype(np.float32),
            cv2.pyrDown(warped).astype(np.float32),
            np.eye(2, 3, dtype=np.float32),
            cv2.MOTION_AFFINE,
            (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, _ECC_ITERATIONS, _ECC_EPSILON),
            cv2.erode(inside_half, _ECC_ERODE),
            _ECC_SMOOTHING,
        )
    except cv2.error:  # no convergence: a flat or unrelated overlap
        return None
    # ECC's map takes (half-size) preview pixels to warped-query pixels; at full size:
    warp = (np.linalg.inv(half) @ np.vstack([np.asarray(found, np.float64), [0, 0, 1]]) @ half)[:2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    moved = corners @ warp[:, :2].T + warp[:, 2]
    if np.abs(moved - corners).max() > _MAX_REFINEMENT:
        return None
    to_preview = np.vstack([np.asarray(cv2.invertAffineTransform(warp), np.float64), [0, 0, 1]])
    refined: np.ndarray = (to_preview @ np.vstack([transform, [0, 0, 1]]))[:2]
    return refined


def _share_of_agreeing_blocks(
    query_gray: np.ndarray, preview_gray: np.ndarray, transform: np.ndarray
) -> Agreement | None:
    """Block agreement of a query already at about the preview's scale, under ``transform``."""
    height, width = preview_gray.shape
    rows, cols = height // _BLOCK, width // _BLOCK
    warped, inside = _warp_onto(query_gray, transform, (width, height))
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
