"""Smooth and flat pictures made with numpy, and the hard negatives that share their design.

Generated wallpapers, gradients and minimal illustrations carry almost no keypoints and a PDQ hash
of low quality; a copy of one is told from a different picture only by where its colours lie. The
negatives are what would prove a colour comparison wrong: the same kind of picture with the same
layout and similar hues (a gradient's colours turned a little, a flag with one band recoloured or
another emblem). Used by the tests and by scripts/bench_robustness.py, each picture from a seed.
"""

from __future__ import annotations

import colorsys
import random
from collections.abc import Iterator

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("linear", "radial", "blobs", "shapes", "flag")
Colour = tuple[float, float, float]  # RGB, 0..1
# A hard negative differs visibly on at least this share of the picture. The read path cannot
# tell a smaller difference from an overlay: an emoji at a quarter of the height covers 4.7-8.3 %
# of a 4:3 to 3:4 picture, so a recolour of flat parts vetoes a match only above 10 % of the
# overlap (index.calibration.Recolour.share), and it counts only the flat inside of a changed part,
# not the block-wide ring along its edge.
MIN_CHANGE = 0.15


def _colour(rng: random.Random) -> Colour:
    """A colour of clear hue: saturated enough that a hue change shows."""
    return colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.45, 0.95), rng.uniform(0.45, 0.95))


def turned(colour: Colour, degrees: float) -> Colour:
    hue, saturation, value = colorsys.rgb_to_hsv(*colour)
    return colorsys.hsv_to_rgb((hue + degrees / 360) % 1, saturation, value)


def _pixels(field: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(field * 255), 0, 255).astype(np.uint8), "RGB")


def _grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return x / max(width, height), y / max(width, height)


def _ramp(t: np.ndarray, colours: list[Colour]) -> np.ndarray:
    """Colours spread evenly along t (0..1), blended linearly between neighbours."""
    stops = np.linspace(0, 1, len(colours))
    t = np.clip(t, 0, 1)
    return np.stack([np.interp(t, stops, [c[k] for c in colours]) for k in range(3)], axis=-1)


def linear(size: tuple[int, int], colours: list[Colour], degrees: float) -> Image.Image:
    x, y = _grid(size)
    direction = np.radians(degrees)
    t = x * np.cos(direction) + y * np.sin(direction)
    return _pixels(_ramp((t - t.min()) / max(float(np.ptp(t)), 1e-9), colours))


def radial(size: tuple[int, int], colours: list[Colour], centre: tuple[float, float]) -> Image.Image:
    x, y = _grid(size)
    width, height = size
    cx, cy = centre[0] * width / max(size), centre[1] * height / max(size)
    distance = np.hypot(x - cx, y - cy)
    return _pixels(_ramp(distance / float(distance.max()), colours))


def blobs(
    size: tuple[int, int], background: Colour, spots: list[tuple[float, float, float, Colour]]
) -> Image.Image:
    """Soft abstract art: wide Gaussian spots of colour (x, y, radius, colour) over a background."""
    x, y = _grid(size)
    field = np.broadcast_to(np.array(background), (*x.shape, 3)).copy()
    for sx, sy, radius, colour in spots:
        weight = np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * radius**2))[..., None]
        field = field * (1 - weight) + np.array(colour) * weight
    return _pixels(field)


def shapes(
    size: tuple[int, int], background: Colour, parts: list[tuple[str, tuple[float, ...], Colour]]
) -> Image.Image:
    """A flat illustration: a few filled shapes (kind, box as fractions, colour), lightly smoothed."""
    image = Image.new("RGB", size, tuple(round(255 * c) for c in background))
    draw = ImageDraw.Draw(image)
    width, height = size
    for kind, (left, top, right, bottom), colour in parts:
        box = (left * width, top * height, right * width, bottom * height)
        fill = tuple(round(255 * c) for c in colour)
        if kind == "ellipse":
            draw.ellipse(box, fill=fill)
        elif kind == "rectangle":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(box[0], box[3]), ((box[0] + box[2]) / 2, box[1]), (box[2], box[3])], fill=fill)
    return image.filter(ImageFilter.GaussianBlur(1))


def flag(
    size: tuple[int, int], bands: list[Colour], vertical: bool, emblem: tuple[str, Colour] | None
) -> Image.Image:
    """A flag of equal bands with an optional emblem (a disc, a diamond or a star) in the middle."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for i, colour in enumerate(bands):
        fill = tuple(round(255 * c) for c in colour)
        if vertical:
            draw.rectangle((i * width / len(bands), 0, (i + 1) * width / len(bands), height), fill=fill)
        else:
            draw.rectangle((0, i * height / len(bands), width, (i + 1) * height / len(bands)), fill=fill)
    if emblem is not None:
        kind, colour = emblem
        fill = tuple(round(255 * c) for c in colour)
        cx, cy, r = width / 2, height / 2, height / 5
        if kind == "disc":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif kind == "diamond":
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
        else:
            angles = np.radians(np.arange(10) * 36 - 90)
            radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
            draw.polygon(
                list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles), strict=True)), fill=fill
            )
    return image


def _changed_share(one: Image.Image, other: Image.Image) -> float:
    """The share of the picture where two pictures differ visibly (CIELAB distance above 10)."""
    lab = [
        cv2.cvtColor(np.asarray(p.resize((64, 64)), np.float32) / 255, cv2.COLOR_RGB2LAB)
        for p in (one, other)
    ]
    return float((np.sqrt(((lab[0] - lab[1]) ** 2).sum(axis=2)) > 10).mean())


class Design:
    """One generated picture's parameters, from which it and its hard negative are drawn."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind = kind
        rng = random.Random(f"{kind}-{seed}")
        self._rng = rng
        self.size = rng.choice([(800, 600), (640, 640), (900, 600), (600, 800)])
        count = rng.choice([2, 3])
        self.colours = [_colour(rng) for _ in range(count)]
        self.degrees = rng.uniform(0, 360)
        self.centre = (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8))
        self.spots = [
            (rng.uniform(0, 1), rng.uniform(0, 0.8), rng.uniform(0.12, 0.3), _colour(rng))
            for _ in range(rng.randint(3, 5))
        ]
        self.parts = [
            (
                rng.choice(["ellipse", "rectangle", "triangle"]),
                self._box(rng),
                _colour(rng),
            )
            for _ in range(rng.randint(2, 4))
        ]
        self.bands = [_colour(rng) for _ in range(3)]
        self.vertical = rng.random() < 0.5
        self.emblem: tuple[str, Colour] | None = (
            (rng.choice(["disc", "diamond", "star"]), _colour(rng)) if rng.random() < 0.5 else None
        )

    @staticmethod
    def _box(rng: random.Random) -> tuple[float, float, float, float]:
        width, height = rng.uniform(0.15, 0.45), rng.uniform(0.15, 0.45)
        left, top = rng.uniform(0.05, 0.95 - width), rng.uniform(0.05, 0.95 - height)
        return left, top, left + width, top + height

    def picture(self) -> Image.Image:
        size = self.size
        if self.kind == "linear":
            return linear(size, self.colours, self.degrees)
        if self.kind == "radial":
            return radial(size, self.colours, self.centre)
        if self.kind == "blobs":
            return blobs(size, self.colours[0], self.spots)
        if self.kind == "shapes":
            return shapes(size, self.colours[0], self.parts)
        return flag((size[0], size[0] * 2 // 3), self.bands, self.vertical, self.emblem)

    def negative(self, seed: int) -> Image.Image:
        """The same design with something changed, as another artist would: similar hues turned
        by 15-40 degrees (gradients, soft art), shapes or a band recoloured, or another emblem;
        drawn again until the change shows on at least MIN_CHANGE of the picture. A smaller
        change cannot be told from an overlay (index.calibration.Recolour), so an illustration
        whose one recoloured shape is smaller gets more of its shapes recoloured."""
        picture = self.picture()
        for attempt in range(20):
            for other in self._changed(random.Random(f"negative-{self.kind}-{seed}-{attempt}")):
                if _changed_share(picture, other) >= MIN_CHANGE:
                    return other
        raise ValueError(f"no visible change of {self.kind} found")

    def _changed(self, rng: random.Random) -> Iterator[Image.Image]:
        """Changed pictures of this design, each changed more than the one before."""
        other = Design.__new__(Design)
        other.__dict__.update(self.__dict__)
        turn = rng.choice([-1, 1]) * rng.uniform(15, 40)
        if self.kind in ("linear", "radial"):
            other.colours = [turned(c, rng.choice([-1, 1]) * rng.uniform(15, 40)) for c in self.colours]
            if rng.random() < 0.5:
                other.colours = list(self.colours)
                other.degrees = self.degrees + rng.choice([-1, 1]) * rng.uniform(15, 40)
                other.centre = (self.centre[0] + rng.uniform(-0.15, 0.15), self.centre[1] + 0.15)
        elif self.kind == "blobs":
            other.spots = [(x, y, r, turned(c, turn)) for x, y, r, c in self.spots]
        elif self.kind == "shapes":
            for i in rng.sample(range(len(self.parts)), len(self.parts)):
                kind, box, colour = other.parts[i]
                other.parts = [*other.parts[:i], (kind, box, turned(colour, 3 * turn)), *other.parts[i + 1 :]]
                yield other.picture()
            return
        elif self.emblem is not None and rng.random() < 0.5:
            kinds = [k for k in ("disc", "diamond", "star") if k != self.emblem[0]]
            other.emblem = (rng.choice(kinds), self.emblem[1])
        else:
            i = rng.randrange(len(self.bands))
            other.bands = [*self.bands[:i], turned(self.bands[i], 3 * turn), *self.bands[i + 1 :]]
        yield other.picture()
