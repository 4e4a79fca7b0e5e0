"""Geometry that fits what happens to pictures: stretched, photographed at an angle, shown small
among other pictures; and near misses that richer models must not align."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from index import Evidence
from index.evidence import matched
from tests import transforms
from tests.conftest import fixture_bytes
from tests.test_matching import Library, library_of

ASTRONAUT, CHELSEA, COFFEE, LAYOUT, ROCKET_LEFT = range(1, 6)


def fixture(name: str) -> Image.Image:
    return transforms.decode(fixture_bytes(f"{name}.jpg"))


def left_half(image: Image.Image) -> Image.Image:
    return image.crop((0, 0, round(image.width * 0.45), image.height))


def right_half(image: Image.Image) -> Image.Image:
    return image.crop((image.width - round(image.width * 0.45), 0, image.width, image.height))


@pytest.fixture(scope="module")
def library() -> Library:
    originals = {
        ASTRONAUT: fixture("astronaut"),
        CHELSEA: fixture("chelsea"),
        COFFEE: fixture("coffee"),
        LAYOUT: transforms.layout(3, details=0),
        ROCKET_LEFT: left_half(fixture("rocket")),
    }
    # Registered as the service stores what it signs: a JPEG of the original.
    return library_of(
        {i: transforms.decode(transforms.encode(image, "JPEG", quality=92)) for i, image in originals.items()}
    )


def found(library: Library, image: Image.Image) -> dict[int, Evidence]:
    evidence, _ = library.search(transforms.encode(image, "JPEG", quality=80))
    return evidence


def matched_record(evidence: dict[int, Evidence]) -> int | None:
    best = max(evidence, key=lambda record_id: evidence[record_id].confidence, default=None)
    return best if matched(evidence) else None


def iou(polygon: tuple[tuple[float, float], ...], other: np.ndarray, size: tuple[int, int]) -> float:
    """Intersection over union of two polygons, on a pixel grid of ``size``."""
    masks = []
    for points in (polygon, other):
        mask = Image.new("1", size)
        ImageDraw.Draw(mask).polygon([(float(x), float(y)) for x, y in points], fill=1)
        masks.append(np.asarray(mask))
    return float((masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum())


def photographed(image: Image.Image, moves: list[tuple[float, float]]) -> tuple[Image.Image, np.ndarray]:
    """The image with each corner moved by the fractions of its sides given, cut to the largest
    upright box inside the warped picture (a photo of part of a print), and the quadrilateral of
    the original that the cut shows."""
    width, height = image.size
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = corners + np.float32(moves) * np.float32([width, height])
    moved -= moved.min(axis=0)
    to_warped = cv2.getPerspectiveTransform(corners, moved)
    size = (int(moved[:, 0].max()), int(moved[:, 1].max()))
    left, top = max(moved[0, 0], moved[3, 0]), max(moved[0, 1], moved[1, 1])
    right, bottom = min(moved[1, 0], moved[2, 0]), min(moved[2, 1], moved[3, 1])
    box = (int(left) + 1, int(top) + 1, int(right) - 1, int(bottom) - 1)
    shown = np.float32([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])
    quadrilateral = cv2.perspectiveTransform(shown[None], np.linalg.inv(to_warped))[0]
    return transforms.warp(image, to_warped, size).crop(box), quadrilateral


# Corners moved by 6-8 % of the side, as when a print or a screen is photographed at an angle.
TILT = [(0.07, 0.06), (-0.02, 0.0), (-0.08, -0.03), (0.01, -0.07)]


def test_a_photographed_print_is_matched_with_the_quadrilateral_it_shows(library: Library) -> None:
    original = fixture("astronaut")
    query, quadrilateral = photographed(original, TILT)
    evidence = found(library, query)
    assert matched_record(evidence) == ASTRONAUT
    region = evidence[ASTRONAUT].region
    assert region is not None
    # No similarity or affine map shows this: its opposite sides are not parallel.
    assert iou(region, quadrilateral, original.size) > 0.95
    # Each corner is found where it is. The region is clipped to the original, so a corner on
    # its edge (the first here lies 0.3 px inside) may become two vertices there.
    vertices = np.float32(region)
    for corner in quadrilateral:
        assert np.linalg.norm(vertices - corner, axis=1).min() < 0.02 * max(original.size)
    assert len(region) <= 5


def test_a_crop_stretched_to_another_aspect_ratio_is_matched_with_its_box(library: Library) -> None:
    """The crop from (20 %, 15 %) to (85 %, 90 %) of a layout of outlined boxes, squeezed by 0.77
    across and 0.67 down: a similarity aligns it only roughly and its dense check fails."""
    original = transforms.layout(3, details=0)
    width, height = original.size
    box = (round(0.2 * width), round(0.15 * height), round(0.85 * width), round(0.9 * height))
    cut = original.crop(box)
    query = cut.resize((round(cut.width * 0.77), round(cut.height * 0.67)), Image.Resampling.BILINEAR)
    evidence = found(library, query)
    assert matched_record(evidence) == LAYOUT
    region = evidence[LAYOUT].region
    assert region is not None
    expected = np.float32([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])
    assert iou(region, expected, original.size) > 0.95


@pytest.mark.parametrize("grid", [2, 3])
def test_a_picture_in_a_collage_of_other_pictures_is_matched_with_the_whole_picture(
    library: Library, grid: int
) -> None:
    picture = fixture("chelsea")
    others = [fixture(name) for name in ("hubble", "badge-button", "caption-map", "sign-cycles")]
    cell = (picture.width * 2 // (2 * grid - 1), picture.height * 2 // (2 * grid - 1))
    collage = Image.new("RGB", (grid * cell[0], grid * cell[1]), "white")
    for index in range(grid * grid):
        tile = picture if index == grid * grid - 2 else others[index % len(others)]
        collage.paste(
            tile.resize(cell, Image.Resampling.LANCZOS), (index % grid * cell[0], index // grid * cell[1])
        )
    evidence = found(library, collage)
    assert matched_record(evidence) == CHELSEA
    region = evidence[CHELSEA].region
    assert region is not None
    whole = np.float32([[0, 0], [picture.width, 0], [picture.width, picture.height], [0, picture.height]])
    assert iou(region, whole, picture.size) > 0.9


def test_the_same_layout_drawn_with_other_details_is_not_matched_even_tilted(library: Library) -> None:
    """Every box corner is where the registered layout has one; the labels, colours and the
    background are not the registered picture's."""
    other = transforms.layout(3, details=1)
    for query in (
        other,
        photographed(other, TILT)[0],
        other.resize((other.width, round(other.height * 0.75))),
    ):
        assert not matched(found(library, query))


def test_the_other_half_of_a_photograph_is_not_matched_even_tilted(library: Library) -> None:
    """The same subject, light and textures as a registered picture, and not one pixel of it."""
    other = right_half(fixture("rocket"))
    for query in (
        other,
        photographed(other, TILT)[0],
        other.resize((round(other.width * 1.3), other.height)),
    ):
        assert not matched(found(library, query))
