"""The index library: fingerprints, FAISS search against brute force, persistence, geometry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

import index.search as search_module
from index import (
    FingerprintIndex,
    FingerprintStore,
    ImageFingerprints,
    PdqHash,
    Thresholds,
    fingerprint_image,
)
from index.alignment import block_agreement, locate_within
from index.calibration import Alignment, Ransac, Retrieval
from index.features import (
    DESCRIPTOR_BYTES,
    INDEXED_KEYPOINTS,
    LocalFeatures,
    _balanced_order,
    _indexed_order,
    describe,
    detect,
    extract_local_features,
    mirrored,
    share_inside,
    verify_geometry,
)
from index.fingerprints import dihedral_variant, pdq, pdq_dihedral
from index.scoring import dense_confidence, geometry_confidence, pdq_confidence, verdict_for
from index.search import INDEXED_DESCRIPTORS, Candidate, PdqHit
from index.store import LOCAL_KIND, PDQ_KIND, encode_pdq
from tests import transforms
from tests.conftest import fixture_bytes


def photo(name: str = "coffee") -> Image.Image:
    return transforms.decode(fixture_bytes(f"{name}.jpg"))


def store_with(records: dict[int, Image.Image]) -> FingerprintStore:
    return store_with_fingerprints(
        {record_id: fingerprint_image(image) for record_id, image in records.items()}
    )


def store_with_fingerprints(records: dict[int, ImageFingerprints]) -> FingerprintStore:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute(FingerprintStore.SCHEMA)
    connection.execute(FingerprintStore.REMOVALS_SCHEMA)
    store = FingerprintStore(connection)
    for record_id, fingerprints in records.items():
        store.add(record_id, fingerprints)
    return store


def test_pdq_variants_are_the_hashes_of_really_transformed_images() -> None:
    image = photo()
    variants = pdq_dihedral(image)
    assert variants[0] == pdq(image)
    for transformed in (
        ImageOps.mirror(image),
        image.rotate(90, expand=True),
        image.rotate(180),
        ImageOps.flip(image),
    ):
        assert min(pdq(transformed).distance(v) for v in variants) <= 4


def test_pdq_hex_round_trip_and_distance() -> None:
    value = pdq(photo())
    assert PdqHash.from_hex(value.hex(), value.quality) == value
    assert value.distance(pdq(photo("chelsea"))) > 60
    with pytest.raises(ValueError):
        PdqHash.from_hex("zz")


def test_local_features_serialise_and_verify_a_rotated_crop() -> None:
    image = photo("astronaut")
    reference = LocalFeatures.from_bytes(extract_local_features(image).to_bytes())
    box = (100, 150, 400, 450)
    query = extract_local_features(image.crop(box).rotate(10, expand=True))
    match = verify_geometry(query, reference, Ransac())
    assert match is not None and match.inliers >= 20
    assert abs(abs(match.rotation_degrees) - 10) < 2
    xs, ys = zip(*match.region, strict=True)
    assert min(xs) < box[0] + 5 and max(xs) > box[2] - 5  # the rotated query's corners enclose the box
    assert verify_geometry(extract_local_features(photo("hubble")), reference, Ransac()) is None or (
        verify_geometry(extract_local_features(photo("hubble")), reference, Ransac()).inliers < 10
    )


def test_the_index_holds_fine_scale_keypoints_beside_all_the_strongest_ones() -> None:
    # 300 strong coarse keypoints (pyramid level 4) and 100 weak fine ones (level 0), spread over
    # the picture. The indexed prefix keeps the 160 the balanced order put first and adds fine
    # ones after them: a crop keeping a quarter of the area matches its original on those, and a
    # whole copy on the strongest.
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 100, (400, 2)).astype(np.float32)
    responses = np.concatenate([rng.uniform(50, 100, 300), rng.uniform(0, 10, 100)]).astype(np.float32)
    octaves = np.array([4] * 300 + [0] * 100)
    order = _indexed_order(points, responses, octaves, 100, 100)
    indexed = order[:INDEXED_KEYPOINTS]
    assert sorted(order) == list(range(400))
    assert (octaves[indexed[:160]] == 4).all()
    assert (octaves[indexed[160:]] == 0).all() and len(indexed) > 160
    fine_cells = {(int(x // 25), int(y // 25)) for x, y in points[indexed[160:]]}
    assert len(fine_cells) == 16  # the fine ones too are spread over the whole picture


def test_the_balanced_order_is_the_one_stored_records_were_described_in() -> None:
    # Records keep their descriptors in this order and the index holds a prefix of it, so a
    # faster sort must give the same order, ties and all: round-robin over the grid's cells,
    # strongest first, equal responses (-0 and 0 among them) by index.
    rng = np.random.default_rng(5)
    for count in (0, 1, 17, 3000):
        points = rng.uniform(0, 100, (count, 2)).astype(np.float32)
        responses = (rng.integers(-3, 4, count) * rng.choice([1.0, 0.5, 1e-7], count)).astype(np.float32)
        responses[rng.random(count) < 0.1] = -0.0
        cells = np.minimum(points // 25, 3).astype(int) @ np.array([1, 4])
        by_cell = np.lexsort((-responses, cells))
        rank = np.empty(count, np.int64)
        rank[by_cell] = np.arange(count) - np.searchsorted(cells[by_cell], cells[by_cell])
        expected = np.lexsort((-responses, rank))
        assert _balanced_order(points, responses, 100, 100).tolist() == expected.tolist()


def test_matching_half_the_descriptors_first_changes_no_copy_s_alignment() -> None:
    """A candidate is matched with a prefix of the suspect's descriptors against a prefix of its
    own first, and whole only where the prefixes fit a transform: for a copy, the match is the
    one all descriptors give."""
    image = photo()
    reference = LocalFeatures.from_bytes(extract_local_features(image).to_bytes())
    crop = extract_local_features(image.crop((200, 100, 520, 340)).resize((480, 360)))
    probed = verify_geometry(crop, reference, Ransac(probe_share=0.5, probe_reference_share=0.5))
    whole = verify_geometry(crop, reference, Ransac(probe_share=1.0))
    assert probed is not None and whole is not None and probed.inliers >= 20
    assert probed.inliers == whole.inliers
    np.testing.assert_allclose(probed.transform, whole.transform)


def test_a_motif_repeated_on_one_reference_point_does_not_hide_the_true_transform() -> None:
    rng = np.random.default_rng(5)
    reference_points = rng.uniform(10, 190, (60, 2)).astype(np.float32)
    reference = LocalFeatures(
        reference_points, rng.integers(0, 256, (60, DESCRIPTOR_BYTES), np.uint8), 200, 200, 1.0
    )
    # The query shows the reference at half size, shifted (20 keypoints), beside 30 copies of a
    # motif that all look like reference keypoint 0: a fit to every match would collapse all 30
    # onto that one point, with more inliers than the true transform has.
    true_points = reference_points[1:21] * 0.5 + 40
    motif_points = rng.uniform(0, 100, (30, 2)).astype(np.float32)
    query = LocalFeatures(
        np.concatenate([true_points, motif_points]).astype(np.float32),
        np.concatenate([reference.descriptors[1:21], np.repeat(reference.descriptors[:1], 30, axis=0)]),
        200,
        200,
        1.0,
    )
    match = verify_geometry(query, reference, Ransac())
    assert match is not None
    assert 20 <= match.inliers <= 21 and match.scale == pytest.approx(2.0, rel=0.01)


def test_textureless_image_has_no_local_features_but_still_a_pdq_hash() -> None:
    flat = Image.linear_gradient("L").resize((300, 200)).convert("RGB")
    features = extract_local_features(flat)
    assert len(features) < 10
    assert pdq(flat).quality < 50


def test_the_first_looks_keypoints_mirrored_describe_the_mirrored_picture_as_detecting_it_would() -> None:
    """The mirrored look reuses the first look's detection (index.features.mirrored): the same
    keypoints, at the same points, with the same descriptors as ORB finds on the mirror."""
    picture = photo()
    native = extract_local_features(ImageOps.mirror(picture))
    reused = describe(mirrored(detect(picture)))
    assert len(reused) == len(native) > 500
    native_points = {bytes(d): point for d, point in zip(native.descriptors, native.points, strict=True)}
    reused_points = {bytes(d): point for d, point in zip(reused.descriptors, reused.points, strict=True)}
    shared = native_points.keys() & reused_points.keys()
    assert len(shared) >= 0.97 * len(native)
    assert all(np.allclose(native_points[d], reused_points[d], atol=0.01) for d in shared)
    # Described upright, the same keypoints are other descriptors: the reuse did mirror them.
    upright = extract_local_features(picture)
    assert len({bytes(d) for d in upright.descriptors} & reused_points.keys()) < 0.1 * len(native)
    twice = describe(mirrored(mirrored(detect(picture))))
    assert np.array_equal(twice.descriptors, upright.descriptors)


def test_a_long_thin_banner_is_fingerprinted_without_local_features() -> None:
    """Scaled to the processing side it is 1 px high: ORB's pyramid would shrink it to nothing."""
    banner = Image.effect_noise((20000, 40), 60).convert("RGB")
    fingerprints = fingerprint_image(banner)
    assert len(fingerprints.local) == 0
    assert len(extract_local_features(banner, side=320)) == 0


def brute_force_votes(
    query: np.ndarray, codes: np.ndarray, ids: np.ndarray, max_distance: int
) -> dict[int, int]:
    bits = np.unpackbits(query[:, None, :] ^ codes[None, :, :], axis=2).sum(axis=2)
    votes: dict[int, int] = {}
    for row in bits:
        for record_id in {int(ids[j]) for j in np.argsort(row, kind="stable")[:4] if row[j] <= max_distance}:
            votes[record_id] = votes.get(record_id, 0) + 1
    return votes


def test_local_search_of_an_empty_index_finds_nothing_with_or_without_windows() -> None:
    query = extract_local_features(photo("rocket"))
    positions = query.points / np.array([query.width, query.height], np.float32)
    index = FingerprintIndex()
    assert index.search_local(query.descriptors, Retrieval()) == []
    assert index.search_local(query.descriptors, Retrieval(), positions=positions) == []


def test_local_search_agrees_with_brute_force_and_survives_save_and_load(tmp_path: Path) -> None:
    images = {i + 1: photo(name) for i, name in enumerate(["coffee", "chelsea", "astronaut", "rocket"])}
    store = store_with(images)
    index = FingerprintIndex.rebuild_from(store)
    assert index.records == 4 and index.last_record_id == 4

    query = extract_local_features(transforms.decode(transforms.crop(fixture_bytes("rocket.jpg"), 0.5)[0]))
    descriptors = query.descriptors[:300]
    codes = np.concatenate(
        [
            extract_local_features(img).descriptors[: search_module.INDEXED_DESCRIPTORS]
            for img in images.values()
        ]
    )
    ids = np.concatenate(
        [
            np.full(min(len(extract_local_features(img)), search_module.INDEXED_DESCRIPTORS), i)
            for i, img in images.items()
        ]
    )
    oracle = brute_force_votes(descriptors, codes, ids, 70)
    found = {c.record_id: c.votes for c in index.search_local(descriptors, Retrieval())}
    assert max(found, key=found.__getitem__) == max(oracle, key=oracle.__getitem__) == 4
    assert abs(found[4] - oracle[4]) <= 2  # ties among equidistant neighbours may break differently

    index.save(tmp_path / "fp.npz")
    loaded = FingerprintIndex.load(tmp_path / "fp.npz")
    assert loaded.last_record_id == 4
    assert {c.record_id: c.votes for c in loaded.search_local(descriptors, Retrieval())} == found
    assert loaded.search_pdq(pdq_dihedral(images[2]), 31) == {2: PdqHit(0, 0)}


def test_densest_window_voting_ranks_a_small_picture_above_votes_spread_over_the_page() -> None:
    rng = np.random.default_rng(3)
    descriptor_sets = {i: rng.integers(0, 256, (160, DESCRIPTOR_BYTES), np.uint8) for i in (1, 2)}
    pdq_hash = fingerprint_image(photo("rocket")).pdq
    store = store_with_fingerprints(
        {
            record_id: ImageFingerprints(
                pdq_hash, LocalFeatures(np.zeros((160, 2), np.float32), codes, 100, 100, 1.0)
            )
            for record_id, codes in descriptor_sets.items()
        }
    )
    index = FingerprintIndex.rebuild_from(store)
    # A screenshot: 30 descriptors of the picture (record 1) in its top-left corner, and 50 of
    # page chrome that looks like record 2 spread evenly over the whole page.
    picture = rng.uniform(0.05, 0.3, (30, 2))
    chrome = np.stack(np.meshgrid(np.linspace(0.02, 0.98, 10), np.linspace(0.02, 0.98, 5)), -1).reshape(-1, 2)
    descriptors = np.concatenate([descriptor_sets[1][:30], descriptor_sets[2][:50]])
    positions = np.concatenate([picture, chrome]).astype(np.float32)

    whole_query = index.search_local(descriptors, Retrieval())
    assert [(c.record_id, c.votes) for c in whole_query] == [(2, 50), (1, 30)]
    densest_window = index.search_local(descriptors, Retrieval(), positions=positions)
    assert densest_window[0] == Candidate(1, 30, window=(0.0, 0.0, 0.375, 0.375))
    assert densest_window[1].record_id == 2 and densest_window[1].votes <= 50 * 9 // 32


def test_catch_up_adds_only_new_records() -> None:
    store = store_with({1: photo("coffee")})
    index = FingerprintIndex.rebuild_from(store)
    assert index.catch_up(store) == 0
    store.add(2, fingerprint_image(photo("chelsea")))
    assert index.catch_up(store) == 1
    assert set(index.search_pdq([pdq(photo("chelsea"))], 31)) == {2}


def test_a_removed_record_leaves_every_index_that_catches_up_and_stays_out_after_save_and_rebuild(
    tmp_path: Path,
) -> None:
    store = store_with({1: photo("coffee"), 2: photo("chelsea")})
    here, elsewhere = FingerprintIndex.rebuild_from(store), FingerprintIndex.rebuild_from(store)
    here.save(tmp_path / "before.npz")
    query = fingerprint_image(photo("chelsea"))
    assert 2 in elsewhere.search_pdq([query.pdq], 31)
    store.remove(2)
    for index in (here, elsewhere, FingerprintIndex.load(tmp_path / "before.npz")):
        index.catch_up(store)
        assert index.search_pdq([query.pdq], 31) == {}
        assert {c.record_id for c in index.search_local(query.local.descriptors, Retrieval())} == {1}
        assert index.records == 1
    here.save(tmp_path / "after.npz")
    assert FingerprintIndex.load(tmp_path / "after.npz").last_removal_seq == 1
    assert FingerprintIndex.rebuild_from(store).search_pdq([query.pdq], 31) == {}
    store.add(3, query)  # the same picture registered again is found under its new record
    assert set(elsewhere.search_pdq([query.pdq], 31)) == set()
    elsewhere.catch_up(store)
    assert set(elsewhere.search_pdq([query.pdq], 31)) == {3}


def test_an_index_file_saved_before_deletions_existed_loads_and_applies_them(tmp_path: Path) -> None:
    store = store_with({1: photo("coffee"), 2: photo("chelsea")})
    FingerprintIndex.rebuild_from(store).save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as saved:
        parts = dict(saved)
    np.savez(tmp_path / "old.npz", **{**parts, "state": parts["state"][:3]})  # last id, records, trained at
    store.remove(2)
    old = FingerprintIndex.load(tmp_path / "old.npz")
    assert old.last_removal_seq == 0
    old.catch_up(store)
    assert set(old.search_pdq([pdq(photo("chelsea"))], 31)) == set() and old.records == 1


def frozen_bytes(index: FingerprintIndex) -> list[bytes]:
    pdq_index, local = index._frozen[0]
    return [faiss.serialize_index_binary(part).tobytes() for part in (pdq_index, local.index)]


def test_a_frozen_index_searches_as_one_and_never_writes_what_it_held_when_frozen() -> None:
    """A worker freezes the index it inherits by fork, so that the pages it shares with its
    master stay shared: later records go to indexes of their own, searched with the frozen ones."""
    names = ["coffee", "chelsea", "astronaut", "rocket"]
    store = store_with({1: photo(names[0]), 2: photo(names[1])})
    frozen = FingerprintIndex.rebuild_from(store)
    frozen.freeze()
    held = frozen_bytes(frozen)
    for record_id, name in enumerate(names[2:], start=3):
        store.add(record_id, fingerprint_image(photo(name)))
    assert frozen.catch_up(store) == 2 and frozen.records == 4
    assert frozen_bytes(frozen) == held  # additions went elsewhere
    store.remove(2)
    frozen.catch_up(store)
    assert frozen.records == 3 and frozen._frozen[0][0].ntotal == 1  # a removal reaches the frozen part
    whole = FingerprintIndex.rebuild_from(store)
    for name in names:
        query = fingerprint_image(transforms.decode(transforms.crop(transforms.encode(photo(name)), 0.6)[0]))
        assert frozen.search_pdq([query.pdq], 60) == whole.search_pdq([query.pdq], 60)
        found, expected = (
            index.search_local(query.local.descriptors, Retrieval()) for index in (frozen, whole)
        )
        assert found == expected
    with pytest.raises(RuntimeError):
        frozen.save(Path("/nonexistent/never-written.npz"))


def random_descriptor_records(
    rng: np.random.Generator, pdq_hash: PdqHash, record_ids: range
) -> dict[int, ImageFingerprints]:
    """Distractor records: 160 random descriptors each, enough to fill an inverted file."""
    return {
        record_id: ImageFingerprints(
            pdq_hash,
            LocalFeatures(
                np.zeros((160, 2), np.float32),
                rng.integers(0, 256, (160, DESCRIPTOR_BYTES), np.uint8),
                100,
                100,
                1.0,
            ),
        )
        for record_id in record_ids
    }


def test_index_switches_to_ivf_when_large_and_still_finds_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "IVF_MIN_VECTORS", 2000)
    rng = np.random.default_rng(1)
    real = fingerprint_image(photo("rocket"))
    fingerprints = random_descriptor_records(rng, real.pdq, range(1, 40))  # around one real record
    fingerprints[20] = real
    store = store_with_fingerprints(fingerprints)
    index = FingerprintIndex.rebuild_from(store)
    assert type(index._local.index).__name__ == "IndexBinaryIVF"
    query = extract_local_features(photo("rocket"))
    assert index.search_local(query.descriptors[:300], Retrieval())[0].record_id == 20
    store.remove(20)
    index.catch_up(store)
    assert 20 not in {c.record_id for c in index.search_local(query.descriptors[:300], Retrieval())}


def test_an_ivf_search_scans_a_bounded_share_of_long_lists_and_still_finds_the_record(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A search's time grows with the lists it scans, and they grow with the store: each query
    descriptor scans at most _MAX_CODES codes, its nearest lists first, in a rebuilt index as
    in a loaded one, and the real record still wins."""
    monkeypatch.setattr(search_module, "IVF_MIN_VECTORS", 2000)
    monkeypatch.setattr(search_module, "_MAX_CODES", 50)  # 2 of the 8 lists probed here, ~25 codes each
    rng = np.random.default_rng(4)
    real = fingerprint_image(photo("rocket"))
    fingerprints = random_descriptor_records(rng, real.pdq, range(1, 40))
    fingerprints[20] = real
    index = FingerprintIndex.rebuild_from(store_with_fingerprints(fingerprints))
    index.save(tmp_path / "fp.npz")
    query = extract_local_features(photo("rocket")).descriptors[:300]
    for searched in (index, FingerprintIndex.load(tmp_path / "fp.npz")):
        faiss.cvar.indexIVF_stats.reset()
        assert searched.search_local(query, Retrieval())[0].record_id == 20
        assert faiss.cvar.indexIVF_stats.ndis <= len(query) * 50


def test_an_index_grown_a_record_at_a_time_retrains_with_what_it_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A serving index catches up a few records at a time; when one takes it past its threshold,
    the new inverted file must hold the earlier records as well as that one, as a rebuild would."""
    monkeypatch.setattr(search_module, "IVF_MIN_VECTORS", 2000)
    rng = np.random.default_rng(3)
    real = fingerprint_image(photo("rocket"))
    fingerprints = random_descriptor_records(rng, real.pdq, range(1, 40))
    fingerprints[20] = real
    store = store_with_fingerprints({})
    grown = FingerprintIndex()
    for record_id in sorted(fingerprints):
        store.add(record_id, fingerprints[record_id])
        assert grown.catch_up(store) == 1
    rebuilt = FingerprintIndex.rebuild_from(store)
    assert type(grown._local.index).__name__ == type(rebuilt._local.index).__name__ == "IndexBinaryIVF"
    assert grown.records == rebuilt.records == 39
    indexed = sum(min(INDEXED_DESCRIPTORS, len(f.local)) for f in fingerprints.values())
    assert grown._local.ntotal == rebuilt._local.ntotal == indexed
    query = extract_local_features(photo("rocket")).descriptors[:300]
    for index in (grown, rebuilt):
        assert index.search_local(query, Retrieval())[0].record_id == 20


def test_an_ivf_index_finds_its_lists_through_a_smaller_one_and_survives_save_load_and_freeze(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With many lists, the inverted file assigns descriptors to them through an inverted file
    over its centroids (scanning every centroid made rebuilds slow); that one too must be saved,
    loaded, searched and shared after a fork."""
    monkeypatch.setattr(search_module, "IVF_MIN_VECTORS", 2000)
    monkeypatch.setattr(search_module, "NESTED_QUANTIZER_LISTS", 256)
    monkeypatch.setattr(search_module, "_CENTROID_NPROBE", 4)  # of 64 lists: an approximate search
    monkeypatch.setattr(search_module, "_ADD_BATCH", 1000)  # FAISS calls of at most 1,000
    rng = np.random.default_rng(2)
    names = ["coffee", "chelsea", "astronaut", "rocket"]
    real = {record_id: fingerprint_image(photo(name)) for record_id, name in enumerate(names, start=1)}
    fingerprints = random_descriptor_records(rng, real[1].pdq, range(5, 45))
    store = store_with_fingerprints({**real, **fingerprints})
    index = FingerprintIndex.rebuild_from(store)
    ivf = index._local.index
    quantizer = faiss.downcast_IndexBinary(ivf.quantizer)
    assert type(quantizer).__name__ == "IndexBinaryIVF" and quantizer.ntotal == ivf.nlist
    stored = [store.local_features(i) for i in range(1, 45)]
    assert ivf.ntotal == sum(min(INDEXED_DESCRIPTORS, len(f)) for f in stored if f is not None)

    query = extract_local_features(transforms.decode(transforms.crop(fixture_bytes("rocket.jpg"), 0.5)[0]))
    descriptors = query.descriptors[:300]
    indexed = {i: store.local_features(i).descriptors[:INDEXED_DESCRIPTORS] for i in range(1, 45)}  # type: ignore[union-attr]
    codes = np.concatenate(list(indexed.values()))
    ids = np.concatenate([np.full(len(c), i) for i, c in indexed.items()])
    oracle = brute_force_votes(descriptors, codes, ids, 70)
    found = {c.record_id: c.votes for c in index.search_local(descriptors, Retrieval())}
    assert max(found, key=found.__getitem__) == max(oracle, key=oracle.__getitem__) == 4
    assert found[4] >= oracle[4] * 0.75  # a few neighbours sit in lists the search did not visit

    index.save(tmp_path / "fp.npz")
    loaded = FingerprintIndex.load(tmp_path / "fp.npz")
    assert {c.record_id: c.votes for c in loaded.search_local(descriptors, Retrieval())} == found
    loaded.freeze()
    held = frozen_bytes(loaded)
    store.add(45, fingerprint_image(photo("rocket")))
    assert loaded.catch_up(store) == 1 and frozen_bytes(loaded) == held
    assert {c.record_id for c in loaded.search_local(descriptors, Retrieval())[:2]} == {4, 45}


def test_missing_saved_index_is_reported(tmp_path: Path) -> None:
    from index import IndexNotReady

    with pytest.raises(IndexNotReady):
        FingerprintIndex.load(tmp_path / "absent.npz")


def preview_of(image: Image.Image) -> tuple[np.ndarray, float]:
    """The grey 256 px preview the store keeps, and its pixels per original pixel."""
    scale = 256 / max(image.size)
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    return np.asarray(small.convert("L")), small.width / image.width


@pytest.mark.parametrize("edit", ["plain", "contrast", "overlay"])
def test_aligned_copy_agrees_with_the_original_and_a_different_picture_does_not(edit: str) -> None:
    original = photo("astronaut")
    preview, to_preview = preview_of(original)
    box = (60, 40, 60 + original.width // 2, 40 + original.height // 2)
    copy = original.crop(box).resize((box[2] - box[0], box[3] - box[1]))
    if edit == "contrast":
        copy = ImageEnhance.Contrast(copy).enhance(0.5)
    if edit == "overlay":
        ImageDraw.Draw(copy).text((10, 10), "SHARE IF YOU AGREE", fill="white", font_size=24)
    copy = transforms.decode(transforms.encode(copy, "JPEG", quality=50))
    # Query pixels -> original pixels is a shift by the crop's corner; then scale to the preview.
    to_original = np.array([[1.0, 0.0, box[0]], [0.0, 1.0, box[1]]])
    agreement = block_agreement(np.asarray(copy.convert("L")), preview, to_original * to_preview, Alignment())
    assert agreement is not None and agreement.share > 0.8
    other = photo("coffee").resize(copy.size)
    unrelated = block_agreement(
        np.asarray(other.convert("L")), preview, to_original * to_preview, Alignment()
    )
    assert unrelated is not None and unrelated.share < 0.3


def light_drawing(filled: bool = True) -> Image.Image:
    """Outlined shapes filled with greys from mid to near white, on white: clip art (unfilled: the
    same outlines on white, a line drawing)."""
    drawing = Image.new("L", (512, 384), 255)
    draw = ImageDraw.Draw(drawing)
    for i, level in enumerate((120, 150, 175, 195, 215, 235)):
        left, top = 20 + (i % 3) * 165, 20 + (i // 3) * 180
        fills = (level, level - 80) if filled else (255, 255)
        draw.rounded_rectangle(
            (left, top, left + 140, top + 160), 20 + 6 * i, fill=fills[0], outline=0, width=3
        )
        draw.ellipse((left + 30, top + 40, left + 110, top + 120), fill=fills[1], outline=0, width=2)
    return drawing.convert("RGB")


@pytest.mark.parametrize("brightness", [1.3, 1.5, 0.5])
def test_a_copy_brightened_or_darkened_past_white_or_black_keeps_the_original_s_levels(
    brightness: float,
) -> None:
    """Brightening by half makes every grey above 170 white, and a block only partly made white
    follows no one map of the original's levels: where the blocks that kept their levels show
    the edit, white blocks need only lie on the original's lightest levels and partly white ones
    are left out; darkening keeps the levels."""
    original = light_drawing()
    preview, to_preview = preview_of(original)
    copy = transforms.decode(transforms.encode(ImageEnhance.Brightness(original).enhance(brightness), "JPEG"))
    agreement = block_agreement(
        np.asarray(copy.convert("L")), preview, np.eye(3)[:2] * to_preview, Alignment()
    )
    assert agreement is not None and agreement.levels >= Thresholds().agreement_levels


def test_a_line_drawing_does_not_keep_the_levels_of_the_same_lines_filled_with_greys() -> None:
    """Brightened far enough, the filled drawing would turn white inside its lines too; but a
    line drawing has no grey left to show such an edit, and taking its white for clipped
    would let every drawing with those lines (colouring-book pages of one outline) match it."""
    preview, to_preview = preview_of(light_drawing(filled=True))
    lines = transforms.decode(transforms.encode(light_drawing(filled=False), "JPEG"))
    agreement = block_agreement(
        np.asarray(lines.convert("L")), preview, np.eye(3)[:2] * to_preview, Alignment()
    )
    assert agreement is not None and agreement.levels < Thresholds().agreement_levels


@pytest.mark.parametrize("box", [(30, 14, 290, 242), (158, 110, 482, 354), (60, 30, 450, 370)])
def test_an_exact_crop_placed_where_it_was_cut_agrees_along_its_sides(box: tuple[int, int, int, int]) -> None:
    """A crop's sides lie inside the original; the dense check must not take them for edges
    the original lacks (a white drawing's crop lost a third of its blocks so)."""
    original = light_drawing()
    preview, to_preview = preview_of(original)
    copy = transforms.decode(transforms.encode(original.crop(box), "PNG"))
    to_original = np.array([[1.0, 0.0, box[0]], [0.0, 1.0, box[1]]])
    agreement = block_agreement(np.asarray(copy.convert("L")), preview, to_original * to_preview, Alignment())
    assert agreement is not None and agreement.share >= 0.95


@pytest.mark.parametrize(("offset", "agrees"), [(2.0, True), (5.0, True), (20.0, False)])
def test_a_slightly_misaligned_copy_is_realigned_but_not_one_off_by_more_than_a_block(
    offset: float, agrees: bool
) -> None:
    # RANSAC's map from a few keypoints can be off by a few preview pixels; the dense refinement
    # mends that, but may not move a map further than one 8-pixel block.
    original = photo("astronaut")
    preview, to_preview = preview_of(original)
    box = (60, 40, 60 + original.width // 2, 40 + original.height // 2)
    copy = transforms.decode(transforms.encode(original.crop(box), "JPEG", quality=50))
    query_to_preview = np.array([[1.0, 0.0, box[0]], [0.0, 1.0, box[1]]]) * to_preview
    query_to_preview[:, 2] += offset
    agreement = block_agreement(np.asarray(copy.convert("L")), preview, query_to_preview, Alignment())
    assert agreement is not None
    assert agreement.share > 0.9 if agrees else agreement.share < 0.3


def test_a_crop_is_placed_where_it_was_cut_and_a_picture_like_nothing_in_the_preview_is_not_placed() -> None:
    """The best placement exists for any pair of pictures; one whose correlation is weak is no
    copy, and judging it would only cost time (Alignment.min_placement_correlation)."""
    drawing = light_drawing()
    preview, to_preview = preview_of(drawing)
    box = (180, 40, 440, 235)
    crop = transforms.decode(transforms.encode(drawing.crop(box), "JPEG", quality=85))
    placed = locate_within(np.asarray(crop.convert("L")), preview, Alignment(), min_coverage=0.1)
    assert placed is not None
    corner = placed @ np.array([0.0, 0.0, 1.0]) / to_preview  # the crop's corner, in the drawing
    assert np.allclose(corner, box[:2], atol=8)
    other = photo("astronaut").crop((60, 40, 320, 235))
    assert locate_within(np.asarray(other.convert("L")), preview, Alignment(), min_coverage=0.1) is None


def test_a_flat_overlap_cannot_be_judged() -> None:
    flat = np.full((192, 256), 200, np.uint8)
    assert block_agreement(flat, flat, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), Alignment()) is None


def test_geometry_needs_agreement_to_be_a_match_unless_its_inliers_are_overwhelming() -> None:
    thresholds = Thresholds()
    few = thresholds.inliers_match
    assert verdict_for(geometry_confidence(few, 0.95, thresholds)) == "matched"
    # A circle's rim against part of a bowling ball: 24 inliers, agreement 0.83 (benchmark).
    assert verdict_for(geometry_confidence(few + 4, 0.83, thresholds)) == "possible_match"
    # An overlay hides part of a copy, lowering its share but not its many inliers.
    assert verdict_for(geometry_confidence(few + 60, 0.62, thresholds)) == "matched"
    assert verdict_for(geometry_confidence(thresholds.inliers_alone, None, thresholds)) == "matched"
    assert verdict_for(geometry_confidence(thresholds.inliers_possible - 1, 1.0, thresholds)) == "no_match"


def test_few_inliers_on_a_mostly_disagreeing_overlap_are_not_worth_review() -> None:
    thresholds = Thresholds()
    # A meme caption's letters lined up on a stored word (benchmark: 22 inliers, share 0.24).
    assert verdict_for(geometry_confidence(22, 0.24, thresholds)) == "no_match"
    assert verdict_for(geometry_confidence(22, 0.5, thresholds)) == "possible_match"
    # An emoji overlay hides most of a copy, not its many inliers.
    assert verdict_for(geometry_confidence(119, 0.2, thresholds)) == "possible_match"
    assert verdict_for(geometry_confidence(22, None, thresholds)) == "possible_match"


def test_few_inliers_confirm_a_copy_only_where_one_picture_lies_within_the_other() -> None:
    thresholds = Thresholds()
    few, many = thresholds.inliers_match - 5, thresholds.inliers_reviewed_anyway
    # A crop lies inside its original; a collage or a screenshot holds the whole original.
    assert verdict_for(geometry_confidence(few, 0.98, thresholds, within=1.0)) == "matched"
    # Copies matched with fewer than 60 inliers in a full benchmark run: 0.97 or more.
    assert verdict_for(geometry_confidence(few + 10, 0.9, thresholds, within=0.95)) == "matched"
    # A pool ball's rim on part of a circle (benchmark: 10 inliers at 0.96, a quarter of the
    # original and an eighth of the query): shapes lining up by chance.
    assert verdict_for(geometry_confidence(10, 0.963, thresholds, within=0.25)) == "possible_match"
    assert verdict_for(geometry_confidence(22, 0.957, thresholds, within=0.4)) == "possible_match"
    # One star of a quarter of a flag on another flag's star (benchmark: 32 inliers at 0.90,
    # half of the other's tile covered, a fifth of the query within it).
    assert verdict_for(geometry_confidence(32, 0.9, thresholds, within=0.5)) == "possible_match"
    # A flag's red disc on half of a red disc at a tile's edge (benchmark: 10 inliers at 1.0,
    # 0.78 of the tile within the flag).
    assert verdict_for(geometry_confidence(10, 1.0, thresholds, within=0.78)) == "possible_match"
    # From inliers_reviewed_anyway on, so many correspondences are no chance alignment.
    assert verdict_for(geometry_confidence(many, 0.9, thresholds, within=0.3)) == "matched"


def test_the_share_of_a_query_inside_its_original_tells_a_crop_from_a_partial_overlap() -> None:
    shift = np.array([[1.0, 0, 100], [0, 1.0, 50]])  # a 200x100 query placed at (100, 50)
    assert share_inside(shift, (200, 100), (400, 300)) == pytest.approx(1.0)
    half_out = np.array([[1.0, 0, 300], [0, 1.0, 50]])  # its right half beyond a 400 px original
    assert share_inside(half_out, (200, 100), (400, 300)) == pytest.approx(0.5)
    beyond = np.array([[1.0, 0, 500], [0, 1.0, 50]])
    assert share_inside(beyond, (200, 100), (400, 300)) == 0.0


def test_an_overlap_too_calm_to_judge_needs_many_inliers() -> None:
    thresholds = Thresholds()
    assert verdict_for(geometry_confidence(thresholds.inliers_match, None, thresholds)) == "possible_match"
    assert verdict_for(geometry_confidence(thresholds.inliers_unjudged, None, thresholds)) == "matched"


def test_few_inliers_need_a_near_identical_overlap_in_the_same_hues() -> None:
    thresholds = Thresholds()
    few = thresholds.inliers_match - 5
    assert verdict_for(geometry_confidence(few, 0.98, thresholds)) == "matched"
    assert verdict_for(geometry_confidence(few, 0.98, thresholds, hue=0.9)) == "matched"
    assert verdict_for(geometry_confidence(few, 0.98, thresholds, hue=0.1)) == "possible_match"
    assert verdict_for(geometry_confidence(few, 0.9, thresholds)) == "possible_match"
    # Many inliers make the shape itself evidence: a recoloured copy is still a copy.
    assert verdict_for(geometry_confidence(few + 10, 0.95, thresholds, hue=0.1)) == "matched"


def test_a_placement_found_without_keypoints_is_a_match_only_with_enough_agreement_and_hue() -> None:
    thresholds = Thresholds()
    assert verdict_for(dense_confidence(0.97, 40, None, thresholds)) == "matched"
    assert verdict_for(dense_confidence(0.97, 40, 0.95, thresholds)) == "matched"
    # Stripes on stripes of another colour: the grey structure agrees, the hue does not.
    assert verdict_for(dense_confidence(0.97, 40, 0.05, thresholds)) == "no_match"
    assert verdict_for(dense_confidence(0.91, 40, None, thresholds)) == "no_match"
    assert verdict_for(dense_confidence(0.91, 80, None, thresholds)) == "matched"
    assert verdict_for(dense_confidence(1.0, thresholds.dense_min_blocks - 1, None, thresholds)) == "no_match"


def test_a_possible_pdq_hit_is_a_match_only_when_the_whole_image_agrees() -> None:
    thresholds = Thresholds()
    between = (thresholds.pdq_match + thresholds.pdq_possible) // 2
    assert verdict_for(pdq_confidence(between, 100, thresholds)) == "possible_match"
    assert verdict_for(pdq_confidence(between, 100, thresholds, agreement=0.95)) == "matched"
    # A different drawing on the same white page agrees where both are blank, not on the drawing.
    assert verdict_for(pdq_confidence(between, 100, thresholds, agreement=0.74)) == "possible_match"
    # A flat picture's weak hash never makes a match, however its few blocks agree.
    assert verdict_for(pdq_confidence(between, 30, thresholds, agreement=1.0)) == "possible_match"
    # Agreement does not rescue a hash beyond the possible range.
    assert (
        verdict_for(pdq_confidence(thresholds.pdq_possible + 1, 100, thresholds, agreement=1.0)) == "no_match"
    )


def test_each_dihedral_hash_is_the_hash_of_that_variant() -> None:
    image = photo("astronaut").crop((0, 0, 500, 400))
    for variant, hashed in enumerate(pdq_dihedral(image)):
        assert pdq(dihedral_variant(image, variant)).distance(hashed) <= 4, variant


def test_rows_after_reads_page_by_page_without_splitting_or_losing_a_record() -> None:
    fingerprints = fingerprint_image(photo())
    store = store_with_fingerprints({record_id: fingerprints for record_id in (2, 3, 5, 8, 13)})
    for page_rows in (3, 4, 4096):  # each record has two rows: pages end inside and between records
        rows = list(store.rows_after(2, search_module.INDEXED_DESCRIPTORS, page_rows=page_rows))
        assert [r.record_id for r in rows] == [3, 5, 8, 13]
        assert all(r.pdq == fingerprints.pdq and r.local_prefix for r in rows)


def test_details_after_gives_each_records_hash_and_keypoint_count_page_by_page() -> None:
    """What tells a smooth record, read without the descriptors: every record once, in order,
    with a kind it lacks given as none."""
    drawing = Image.new("RGB", (300, 200), "navy")
    ImageDraw.Draw(drawing).rectangle((100, 0, 140, 200), fill="gold")  # a flag: few keypoints
    detailed, flat = fingerprint_image(photo()), fingerprint_image(drawing)
    store = store_with_fingerprints({2: detailed, 3: flat, 5: detailed})
    store._db.executemany(
        "INSERT INTO fingerprints (record_id, kind, data) VALUES (?, ?, ?)",
        [(7, LOCAL_KIND, flat.local.to_bytes()), (8, PDQ_KIND, encode_pdq(flat.pdq))],
    )
    for page_rows in (1, 2, 4096):
        found = [(d.record_id, d.pdq, d.keypoints) for d in store.details_after(2, page_rows=page_rows)]
        assert found == [
            (3, flat.pdq, len(flat.local)),
            (5, detailed.pdq, len(detailed.local)),
            (7, None, len(flat.local)),
            (8, flat.pdq, 0),
        ]
    assert len(detailed.local) != len(flat.local)
