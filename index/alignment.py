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

from index.calibration import Alignment, Thresholds
from index.features import homogeneous

# What the constants of this comparison mean, and why they have their values: index.calibration.Alignment.
_ECC_ERODE = np.ones((3, 3), np.uint8)  # leave out the overlap's interpolated rim


@dataclass(frozen=True)
class Agreement:
    """``share`` of the ``blocks`` judged (structured) blocks whose content correlates, 0..1,
    under ``transform`` (the query-to-preview map measured, 2x3 or 3x3 as given: the given one
    or its refinement)."""

    share: float
    blocks: int
    transform: np.ndarray
    levels: float = 1.0  # share of the overlap's blocks whose mean level agrees (_level_agreement)


def _blocks(values: np.ndarray, rows: int, cols: int, block: int) -> np.ndarray:
    cut = values[: rows * block, : cols * block]
    return cut.reshape(rows, block, cols, block).transpose(0, 2, 1, 3).reshape(rows, cols, -1)


def block_agreement(
    query_gray: np.ndarray,
    preview_gray: np.ndarray,
    query_to_preview: np.ndarray,
    alignment: Alignment,
    *,
    enough: float = 1.0,
    refine_from: float = 0.0,
    edge_tolerant: bool = False,
) -> Agreement | None:
    """How much of the overlap agrees once the query is aligned onto the original's preview.

    ``query_gray`` and ``preview_gray`` are 2-D uint8 arrays; ``query_to_preview`` is the map
    from query pixels to preview pixels: 2x3 (similarity, affine) or 3x3 (homography). While
    the share is below ``enough`` (and not below ``refine_from``: too far off to be a copy
    misaligned by a pixel or two) the map is refined densely (see ``_refined``) and the better
    of the two alignments counts. A block agrees where both are structured and correlate, or
    with ``edge_tolerant`` where the other is at least not flat (see Alignment.not_flat_std);
    the thresholds that judge the share were calibrated for one or the other. Returns None
    when the overlap holds fewer than 16 structured blocks: too little to judge.
    """
    height, width = preview_gray.shape
    if height // alignment.block < 3 or width // alignment.block < 3:
        return None
    query_gray, transform, shrink = at_preview_scale(query_gray, query_to_preview)
    best = _share_of_agreeing_blocks(query_gray, preview_gray, transform, edge_tolerant, alignment)
    best_transform = transform
    worth_refining = best is None or refine_from <= best[0] < enough
    refined_transform = _refined(query_gray, preview_gray, transform, alignment) if worth_refining else None
    if refined_transform is not None:
        refined = _share_of_agreeing_blocks(
            query_gray, preview_gray, refined_transform, edge_tolerant, alignment
        )
        if refined is not None and (best is None or refined[0] > best[0]):
            best, best_transform = refined, refined_transform
    if best is None:
        return None
    best_transform[:, :2] *= shrink  # back to the caller's query pixels
    return Agreement(share=best[0], blocks=best[1], transform=best_transform, levels=best[2])


def at_preview_scale(
    query: np.ndarray, query_to_preview: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The query averaged down to about the preview's scale, the map from its pixels, and the
    factor (x, y) it was shrunk by. Warping straight from a large query would alias; the
    averaging is also what evens out noise and JPEG blocking."""
    transform = np.array(query_to_preview, np.float64)
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    if scale >= 1:
        return query, transform, np.ones(2)
    small = cv2.resize(
        query,
        (max(1, round(query.shape[1] * scale)), max(1, round(query.shape[0] * scale))),
        interpolation=cv2.INTER_AREA,
    )
    shrink = np.array([small.shape[1] / query.shape[1], small.shape[0] / query.shape[0]])
    transform[:, :2] /= shrink
    return small, transform, shrink


def warp_onto(
    query: np.ndarray, transform: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The query (grey or colour) warped into a (width, height) canvas by a 2x3 or 3x3 map, and
    the mask of pixels it covers.

    Outside the query the canvas repeats the query's edge: a black surround would make every
    filter that reaches the edge (the dense check's smoothing, ECC's gradients) see an edge
    the query does not have, and blocks along a crop's sides inside the original counted as
    structured blocks that disagree."""
    warp = cv2.warpAffine if transform.shape == (2, 3) else cv2.warpPerspective
    warped = warp(query, transform, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = warp(np.full(query.shape[:2], 255, np.uint8), transform, size, flags=cv2.INTER_NEAREST)
    return warped, inside


def _refined(
    query_gray: np.ndarray, preview_gray: np.ndarray, transform: np.ndarray, alignment: Alignment
) -> np.ndarray | None:
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
    warped, inside = warp_onto(query_gray, transform, (width, height))
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
            (
                cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS,
                alignment.ecc_iterations,
                alignment.ecc_epsilon,
            ),
            cv2.erode(inside_half, _ECC_ERODE),
            alignment.ecc_smoothing,
        )
    except cv2.error:  # no convergence: a flat or unrelated overlap
        return None
    # ECC's map takes (half-size) preview pixels to warped-query pixels; at full size:
    warp = (np.linalg.inv(half) @ np.vstack([np.asarray(found, np.float64), [0, 0, 1]]) @ half)[:2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    moved = corners @ warp[:, :2].T + warp[:, 2]
    if np.abs(moved - corners).max() > alignment.max_refinement_blocks * alignment.block:
        return None
    to_preview = homogeneous(cv2.invertAffineTransform(warp))
    refined: np.ndarray = to_preview @ homogeneous(transform)
    return refined[: transform.shape[0]]  # a 3x3 map stays one; ECC's affine keeps its last row


def _share_of_agreeing_blocks(
    query_gray: np.ndarray,
    preview_gray: np.ndarray,
    transform: np.ndarray,
    edge_tolerant: bool,
    alignment: Alignment,
) -> tuple[float, int, float] | None:
    """Block agreement of a query already at about the preview's scale, under ``transform``:
    the share of judged blocks that agree, how many were judged, and the share of all blocks of
    the overlap whose mean level agrees (``_level_agreement``)."""
    height, width = preview_gray.shape
    block = alignment.block
    rows, cols = height // block, width // block
    warped, inside = warp_onto(query_gray, transform, (width, height))
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8))  # interpolated edge pixels are not the query's
    pixels = _blocks(warped, rows, cols, block)
    clipping = _clipping(pixels.min(axis=2), pixels.max(axis=2), alignment.level_clip)
    warped = cv2.GaussianBlur(warped, (0, 0), alignment.smoothing_sigma).astype(np.float32)
    preview = cv2.GaussianBlur(preview_gray, (0, 0), alignment.smoothing_sigma).astype(np.float32)

    complete = _blocks(inside, rows, cols, block).min(axis=2) > 0
    # Borders, frames, letterbox bars and rotation fill meet the original's edge, where a small
    # misalignment brings them inside: leave out the outermost ring of blocks.
    complete[[0, -1], :] = False
    complete[:, [0, -1]] = False
    if not complete.any():
        return None
    q, p = _blocks(warped, rows, cols, block), _blocks(preview, rows, cols, block)
    q_mean, p_mean = q.mean(axis=2), p.mean(axis=2)
    q = q - q_mean[..., None]
    p = p - p_mean[..., None]
    q_std, p_std = np.sqrt((q * q).mean(axis=2)), np.sqrt((p * p).mean(axis=2))
    correlation = (q * p).mean(axis=2) / np.maximum(q_std * p_std, 1e-6)
    # A contrast change scales every block's spread alike: judge the query's structure on the
    # original's scale.
    gain = np.sqrt((p_std[complete] ** 2).mean() / max(float((q_std[complete] ** 2).mean()), 1e-6))
    q_std *= float(np.clip(gain, 0.25, 4.0))
    in_query = complete & (q_std > alignment.structure_std)
    in_preview = complete & (p_std > alignment.structure_std)
    judged = int((in_query | in_preview).sum())
    if judged < alignment.min_judged_blocks:
        return None
    if edge_tolerant:
        comparable = (
            (in_query | in_preview) & (q_std > alignment.not_flat_std) & (p_std > alignment.not_flat_std)
        )
    else:
        comparable = in_query & in_preview
    agreeing = int((comparable & (correlation > alignment.agreeing_correlation)).sum())
    levels = _level_agreement(q_mean[complete], p_mean[complete], clipping[complete], alignment)
    return agreeing / judged, judged, levels


_UNCLIPPED, _WHITE, _BLACK, _PARTLY = 0, 1, 2, 3


def _clipping(lowest: np.ndarray, highest: np.ndarray, clip: int) -> np.ndarray:
    """Per block: whether the query keeps its levels there (_UNCLIPPED), is all white or all
    black (within ``clip`` levels, JPEG's noise), or reaches white or black in part (_PARTLY)."""
    kind = np.full(lowest.shape, _PARTLY, np.int8)
    kind[(lowest > clip) & (highest < 255 - clip)] = _UNCLIPPED
    kind[lowest >= 255 - clip] = _WHITE
    kind[highest <= clip] = _BLACK
    return kind


def _level_agreement(
    query: np.ndarray, preview: np.ndarray, clipping: np.ndarray, alignment: Alignment
) -> float:
    """The share of blocks whose mean grey level is what a global brightness, contrast or gamma
    edit of the query would give the original's there.

    The structure test judges only structured blocks, by correlation, which ignores their level
    and every calm block: one layout of outlined boxes drawn twice with other labels on another
    soft background agrees there on every box edge. A copy keeps the original's levels up to one
    monotone map, so the blocks are ranked by the query's level into bins of equal count and each
    is compared with the median of the original's levels in its bin; an overlay changes only the
    blocks it covers.

    An edit that brightens past the end of the scale makes every lighter grey white: the map
    keeps no level there, only the order, and a block only partly made white follows no one map
    of the original's means. Where the blocks that kept their levels show such an edit (their
    lightest bin is lighter in the query than in the original), a block all white in the query
    agrees where the original is about as light as that bin or lighter, and a block partly white
    is left out; darkening to black likewise. Without that evidence every block is binned: a
    line drawing on white keeps no level to show an edit, and its white blocks and line blocks
    are all that tells it from another drawing with those lines.
    """
    tolerance = alignment.level_tolerance
    kept = clipping == _UNCLIPPED
    if kept.sum() >= alignment.level_bins:
        query_kept, preview_kept = query[kept], preview[kept]
        ranked = _ranked_into_bins(query_kept, alignment.level_bins)
        lightest = float(np.median(preview_kept[ranked[-1]]))
        darkest = float(np.median(preview_kept[ranked[0]]))
        brightened = np.median(query_kept[ranked[-1]]) - lightest > tolerance
        darkened = darkest - np.median(query_kept[ranked[0]]) > tolerance
        if brightened or darkened:
            residual = _residuals_in_bins(preview_kept, ranked)
            white, black = preview[clipping == _WHITE], preview[clipping == _BLACK]
            agreeing = (
                int((residual <= tolerance).sum())
                + int((white >= lightest - tolerance).sum())
                + int((black <= darkest + tolerance).sum())
            )
            return agreeing / (len(residual) + len(white) + len(black))
    if len(query) < alignment.level_bins:
        return 1.0
    ranked = _ranked_into_bins(query, alignment.level_bins)
    return float((_residuals_in_bins(preview, ranked) <= tolerance).mean())


def _ranked_into_bins(query: np.ndarray, bins: int) -> list[np.ndarray]:
    """Block indices ranked by the query's level, into ``bins`` of equal count, darkest first."""
    return np.array_split(np.argsort(query, kind="stable"), bins)


def _residuals_in_bins(preview: np.ndarray, ranked: list[np.ndarray]) -> np.ndarray:
    """How far each block's level in the original lies from the median of its bin's."""
    return np.concatenate([np.abs(preview[b] - np.median(preview[b])) for b in ranked])


def locate_within(
    query_gray: np.ndarray,
    preview_gray: np.ndarray,
    alignment: Alignment,
    *,
    min_coverage: float,
    stretched: bool = False,
) -> np.ndarray | None:
    """Where in the original's preview an upright crop or rescaled copy lies, found without keypoints.

    Flat drawings (a heart, a flag, a bucket) have too few distinctive corners for keypoints to
    align a crop of them, yet the crop is plainly a window of the original. So the query is
    slid over the preview at every scale from filling it down to covering ``min_coverage`` of
    it (normalised cross-correlation, as in template matching), at half the preview's
    resolution (~5 ms for a 256 px preview); the best placement is returned as the 2x3 map from
    query pixels to preview pixels, for ``block_agreement`` to refine and judge. The best
    placement exists for any pair of images, so only that judgement says whether it is a copy.
    With ``stretched`` the query is also slid stretched along one axis by powers of
    ``Alignment.stretched_aspect_step`` (a crop fitted into another format; ~3 times the
    upright search's cost), where the upright search placed it well enough to be worth it
    (``Alignment.stretched_from_correlation``). None: the query is too flat or too small to
    place, or its best placement correlates too weakly to be a copy
    (``Alignment.min_placement_correlation``).
    """
    coarse = cv2.pyrDown(preview_gray)
    upright = _best_over_scales(query_gray, coarse, 1.0, alignment, min_coverage)
    if upright is None:
        return None
    best_score, best = upright
    if stretched and best_score >= alignment.stretched_from_correlation:
        steps = alignment.stretched_aspect_steps
        for power in [k for k in range(-steps, steps + 1) if k]:
            aspect = alignment.stretched_aspect_step**power
            found = _best_over_scales(query_gray, coarse, aspect, alignment, min_coverage)
            if found is not None and found[0] > best_score:
                best_score, best = found
    if best_score < alignment.min_placement_correlation:
        return None  # no window of the preview looks like the query: nothing for the blocks to judge
    return placed_finer(query_gray, preview_gray, best, alignment)


def _best_over_scales(
    query_gray: np.ndarray,
    coarse: np.ndarray,
    aspect: float,
    alignment: Alignment,
    min_coverage: float,
) -> tuple[float, np.ndarray] | None:
    """The best placement in ``coarse`` (the preview at half resolution) of the query with its
    width stretched ``aspect`` times against its height, at every scale step from filling the
    preview down to covering ``min_coverage`` of it: its score and its 2x3 map into the
    full-resolution preview."""
    height, width = coarse.shape
    query_height, query_width = query_gray.shape
    stretched = (query_width * aspect**0.5, query_height / aspect**0.5)
    largest = min(width / stretched[0], height / stretched[1])
    smallest = (min_coverage * width * height / (stretched[0] * stretched[1])) ** 0.5
    # Shrink the query once to the largest template; every smaller one is made from that.
    base = cv2.resize(
        query_gray,
        (max(1, round(stretched[0] * largest)), max(1, round(stretched[1] * largest))),
        interpolation=cv2.INTER_AREA,
    )
    best: tuple[float, np.ndarray] | None = None
    scale = largest
    while scale >= smallest * 0.999:
        size = (round(stretched[0] * scale), round(stretched[1] * scale))
        if min(size) < alignment.min_template_side:
            break
        template = base if scale == largest else cv2.resize(base, size, interpolation=cv2.INTER_AREA)
        found = _best_place(coarse, template)
        if found is not None and (best is None or found[0] > best[0]):
            score, x, y = found
            best = score, _placement(2 * size[0] / query_width, 2 * size[1] / query_height, 2 * x, 2 * y)
        scale /= alignment.locate_scale_step
    return best


def placed_finer(
    query_gray: np.ndarray, preview_gray: np.ndarray, coarse_map: np.ndarray, alignment: Alignment
) -> np.ndarray:
    """A coarse placement (2x3, query pixels to ``preview_gray``'s) searched again at the
    preview's full resolution, half a scale step either way and a few pixels around: a whole
    step off leaves a crop's far side several pixels out, more than the refinement in
    ``block_agreement`` may move. A stretched placement is also searched half an aspect step
    wider and narrower. Also places a crop in a larger preview where it was found in a smaller
    one."""
    query_height, query_width = query_gray.shape
    height, width = preview_gray.shape
    scale_x, scale_y = coarse_map[0, 0], coarse_map[1, 1]
    left, top = int(coarse_map[0, 2]), int(coarse_map[1, 2])
    stretches: tuple[float, ...] = (1.0,)
    if is_stretched(coarse_map, alignment):
        stretches = (alignment.stretched_aspect_step**-0.5, 1.0, alignment.stretched_aspect_step**0.5)
    best_score, best = -1.0, coarse_map
    step = alignment.locate_scale_step
    for factor in (step**-0.5, 1.0, step**0.5):
        for stretch in stretches:
            size = (
                round(query_width * scale_x * factor * stretch**0.5),
                round(query_height * scale_y * factor / stretch**0.5),
            )
            margin = 4 + max(
                abs(size[0] - round(query_width * scale_x)), abs(size[1] - round(query_height * scale_y))
            )
            x0, y0 = max(0, left - margin), max(0, top - margin)
            window = preview_gray[
                y0 : min(height, top + size[1] + margin), x0 : min(width, left + size[0] + margin)
            ]
            if window.shape[0] < size[1] or window.shape[1] < size[0]:
                continue
            found = _best_place(window, cv2.resize(query_gray, size, interpolation=cv2.INTER_AREA))
            if found is not None and found[0] > best_score:
                best_score, x, y = found
                best = _placement(size[0] / query_width, size[1] / query_height, x0 + x, y0 + y)
    return best


def is_stretched(placement: np.ndarray, alignment: Alignment) -> bool:
    """Whether a placement of ``locate_within`` scales one axis more than the other, past what
    rounding a template's sides does (half a scale step)."""
    return bool(abs(np.log(placement[0, 0] / placement[1, 1])) > np.log(alignment.locate_scale_step) / 2)


def _best_place(image: np.ndarray, template: np.ndarray) -> tuple[float, int, int] | None:
    """The template's best normalised cross-correlation within ``image`` and its top-left
    corner there; None for a flat template, which correlates with nothing (and divides by zero)."""
    if cv2.meanStdDev(template)[1][0, 0] < 1:  # NumPy's std costs ~10x more; the dense look asks ~70 times
        return None
    _, score, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED))
    return float(score), int(x), int(y)


def _placement(scale_x: float, scale_y: float, left: float, top: float) -> np.ndarray:
    """The 2x3 map that scales query pixels and puts the query's corner at (left, top)."""
    return np.array([[scale_x, 0, left], [0, scale_y, top]], np.float64)


def hue_agreement(
    query_rgb: np.ndarray, preview_rgb: np.ndarray, query_to_preview: np.ndarray, alignment: Alignment
) -> float | None:
    """The share of the overlap's coloured blocks that are coloured alike in both images.

    Grey structure alone lines up flat drawings that differ in colour: a flag's bands on
    another flag's, a cross on a Nordic cross of other colours. Hue survives brightness,
    contrast and saturation edits, so a copy keeps it: a block counts as coloured above a
    CIELAB chroma of 10, and agrees where both images' blocks are (the other's chroma above 5)
    with hues within 30 degrees. None: neither image has as many as 8 coloured blocks in the
    overlap (grey drawings), so colour cannot tell.
    """
    height, width = preview_rgb.shape[:2]
    block = alignment.block
    rows, cols = height // block, width // block
    query_rgb, transform, _ = at_preview_scale(query_rgb, query_to_preview)
    warped, inside = warp_onto(query_rgb, transform, (width, height))
    complete = _blocks(inside, rows, cols, block).min(axis=2) > 0
    query_ab = _block_chroma(warped, rows, cols, block)
    preview_ab = _block_chroma(preview_rgb, rows, cols, block)
    query_chroma = np.hypot(query_ab[..., 0], query_ab[..., 1])
    preview_chroma = np.hypot(preview_ab[..., 0], preview_ab[..., 1])
    chromatic = alignment.chromatic
    query_coloured = complete & (query_chroma > chromatic)
    preview_coloured = complete & (preview_chroma > chromatic)
    if max(query_coloured.sum(), preview_coloured.sum()) < alignment.min_chromatic_blocks:
        return None
    hue_gap = np.angle(
        (query_ab[..., 0] + 1j * query_ab[..., 1]) * (preview_ab[..., 0] - 1j * preview_ab[..., 1])
    )
    alike = (
        (query_chroma > chromatic / 2)
        & (preview_chroma > chromatic / 2)
        & (np.abs(np.degrees(hue_gap)) < alignment.same_hue_degrees)
    )
    coloured = query_coloured | preview_coloured
    return float(alike[coloured].mean())


def _block_chroma(rgb: np.ndarray, rows: int, cols: int, block: int) -> np.ndarray:
    """Each block's mean CIELAB (a*, b*): (rows, cols, 2)."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB).astype(np.float32)
    ab = lab[: rows * block, : cols * block, 1:] - 128  # OpenCV offsets a* and b* by 128 in uint8
    means: np.ndarray = ab.reshape(rows, block, cols, block, 2).mean(axis=(1, 3))
    return means


def made_of_bands(rgb: np.ndarray, thresholds: Thresholds) -> bool:
    """Whether a picture is nothing but axis-aligned flat bands (stripes, crosses, cantons): few
    kinds of row and few kinds of column, apart from the blends along the bands' edges
    (Thresholds.band_kinds). Such content is in every design that shares it."""
    lines = rgb.astype(np.float32)
    return all(_line_kinds(along, thresholds) for along in (lines, lines.transpose(1, 0, 2)))


def _line_kinds(lines: np.ndarray, thresholds: Thresholds) -> bool:
    """Whether ``lines`` (rows of an image) fall into at most ``band_kinds`` common kinds, with
    at most ``band_edges`` of them in rarer ones."""
    kinds: list[np.ndarray] = []
    counts: list[int] = []
    for line in lines:
        for i, kind in enumerate(kinds):
            if float(np.abs(line - kind).mean()) < thresholds.band_line_tolerance:
                counts[i] += 1
                break
        else:
            kinds.append(line)
            counts.append(1)
    share = np.array(counts) / len(lines)
    common = share >= thresholds.band_minor_share
    return int(common.sum()) <= thresholds.band_kinds and float(share[~common].sum()) <= thresholds.band_edges


def made_of_straight_edges(rgb: np.ndarray, thresholds: Thresholds) -> bool:
    """Whether a picture is a few flat colours meeting along a few straight edges: a corner of
    a polygon, an arrow's head (Thresholds.plain_lines). Such content is in every drawing that
    has that corner."""
    levels = (rgb // _COLOUR_LEVEL).reshape(-1, 3).astype(np.int64)
    counts = np.bincount((levels[:, 0] * 8 + levels[:, 1]) * 8 + levels[:, 2], minlength=512)
    if np.sort(counts)[-thresholds.plain_colours :].sum() < thresholds.plain_colour_share * len(levels):
        return False
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    ys, xs = np.nonzero(cv2.Canny(gray, *_EDGE_CONTRAST))
    # Greedy Hough transform: the line through most edge pixels, then the next among the rest.
    angles = np.deg2rad(np.arange(180))
    distances = xs[:, None] * np.cos(angles) + ys[:, None] * np.sin(angles)
    reach = int(np.hypot(*gray.shape)) + 1
    left = np.ones(len(xs), bool)
    for _ in range(thresholds.plain_lines):
        if left.sum() <= thresholds.plain_unexplained * len(xs):
            break
        bins = np.round(distances[left]).astype(np.int64) + reach + np.arange(180) * (2 * reach + 1)
        angle, distance = divmod(int(np.bincount(bins.ravel()).argmax()), 2 * reach + 1)
        left &= np.abs(distances[:, angle] - (distance - reach)) > thresholds.plain_line_tolerance
    return bool(left.sum() <= thresholds.plain_unexplained * len(xs))


_COLOUR_LEVEL = 32  # 8 levels a channel: JPEG and antialiasing keep a flat colour within one
_EDGE_CONTRAST = (50, 150)  # Canny's hysteresis: the edges between flat colours, not JPEG's ringing
