"""The read path's looks, without the application: fingerprints in a store, previews by record id."""

from __future__ import annotations

import dataclasses
import io
import sqlite3

import pytest
from PIL import Image, ImageEnhance, ImageOps

from index import (
    Calibration,
    Evidence,
    FingerprintIndex,
    FingerprintStore,
    Matcher,
    StoredPreview,
    fingerprint_image,
)
from index.evidence import matched
from index.matching import LOOKS, Look
from index.query import Query
from tests import transforms
from tests.conftest import fixture_bytes

NAMES = ("coffee", "chelsea", "astronaut", "rocket")


@dataclasses.dataclass
class Library:
    """Four registered fixtures, record ids 1-4, with their 512 px previews."""

    store: FingerprintStore
    index: FingerprintIndex
    previews: dict[int, StoredPreview]

    def preview(self, record_id: int) -> StoredPreview | None:
        return self.previews.get(record_id)

    def search(
        self, data: bytes, calibration: Calibration | None = None, looks: tuple[Look, ...] = LOOKS
    ) -> tuple[dict[int, Evidence], list[str]]:
        """The evidence for a suspect's bytes and the names of the steps that ran."""
        evidence: dict[int, Evidence] = {}
        steps: list[str] = []
        matcher = Matcher(self.index, calibration or Calibration(), looks)
        matcher.search(transforms.decode(data), self.preview, self.store, evidence, steps.append)
        return evidence, steps


def preview_of(image: Image.Image) -> bytes:
    small = image.convert("RGB")
    small.thumbnail((512, 512))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=90)
    return out.getvalue()


def library_of(images: dict[int, Image.Image]) -> Library:
    """The images registered under their record ids, with their 512 px previews."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute(FingerprintStore.SCHEMA)
    connection.execute(FingerprintStore.REMOVALS_SCHEMA)
    store = FingerprintStore(connection)
    previews = {}
    for record_id, image in images.items():
        store.add(record_id, fingerprint_image(image))
        previews[record_id] = StoredPreview(image.width, image.height, preview_of(image))
    index = FingerprintIndex()
    index.catch_up(store)
    return Library(store, index, previews)


@pytest.fixture(scope="module")
def library() -> Library:
    names = enumerate(NAMES, start=1)
    return library_of(
        {record_id: transforms.decode(fixture_bytes(f"{name}.jpg")) for record_id, name in names}
    )


def best(evidence: dict[int, Evidence]) -> int:
    return max(evidence, key=lambda record_id: evidence[record_id].confidence)


def test_the_looks_are_listed_once_in_cost_order() -> None:
    assert [look.name for look in LOOKS] == [
        "pdq",
        "local",
        "upright",
        "smooth",
        "small",
        "smaller",
        "dense",
        "large",
        "mirrored",
        "colour_veto",
    ]
    assert [look.while_unmatched for look in LOOKS] == [False, False, False, *[True] * 6, False]


def test_a_found_copy_costs_one_pass(library: Library) -> None:
    evidence, steps = library.search(transforms.strip(fixture_bytes("coffee.jpg")))
    assert matched(evidence) and best(evidence) == 1
    assert steps == ["pdq", "local_extract", "local_search", "local_verify"]


def test_a_crop_is_found_with_its_region(library: Library) -> None:
    crop, _ = transforms.crop(fixture_bytes("chelsea.jpg"), 0.5)
    evidence, _ = library.search(crop)
    assert matched(evidence) and best(evidence) == 2
    found = evidence[2]
    assert found.region is not None and found.coverage is not None and 0.2 < found.coverage < 0.8


@pytest.mark.parametrize(("name", "record_id"), [("chelsea", 2), ("rocket", 4)])
def test_a_mirrored_crop_recoloured_and_reencoded_is_found_with_its_region(
    library: Library, name: str, record_id: int
) -> None:
    """Mirroring defeats local features and cropping PDQ's mirrored hash, so no look saw these
    until the mirrored one; the region is the part of the original (upright) that they show."""
    original = transforms.decode(fixture_bytes(f"{name}.jpg"))
    mirrored = ImageOps.mirror(original)
    width, height = round(original.width * 0.84), round(original.height * 0.84)  # 70 % of the area
    left, top = original.width - width - 10, 12  # near the mirrored picture's top right
    edited = ImageEnhance.Color(mirrored.crop((left, top, left + width, top + height))).enhance(1.4)
    suspect = transforms.encode(ImageEnhance.Brightness(edited).enhance(0.9), "JPEG", quality=75)
    evidence, steps = library.search(suspect)
    assert matched(evidence) and best(evidence) == record_id
    assert "local_extract_mirrored" in steps
    # Upright, the crop shows the original from 10 px off its left edge.
    expected = [(10, top), (10 + width, top), (10 + width, top + height), (10, top + height)]
    region = evidence[record_id].region
    assert region is not None and len(region) == 4
    for ex, ey in expected:
        assert any(
            abs(x - ex) < 0.03 * original.width and abs(y - ey) < 0.03 * original.height for x, y in region
        )


def test_an_unrelated_image_takes_every_look_and_matches_nothing(library: Library) -> None:
    evidence, steps = library.search(fixture_bytes("hubble.jpg"))
    assert not matched(evidence)
    for step in (
        "local_extract_small",
        "local_extract_smaller",
        "dense",
        "local_extract_large",
        "local_extract_mirrored",
    ):
        assert step in steps
    assert steps.index("dense") < steps.index("local_extract_large") < steps.index("local_extract_mirrored")


def test_adding_a_look_is_adding_one_entry_and_it_obeys_the_rule(library: Library) -> None:
    seen: list[int] = []

    def probe(query: Query, evidence: dict[int, Evidence]) -> None:
        seen.append(len(evidence))
        query.lap("probe")

    looks = (*LOOKS, Look("probe", probe, while_unmatched=True))
    _, steps = library.search(fixture_bytes("hubble.jpg"), looks=looks)
    assert steps[-1] == "probe" and len(seen) == 1
    library.search(transforms.strip(fixture_bytes("rocket.jpg")), looks=looks)
    assert len(seen) == 1  # a copy matched: the conditional look did not run


def test_the_calibration_is_passed_in_not_patched(library: Library) -> None:
    """Another calibration changes what the same matcher code finds, and the default is untouched."""
    crop, _ = transforms.crop(fixture_bytes("astronaut.jpg"), 0.5)
    strict = dataclasses.replace(
        Calibration(),
        thresholds=dataclasses.replace(Calibration().thresholds, inliers_possible=10**6, pdq_possible=-1),
        looks=dataclasses.replace(Calibration().looks, dense_candidates=0),
    )
    evidence, _ = library.search(crop, strict)
    assert not matched(evidence)
    evidence, _ = library.search(crop)
    assert matched(evidence) and best(evidence) == 3


def test_each_preview_is_fetched_at_most_once_per_search(library: Library) -> None:
    """Every look may judge a record on its preview; the caller's store is asked once per record."""
    asked: list[int] = []

    def counting(record_id: int) -> StoredPreview | None:
        asked.append(record_id)
        return library.preview(record_id)

    evidence: dict[int, Evidence] = {}
    matcher = Matcher(library.index, Calibration())
    # A thumbnail: PDQ judges it on the preview, and so do the local features.
    thumbnail = transforms.resize(fixture_bytes("rocket.jpg"), 0.2)
    matcher.search(transforms.decode(thumbnail), counting, library.store, evidence, lambda _: None)
    assert matched(evidence) and asked == [4]
