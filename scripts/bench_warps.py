"""Edits that change a copy's geometry, and the near misses that test them, for bench_robustness.

Perspective (a print or a screen photographed at an angle), another aspect ratio (whole, and after
a crop), a collage (the picture as one tile of a grid of other photos); each with random
parameters drawn per query. The near misses are never-registered images that come as close to a
registered one as a different picture can: the other half of one photograph (the same subject,
light and textures, not one shared pixel), and one synthetic layout of outlined boxes and labels
drawn twice with different details (the same corners, other content).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageOps

from tests.transforms import layout, warp

Loader = Callable[[str], Image.Image]


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def perspective(image: Image.Image, rng: random.Random, most: float = 0.08) -> Image.Image:
    """Each corner moved independently by up to ``most`` of the side along each axis, on a canvas
    that holds the warped picture (the background where it is photographed), then JPEG."""
    width, height = image.size
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = corners + np.float32(
        [[rng.uniform(-most, most) * width, rng.uniform(-most, most) * height] for _ in range(4)]
    )
    moved -= moved.min(axis=0)
    size = (int(np.ceil(moved[:, 0].max())), int(np.ceil(moved[:, 1].max())))
    background = rng.choice([(0, 0, 0), (255, 255, 255), (90, 90, 90)])
    warped = warp(image, cv2.getPerspectiveTransform(corners, moved), size, background)
    return _jpeg(warped, 85)


def stretch(image: Image.Image, rng: random.Random, keep_area: float = 1.0) -> Image.Image:
    """A crop keeping ``keep_area`` (at a random place), then its aspect ratio changed by 10-30 %
    either way along one axis, then JPEG: a picture fitted into another format."""
    if keep_area < 1:
        side = keep_area**0.5
        width, height = round(image.width * side), round(image.height * side)
        left, top = rng.randint(0, image.width - width), rng.randint(0, image.height - height)
        image = image.crop((left, top, left + width, top + height))
    factor = 1 + rng.choice([-1, 1]) * rng.uniform(0.1, 0.3)
    size = (
        (round(image.width * factor), image.height)
        if rng.random() < 0.5
        else (image.width, round(image.height * factor))
    )
    return _jpeg(image.resize(size, Image.Resampling.BILINEAR), 85)


def collage(
    image: Image.Image, rng: random.Random, grid: int, others: Sequence[str], load: Loader
) -> Image.Image:
    """The picture, scaled whole, as one tile of a ``grid`` x ``grid`` collage whose other tiles
    are other photos (``others``: never registered) cropped to fill theirs; gaps of 0-12 px."""
    cell_width = rng.randint(320, 512) if grid == 2 else rng.randint(220, 360)
    cell_height = round(cell_width * image.height / image.width)
    gap = rng.randint(0, 12)
    canvas = Image.new(
        "RGB", (grid * cell_width + (grid + 1) * gap, grid * cell_height + (grid + 1) * gap), "white"
    )
    place = rng.randrange(grid * grid)
    for cell in range(grid * grid):
        if cell == place:
            tile = image.convert("RGB").resize((cell_width, cell_height), Image.Resampling.LANCZOS)
        else:
            tile = ImageOps.fit(load(rng.choice(others)), (cell_width, cell_height), Image.Resampling.LANCZOS)
        row, column = divmod(cell, grid)
        canvas.paste(tile, (gap + column * (cell_width + gap), gap + row * (cell_height + gap)))
    return _jpeg(canvas, 85)


# ---- near misses ------------------------------------------------------------------------------

SUBJECT = "near-miss/subject/"  # + a corpus photo: its left part is registered, its right part queried
LAYOUT = "near-miss/layout/"  # + a number: one rendering registered, another queried


def half(image: Image.Image, side: str) -> Image.Image:
    """The left or right 45 % of a photograph: a tenth of its width between them, so that the two
    share no pixel (nor a keypoint's patch)."""
    width = round(image.width * 0.45)
    box = (
        (0, 0, width, image.height) if side == "left" else (image.width - width, 0, image.width, image.height)
    )
    return image.crop(box)


def near_miss_record(name: str, load: Loader) -> Image.Image:
    """The registered side of a near miss."""
    if name.startswith(SUBJECT):
        return half(load(name.removeprefix(SUBJECT)), "left")
    return layout(int(name.removeprefix(LAYOUT)), details=0)


def near_miss_query(name: str, load: Loader) -> Image.Image:
    """The never-registered side of a near miss."""
    if name.startswith(SUBJECT):
        return half(load(name.removeprefix(SUBJECT)), "right")
    return layout(int(name.removeprefix(LAYOUT)), details=1)
