"""Smooth pictures: a barely edited copy of a gradient, soft art or a flat illustration is matched
whole by colour and fill; another picture of the same design (similar hues, one band recoloured,
another emblem) is not."""

from __future__ import annotations

import dataclasses
import functools
import io
import sqlite3
import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from index import (
    Calibration,
    Evidence,
    FingerprintIndex,
    FingerprintStore,
    Matcher,
    SmoothRecords,
    StoredPreview,
)
from index.evidence import matched
from index.preview import Preview
from index.smooth import fill_agreement
from index.store import fingerprint_image
from tests import smooth_pictures, transforms
from tests.conftest import fixture_bytes
from tests.smooth_pictures import Design

SEEDS = range(3)
# Designs whose pictures have detail enough for keypoints (>= 100, PDQ quality >= 50), so that a
# hard negative of theirs lines up by local features (42-61 inliers, dense agreement 0.72-1.0).
DETAILED = [("shapes", 4), ("shapes", 5), ("flag", 5)]
# A flag with a disc, as registered, and two flags that share its design.
BANDS = [(0.1, 0.3, 0.7), (0.95, 0.95, 0.9), (0.8, 0.15, 0.15)]
FLAG = smooth_pictures.flag((600, 400), BANDS, vertical=True, emblem=("disc", (0.9, 0.75, 0.1)))


def jpeg(image: Image.Image, quality: int) -> bytes:
    return transforms.encode(image.convert("RGB"), "JPEG", quality=quality)


def stored_preview(image: Image.Image) -> StoredPreview:
    """As the application stores it: at most 512 px, JPEG q80."""
    small = image.convert("RGB")
    small.thumbnail((512, 512))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80)
    return StoredPreview(image.width, image.height, out.getvalue())


class SmoothLibrary:
    """Registered: smooth pictures of every kind (several seeds each), the flag, and two photos."""

    def __init__(self) -> None:
        connection = sqlite3.connect(":memory:", isolation_level=None)
        connection.execute(FingerprintStore.SCHEMA)
        connection.execute(FingerprintStore.REMOVALS_SCHEMA)
        self.store = FingerprintStore(connection)
        self.previews: dict[int, StoredPreview] = {}
        self.ids: dict[str, int] = {}
        pictures = {
            f"{kind}-{seed}": Design(kind, seed).picture() for kind in smooth_pictures.KINDS for seed in SEEDS
        }
        pictures |= {f"{kind}-{seed}": Design(kind, seed).picture() for kind, seed in DETAILED}
        pictures["flag"] = FLAG
        for name in ("coffee", "chelsea"):
            pictures[name] = transforms.decode(fixture_bytes(f"{name}.jpg"))
        for record_id, (name, picture) in enumerate(pictures.items(), start=1):
            registered = transforms.decode(jpeg(picture, 92))  # what was signed and published
            self.store.add(record_id, fingerprint_image(registered))
            self.previews[record_id] = stored_preview(registered)
            self.ids[name] = record_id
        self.index = FingerprintIndex()
        self.index.catch_up(self.store)
        self.matcher = Matcher(self.index, Calibration())

    def search(self, data: bytes) -> dict[int, Evidence]:
        evidence: dict[int, Evidence] = {}
        self.matcher.search(transforms.decode(data), self.previews.get, self.store, evidence, lambda _: None)
        return evidence


@functools.cache
def library() -> SmoothLibrary:
    return SmoothLibrary()


def matched_record(evidence: dict[int, Evidence]) -> int | None:
    return max(evidence, key=lambda r: evidence[r].confidence) if matched(evidence) else None


def mildly_edited(image: Image.Image) -> bytes:
    """Resized to 80 %, a little brighter and less saturated, JPEG q90."""
    smaller = image.convert("RGB").resize((round(image.width * 0.8), round(image.height * 0.8)))
    brighter = ImageEnhance.Brightness(smaller).enhance(1.05)
    return jpeg(ImageEnhance.Color(brighter).enhance(0.9), 90)


def test_a_gradient_saved_again_as_jpeg_is_matched_whole() -> None:
    """PDQ's hash of a gradient has low quality and a copy's lies far from it; ORB finds few
    corners: before the colour comparison this was no match at all."""
    found = library()
    gradient = transforms.decode(jpeg(Design("linear", 0).picture(), 92))
    evidence = found.search(jpeg(gradient, 92))
    record_id = found.ids["linear-0"]
    assert matched_record(evidence) == record_id
    assert [m.method for m in evidence[record_id].methods if m.confidence >= 0.9] == ["colour_fill"]
    assert evidence[record_id].coverage == 1.0


@pytest.mark.parametrize("kind", smooth_pictures.KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_barely_edited_smooth_picture_is_matched(kind: str, seed: int) -> None:
    found = library()
    evidence = found.search(mildly_edited(Design(kind, seed).picture()))
    assert matched_record(evidence) == found.ids[f"{kind}-{seed}"]


@pytest.mark.parametrize("kind", smooth_pictures.KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_another_picture_of_the_same_design_is_not_matched(kind: str, seed: int) -> None:
    """A gradient or soft art with its colours turned by 15-40 degrees or its centre moved, an
    illustration with one shape recoloured, a flag with one band recoloured or another emblem.
    Keypoints and blocks see lightness: a recoloured shape lined up with 15-61 inliers."""
    evidence = library().search(mildly_edited(Design(kind, seed).negative(seed)))
    assert not matched(evidence)


@pytest.mark.parametrize(
    "other",
    [
        smooth_pictures.flag((600, 400), BANDS, vertical=True, emblem=("star", (0.9, 0.75, 0.1))),
        smooth_pictures.flag(
            (600, 400),
            [*BANDS[:2], smooth_pictures.turned(BANDS[2], 60)],
            vertical=True,
            emblem=("disc", (0.9, 0.75, 0.1)),
        ),
    ],
    ids=["another emblem", "one band recoloured"],
)
def test_a_flag_that_shares_a_design_is_not_matched(other: Image.Image) -> None:
    found = library()
    assert matched_record(found.search(mildly_edited(FLAG))) == found.ids["flag"]  # the flag itself is
    assert not matched(found.search(mildly_edited(other)))


def test_a_plain_colour_identifies_nothing() -> None:
    """A near-uniform picture agrees with any picture of its colour: the comparison measures
    it (no mild edit is ruled out) but the colour spread is too small to stand for a match."""
    plain = np.asarray(Image.new("RGB", (400, 300), (120, 140, 200)))
    agreement = fill_agreement(plain, plain[::2, ::2].copy(), Calibration().fill)
    assert agreement is not None and agreement.share == 1.0
    assert agreement.spread < Calibration().fill.min_spread


def with_emoji(image: Image.Image) -> Image.Image:
    """A flat sticker as AugLy's emoji overlay draws it: a yellow face a quarter of the height
    high, with eyes and a mouth, near the top left."""
    overlaid = image.convert("RGB")
    side = overlaid.height // 4
    left, top = overlaid.width // 5, overlaid.height // 6
    draw = ImageDraw.Draw(overlaid)
    draw.ellipse((left, top, left + side, top + side), fill=(255, 204, 77), outline=(102, 69, 0), width=3)
    for eye in (0.3, 0.6):
        x = left + eye * side
        draw.ellipse((x, top + 0.3 * side, x + 0.12 * side, top + 0.45 * side), fill=(102, 69, 0))
    draw.arc(
        (left + 0.25 * side, top + 0.4 * side, left + 0.75 * side, top + 0.8 * side), 20, 160, (102, 69, 0), 4
    )
    return overlaid


@pytest.mark.parametrize(("kind", "seed"), DETAILED)
def test_a_recoloured_picture_with_detail_is_not_matched_by_its_keypoints(kind: str, seed: int) -> None:
    """Keypoints and the dense check see lightness and edges, and a recoloured shape or band
    keeps every edge where it was: the flat parts that disagree in colour beyond any global
    edit veto the geometric match (index.smooth.recoloured_share)."""
    found = library()
    design = Design(kind, seed)
    assert matched_record(found.search(mildly_edited(design.picture()))) == found.ids[f"{kind}-{seed}"]
    assert not matched(found.search(mildly_edited(design.negative(seed))))


COLOUR_EDITS = {
    "brightness +50%": lambda im: ImageEnhance.Brightness(im).enhance(1.5),
    "contrast -50%": lambda im: ImageEnhance.Contrast(im).enhance(0.5),
    "gamma 0.6": lambda im: im.point([round(255 * (i / 255) ** 0.6) for i in range(256)] * 3),
    "saturation x2": lambda im: ImageEnhance.Color(im).enhance(2.0),
    "grayscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "emoji overlay": with_emoji,
}


# shapes-4 under the sticker is left out: its dense agreement falls to 0.5 at 87 inliers before
# any colour is asked (the sticker's outline crosses its shapes), with or without the veto.
EDITED = [(kind, seed, edit) for kind, seed in DETAILED for edit in COLOUR_EDITS]
EDITED.remove(("shapes", 4, "emoji overlay"))


@pytest.mark.parametrize(("kind", "seed", "edit"), EDITED)
def test_a_colour_edited_or_overlaid_flat_picture_is_still_matched(kind: str, seed: int, edit: str) -> None:
    """The veto allows any global colour edit that turns no hue, and an overlay's flat sticker
    covers less of the picture than the veto asks to differ."""
    found = library()
    copy = COLOUR_EDITS[edit](transforms.decode(jpeg(Design(kind, seed).picture(), 92)))
    assert matched_record(found.search(jpeg(copy, 90))) == found.ids[f"{kind}-{seed}"]


@pytest.mark.parametrize("edit", ["contrast -50%", "gamma 0.6", "grayscale"])
@pytest.mark.parametrize(("kind", "seed"), [("shapes", 0), ("flag", 2)])
def test_a_smooth_picture_under_a_strong_colour_edit_keeps_its_match(kind: str, seed: int, edit: str) -> None:
    """A smooth suspect matched as a whole copy of a smooth record is held to the colour
    comparison, whose mild edit does not reach contrast -50 %, gamma 0.6 or grayscale: the
    stronger edit that turns no hue either keeps the match (index.matching.colour_veto_look)."""
    found = library()
    copy = COLOUR_EDITS[edit](transforms.decode(jpeg(Design(kind, seed).picture(), 92)))
    assert matched_record(found.search(jpeg(copy, 90))) == found.ids[f"{kind}-{seed}"]


def test_smooth_records_caught_up_before_serving_take_in_later_records_and_deletions() -> None:
    """A server's master reads the smooth records once and its workers share them: each worker
    must still find a smooth picture registered after that, and stop finding a deleted one,
    while the others stay found."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute(FingerprintStore.SCHEMA)
    connection.execute(FingerprintStore.REMOVALS_SCHEMA)
    store = FingerprintStore(connection)
    previews: dict[int, StoredPreview] = {}
    designs = {1: Design("linear", 0), 2: Design("radial", 1), 3: Design("blobs", 2)}

    def register(record_id: int) -> None:
        registered = transforms.decode(jpeg(designs[record_id].picture(), 92))
        store.add(record_id, fingerprint_image(registered))
        previews[record_id] = stored_preview(registered)

    for record_id in (1, 2):
        register(record_id)
    smooth = SmoothRecords(Calibration())
    smooth.catch_up(store, previews.get)  # the master, before it forks
    register(3)
    with connection:
        store.remove(1)  # its preview stays readable: only the smooth records may drop it
    index = FingerprintIndex()
    index.catch_up(store)
    worker = Matcher(index, Calibration(), smooth=smooth)

    def found(record_id: int) -> int | None:
        evidence: dict[int, Evidence] = {}
        suspect = transforms.decode(mildly_edited(designs[record_id].picture()))
        worker.search(suspect, previews.get, store, evidence, lambda _: None)
        return matched_record(evidence)

    assert found(3) == 3  # registered after the master's catch-up
    assert found(2) == 2  # kept when another is deleted
    assert found(1) is None  # deleted
    with pytest.raises(ValueError, match="another calibration"):
        Matcher(index, Calibration(fill=dataclasses.replace(Calibration().fill, candidates=5)), smooth=smooth)


def test_a_smooth_record_without_a_preview_is_looked_up_once_not_at_every_suspect() -> None:
    """A record's preview commits and goes with its fingerprints, so one that has none never will
    have one; asking again at every smooth suspect made each wait for all such lookups."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute(FingerprintStore.SCHEMA)
    connection.execute(FingerprintStore.REMOVALS_SCHEMA)
    store = FingerprintStore(connection)
    design, other = Design("linear", 0), Design("radial", 1)
    registered = transforms.decode(jpeg(design.picture(), 92))
    store.add(1, fingerprint_image(registered))
    store.add(2, fingerprint_image(transforms.decode(jpeg(other.picture(), 92))))  # no preview
    previews = {1: stored_preview(registered)}
    asked: list[int] = []

    def preview(record_id: int) -> StoredPreview | None:
        asked.append(record_id)
        return previews.get(record_id)

    smooth = SmoothRecords(Calibration())
    smooth.catch_up(store, preview)
    index = FingerprintIndex()
    index.catch_up(store)
    matcher = Matcher(index, Calibration(), smooth=smooth)
    for _ in range(3):
        evidence: dict[int, Evidence] = {}
        suspect = transforms.decode(mildly_edited(design.picture()))
        matcher.search(suspect, preview, store, evidence, lambda _: None)
        assert matched_record(evidence) == 1
    assert asked.count(2) == 1


def test_a_first_catch_up_decodes_one_preview_at_a_time_not_keeping_them_all() -> None:
    """A server's master decodes every smooth record's preview to make its colour layout; kept
    until the end of the catch-up, they stayed in the process's heap for good (110 MB per host
    for 3,000 records, 310 of them smooth)."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute(FingerprintStore.SCHEMA)
    connection.execute(FingerprintStore.REMOVALS_SCHEMA)
    store = FingerprintStore(connection)
    registered = transforms.decode(jpeg(Design("radial", 1).picture(), 92))
    fingerprints, preview = fingerprint_image(registered), stored_preview(registered)
    records = 24
    for record_id in range(1, records + 1):
        store.add(record_id, fingerprints)
    decoded = Preview(preview, Calibration().looks.judged_side).coarse.rgb.nbytes  # as the layout reads it
    smooth = SmoothRecords(Calibration())
    tracemalloc.start()
    try:
        smooth.catch_up(store, lambda _: preview)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert smooth.holds(records, store)
    # 0.3 MB; every preview kept, 3.3 MB (24 of 131 KB, and what each layout made of them)
    assert peak < records * decoded / 4, (peak, decoded)
