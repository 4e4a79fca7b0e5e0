"""Smooth pictures (gradients, soft wallpapers, flat illustrations): found by colour layout, and
confirmed whole by colour and fill under a fitted global edit.

A smooth picture gives the other methods nothing to hold: PDQ's hash of it has low quality (its
DCT has few strong coefficients, so a copy's hash lies anywhere from 0 to 110 bits away), ORB
finds a dozen corners or none, and the dense block check skips flat blocks. What identifies it is
where its colours lie. So the smooth records are kept with a coarse colour layout each
(``SmoothRecords``), the nearest few are compared with the whole suspect, and a copy is one whose
block means (8 preview pixels a side) agree almost everywhere once the one global edit that fits
best is applied to the original: a saturation change (a blend with grey), then per channel a gain
and an offset (brightness, contrast, a mild white balance), then clipping, fitted in sRGB where
image editors make these edits, and compared in CIELAB. The edit's seven degrees of freedom are
bounded to mild ones and can turn no hue, since a hue is what tells two flags or two gradients of
one design apart; a different picture of the same layout then disagrees wherever it differs (a
band in another colour, an emblem of another shape, a gradient's colours turned, its centre
moved). Benchmark and hard negatives: scripts/bench_robustness.py (tests/smooth_pictures.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from index.alignment import at_preview_scale, warp_onto
from index.calibration import Calibration, ColourEdit, Fill, Recolour, Thresholds
from index.preview import Previews, PreviewSource
from index.store import FingerprintStore


@dataclass(frozen=True)
class FillAgreement:
    """``share`` of the ``blocks`` compared whose colour agrees under the fitted mild edit (0
    where none fits); ``spread``, the preview's colour spread over its blocks (CIELAB units),
    which says whether the picture holds enough to identify it at all."""

    share: float
    blocks: int
    spread: float


_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as image editors blend towards grey


def _block_means(rgb: np.ndarray, rows: int, cols: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Each block's mean sRGB colour, 0..1 (rows*cols, 3), and the spread of colour inside it
    (0..1 units)."""
    cut = np.ascontiguousarray(rgb[: rows * block, : cols * block]).astype(np.float64) / 255
    cells = cut.reshape(rows, block, cols, block, 3).transpose(0, 2, 1, 3, 4).reshape(rows * cols, -1, 3)
    means = cells.mean(axis=1)
    spread = np.sqrt(((cells - means[:, None, :]) ** 2).sum(axis=2).mean(axis=1))
    return means, spread


def _lab(rgb: np.ndarray) -> np.ndarray:
    lab: np.ndarray = cv2.cvtColor(rgb.astype(np.float32)[None], cv2.COLOR_RGB2LAB)[0]
    return lab.astype(np.float64)


def _saturated(rgb: np.ndarray, saturation: float) -> np.ndarray:
    grey: np.ndarray = rgb @ _LUMA
    blended: np.ndarray = grey[:, None] + saturation * (rgb - grey[:, None])
    return blended


def _fitted_edit(original: np.ndarray, copy: np.ndarray, edit: ColourEdit) -> np.ndarray | None:
    """The edit within ``edit``'s bounds that best takes the original's block colours to the
    copy's: a gamma, a saturation change (a blend with grey), then per channel a gain and an
    offset (brightness, contrast, white balance), then clipping. Each channel is fitted where
    the copy's is not clipped. Returns the original's colours so edited; None where no such
    edit fits.

    A channel that barely varies (the green of a purple gradient) or a picture of two colours
    (a linear gradient is a line in RGB, which many edits fit alike) leaves the gains loosely
    determined: the fit is pulled towards one gain and one offset for all channels (ridge
    penalties, ColourEdit.tint_weight), so such a channel follows the others. With
    ``edit.fitted_blocks`` the edit is fitted on that many blocks spread evenly over all, and
    applied to all."""
    every = original
    if edit.fitted_blocks is not None and len(original) > edit.fitted_blocks:
        sample = np.linspace(0, len(original) - 1, edit.fitted_blocks).astype(int)
        original, copy = original[sample], copy[sample]
    count = len(original)
    used = ((copy > 0.01) & (copy < 0.99)).astype(np.float64)
    pull = edit.tint_weight * count * (np.eye(3) - 1 / 3)  # penalty^T penalty (idempotent)
    identity = np.array([1, 1, 1, 0, 0, 0], np.float64)
    saturations = np.arange(edit.min_saturation, edit.max_saturation + 1e-9, 0.05)
    best: tuple[float, float, float, np.ndarray, np.ndarray] | None = None
    for gamma in edit.gammas:
        curved = original**gamma
        grey = curved @ _LUMA
        # Every saturation at once: (saturations, blocks, channels).
        source = grey[None, :, None] + saturations[:, None, None] * (curved - grey[:, None])[None]
        # The normal equations of the least squares over (gains, offsets): each channel's
        # sums, plus the pull towards equal gains and equal offsets, and a faint pull towards no
        # edit at all: a picture of one unclipped colour (a grey panel on white, the white
        # clipped) leaves gain and offset one equation for two.
        normal = np.zeros((len(saturations), 6, 6))
        channels = np.arange(3)
        normal[:, channels, channels] = (used * source * source).sum(axis=1)
        normal[:, channels, channels + 3] = normal[:, channels + 3, channels] = (used * source).sum(axis=1)
        normal[:, 3 + channels, 3 + channels] = used.sum(axis=0)
        normal[:, :3, :3] += pull
        normal[:, 3:, 3:] += pull
        normal += edit.identity_weight * count * np.eye(6)
        right = np.concatenate(
            [(used * source * copy).sum(axis=1), np.broadcast_to(used * copy, source.shape).sum(axis=1)],
            axis=1,
        )
        right[:, :3] += edit.identity_weight * count
        try:
            solution = np.linalg.solve(normal, right[..., None])[..., 0]
        except np.linalg.LinAlgError:
            continue
        gains, offsets = solution[:, None, :3], solution[:, None, 3:]
        predicted = source * gains + offsets
        residual = (used * (predicted - copy) ** 2).sum(axis=(1, 2))
        # A clipped channel says only "at least" (or "at most"): an edit that leaves it short
        # of the clip disagrees by as much as it falls short.
        residual += (np.minimum(predicted - 0.99, 0) ** 2 * (copy >= 0.99)).sum(axis=(1, 2))
        residual += (np.maximum(predicted - 0.01, 0) ** 2 * (copy <= 0.01)).sum(axis=(1, 2))
        residual += np.einsum("si,ij,sj->s", solution, np.kron(np.eye(2), pull), solution)
        residual += edit.identity_weight * count * ((solution - identity) ** 2).sum(axis=1)
        residual[~_within(solution[:, :3], solution[:, 3:], edit)] = np.inf
        i = int(np.argmin(residual))
        if np.isfinite(residual[i]) and (best is None or residual[i] < best[2]):
            best = gamma, float(saturations[i]), float(residual[i]), solution[i, :3], solution[i, 3:]
    if best is None:
        return None
    gamma, saturation, _, gains, offsets = best
    mapped: np.ndarray = np.clip(_saturated(every**gamma, saturation) * gains + offsets, 0, 1)
    return mapped


def _within(gains: np.ndarray, offsets: np.ndarray, edit: ColourEdit) -> np.ndarray:
    """Whether per-channel gains and offsets (rows of three) lie within ``edit``'s bounds: gains
    or offsets that differ between channels turn hues (a tint), which only a mild white balance
    may."""
    within: np.ndarray = (
        (gains.min(axis=-1) >= 1 / edit.max_gain)
        & (gains.max(axis=-1) <= edit.max_gain)
        & (gains.max(axis=-1) <= edit.max_tint * gains.min(axis=-1))
        & (np.abs(offsets).max(axis=-1) <= edit.max_offset)
        & (np.ptp(offsets, axis=-1) <= edit.max_offset_tint)
    )
    return within


def fill_agreement(suspect_rgb: np.ndarray, preview_rgb: np.ndarray, fill: Fill) -> FillAgreement | None:
    """How the whole suspect's colours agree with the preview's under the fitted global edit.

    ``suspect_rgb`` is the whole suspect, upright; ``preview_rgb`` the record's preview (uint8
    RGB arrays). None: the two do not have one shape (a crop, a padded copy: not a whole copy).
    """
    height, width = preview_rgb.shape[:2]
    suspect_aspect = suspect_rgb.shape[1] / suspect_rgb.shape[0]
    if abs(np.log(suspect_aspect * height / width)) > fill.max_aspect_change:
        return None
    rows, cols = height // fill.block, width // fill.block
    if min(rows, cols) < 4:
        return None
    scaled = cv2.resize(suspect_rgb, (width, height), interpolation=cv2.INTER_AREA)
    copy, _ = _block_means(scaled, rows, cols, fill.block)
    original, inside = _block_means(preview_rgb, rows, cols, fill.block)
    # The outermost ring of blocks meets the picture's edge, where resizing differs.
    ring = np.zeros((rows, cols), bool)
    ring[1:-1, 1:-1] = True
    keep = ring.ravel()
    copy, original, inside = copy[keep], original[keep], inside[keep]
    original_lab = _lab(original)
    spread = float(np.sqrt(original_lab.var(axis=0).sum()))
    fitted = _fitted_edit(original, copy, fill.edit)
    if fitted is None:  # no mild edit takes the one to the other: nothing agrees
        return FillAgreement(share=0.0, blocks=len(copy), spread=spread)
    mapped = fitted
    difference = np.sqrt(((_lab(mapped) - _lab(copy)) ** 2).sum(axis=1))
    # A block that holds an edge moves its mean with the least misplacement: it may differ by a
    # share of its own spread (in CIELAB units, ~100 per unit of sRGB).
    agrees = difference <= fill.tolerance + fill.edge_allowance * 100 * inside
    return FillAgreement(
        share=float(agrees.mean()),
        blocks=int(len(agrees)),
        spread=spread,
    )


def recoloured_share(
    query_rgb: np.ndarray, preview_rgb: np.ndarray, query_to_preview: np.ndarray, recolour: Recolour
) -> float | None:
    """The share of the overlap whose colour differs from the original's beyond the global colour
    edit that fits best (any that turns no hue, ``recolour.edit``), counted only where both
    pictures are flat: a recoloured shape or band keeps its edges and shows as flat blocks that
    disagree, while an overlay's own edges and a misplaced edge do not count. None: the overlap
    holds no flat block in both. ``query_to_preview`` maps query pixels to the preview's (2x3)."""
    height, width = preview_rgb.shape[:2]
    block = recolour.block
    rows, cols = height // block, width // block
    query_rgb, transform, _ = at_preview_scale(query_rgb, query_to_preview)
    warped, inside = warp_onto(query_rgb, transform, (width, height))
    complete = (
        inside[: rows * block, : cols * block].reshape(rows, block, cols, block).min(axis=(1, 3)).ravel() > 0
    )
    copy, copy_spread = _block_means(warped, rows, cols, block)
    original, original_spread = _block_means(preview_rgb, rows, cols, block)
    flat = complete & (copy_spread < recolour.flat_spread) & (original_spread < recolour.flat_spread)
    if not flat.any():
        return None
    fitted = _fitted_edit(original[flat], copy[flat], recolour.edit)
    if fitted is None:  # no global edit takes the one to the other: every flat block differs
        return float(flat.sum() / complete.sum())
    difference = np.sqrt(((_lab(fitted) - _lab(copy[flat])) ** 2).sum(axis=1))
    return float((difference > recolour.tolerance).sum() / complete.sum())


def smooth(pdq_quality: int, keypoints: int, thresholds: Thresholds) -> bool:
    """Whether a picture is smooth: a PDQ hash of low quality, or few keypoints (a flag's)."""
    return pdq_quality < thresholds.pdq_min_quality or keypoints < thresholds.low_detail_keypoints


def colour_layout(rgb: np.ndarray, side: int) -> np.ndarray:
    """Where a picture's colours lie, coarsely: CIELAB means of a ``side`` by ``side`` grid, less
    their mean and over their spread, so that a mild global edit barely moves it."""
    grid = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA).reshape(-1, 3)
    lab = _lab(grid.astype(np.float64) / 255)
    centred = lab - lab.mean(axis=0)
    layout: np.ndarray = (centred / max(float(centred.std()), 1.0)).ravel()
    return layout


class SmoothRecords:
    """The records whose pictures are smooth (a PDQ hash of low quality, or few keypoints) and
    their colour layouts, for finding the record a smooth suspect may be a whole copy of: a
    derived cache of the store, tailed like the FAISS indexes (new records by id, removals by
    sequence), each layout made from its record's preview. One per process.

    A first catch-up reads every record's PDQ quality and keypoint count and decodes each
    smooth record's preview: a second or more per ten thousand records. A server does it before
    it serves (``catch_up``, in the process its workers fork from), not in a user's request.
    The layouts are kept as one matrix, which a forked worker shares until records are added.
    """

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self._lock = threading.Lock()
        self._last_record_id = 0
        self._last_removal_seq = 0
        self._smooth: set[int] = set()
        # Smooth records whose layouts are still to be made. A record's preview commits with its
        # fingerprints and goes with them, so one that has none now never will: it is looked up
        # once, not again at every smooth suspect (a million-record benchmark's filler, which has
        # no previews, cost each smooth suspect 0.85 s of lookups).
        self._layout_pending: set[int] = set()
        self._ids = np.zeros(0, np.int64)
        self._layouts = np.zeros((0, 3 * calibration.fill.layout_side**2))

    def catch_up(self, store: FingerprintStore, previews: PreviewSource) -> None:
        """Take in the records added and removed since the last catch-up."""
        self._caught_up(store, Previews(previews, self.calibration.looks.judged_side))

    def nearest(self, suspect_rgb: np.ndarray, store: FingerprintStore, previews: Previews) -> list[int]:
        """The smooth records whose colour layouts lie nearest the suspect's, nearest first."""
        ids, layouts = self._caught_up(store, previews)
        if not len(ids):
            return []
        fill = self.calibration.fill
        distances = np.linalg.norm(layouts - colour_layout(suspect_rgb, fill.layout_side), axis=1)
        return [int(ids[i]) for i in np.argsort(distances, kind="stable")[: fill.candidates]]

    def _caught_up(self, store: FingerprintStore, previews: Previews) -> tuple[np.ndarray, np.ndarray]:
        """The smooth records' ids and layouts, once caught up."""
        with self._lock:
            self._catch_up(store)
            self._add_layouts(previews)
            return self._ids, self._layouts

    def holds(self, record_id: int, store: FingerprintStore) -> bool:
        """Whether the record is smooth."""
        with self._lock:
            self._catch_up(store)
            return record_id in self._smooth

    def _catch_up(self, store: FingerprintStore) -> None:
        for details in store.details_after(self._last_record_id):
            quality = 0 if details.pdq is None else details.pdq.quality
            if smooth(quality, details.keypoints, self.calibration.thresholds):
                self._smooth.add(details.record_id)
                self._layout_pending.add(details.record_id)
            self._last_record_id = details.record_id
        removed = store.removals_after(self._last_removal_seq)
        if removed:
            gone = {record_id for _, record_id in removed}
            self._smooth -= gone
            self._layout_pending -= gone
            kept = ~np.isin(self._ids, list(gone))
            self._ids, self._layouts = self._ids[kept], self._layouts[kept]
            self._last_removal_seq = removed[-1][0]

    def _add_layouts(self, previews: Previews) -> None:
        made: dict[int, np.ndarray] = {}
        for record_id in sorted(self._layout_pending):
            # Not kept: a first catch-up of 3,000 records (310 smooth) kept 110 MB of previews.
            preview = previews.get(record_id, keep=False)
            if preview is not None:
                made[record_id] = colour_layout(preview.coarse.rgb, self.calibration.fill.layout_side)
        self._layout_pending.clear()
        if made:
            # New arrays, not resized ones: a search reading the old pair keeps a consistent one.
            self._ids = np.concatenate([self._ids, np.fromiter(made, np.int64, len(made))])
            self._layouts = np.concatenate([self._layouts, np.stack(list(made.values()))])
