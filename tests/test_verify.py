"""The read path: signed, stripped, cropped, screenshotted, tampered and unrelated images."""

from __future__ import annotations

import dataclasses
import io
import random
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image, ImageDraw, ImageOps

from index import Thresholds, judging
from provenance.app import create_app
from provenance.config import Settings
from provenance.devkeys import KeyFiles, generate_dev_keys
from provenance.manifest import GENERATION_ASSERTION, TRAINED_ALGORITHMIC_MEDIA
from provenance.signing import ManifestSigner
from tests import transforms
from tests.conftest import Signed, api_key, as_format, fixture_bytes, register
from tests.smooth_pictures import Design
from tests.test_api import assert_problem, grille_and_panel


def verify(client: FlaskClient, data: bytes, key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = client.post("/v1/verify", data={"image": (io.BytesIO(data), "suspect")}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def polygon_iou(polygon: list[list[float]], box: tuple[int, int, int, int]) -> float:
    """Intersection over union of a polygon and an axis-aligned box, on a pixel grid."""
    width, height = box[2] + 50, box[3] + 50
    a = Image.new("1", (width, height))
    ImageDraw.Draw(a).polygon([tuple(p) for p in polygon], fill=1)
    b = Image.new("1", (width, height))
    ImageDraw.Draw(b).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=1)
    a_pixels, b_pixels = np.asarray(a), np.asarray(b)
    return float((a_pixels & b_pixels).sum() / (a_pixels | b_pixels).sum())


def test_signed_image_is_authentic(client: FlaskClient, signed_image: Signed) -> None:
    result = verify(client, signed_image.data)
    assert result["verdict"] == "authentic"
    assert result["c2pa"]["validation_state"] == "Trusted"
    assert result["c2pa"]["signed_by_us"] is True
    assert result["c2pa"]["generation_id"] == signed_image.generation_id
    assert result["c2pa"]["digital_source_type"].endswith("trainedAlgorithmicMedia")
    assert result["matches"][0]["generation_id"] == signed_image.generation_id
    assert result["matches"][0]["record"]["public"] == {"prompt_id": 7}
    assert "private" not in result["matches"][0]["record"]
    assert result["elapsed_ms"] > 0


def test_stripped_copy_is_matched(client: FlaskClient, registered_set: dict[str, Signed]) -> None:
    for name, signed in registered_set.items():
        result = verify(client, transforms.strip(signed.data, quality=60))
        assert result["c2pa"]["present"] is False
        assert result["verdict"] == "matched", name
        assert result["matches"][0]["generation_id"] == signed.generation_id
        assert {m["method"] for m in result["matches"][0]["methods"]} >= {"pdq"}


def assert_crop_matched(
    client: FlaskClient,
    registered_set: dict[str, Signed],
    keep_area: float,
    anchor: tuple[float, float],
    shrink: float,
    min_iou: float,
) -> None:
    """Each registered image's crop is matched to it, with the crop's box as its region."""
    for name, signed in registered_set.items():
        cropped, box = transforms.crop(signed.data, keep_area, anchor)
        result = verify(client, cropped if shrink == 1 else transforms.resize(cropped, shrink))
        assert result["verdict"] == "matched", name
        best = result["matches"][0]
        assert best["generation_id"] == signed.generation_id
        assert polygon_iou(best["region"], box) > min_iou, (name, best["region"], box)
        assert 0.8 * keep_area < best["coverage"] < 1.2 * keep_area


@pytest.mark.parametrize("anchor", [(0.5, 0.5), (0.0, 0.0), (1.0, 0.3)])
def test_half_crop_is_matched_with_its_region(
    client: FlaskClient, registered_set: dict[str, Signed], anchor: tuple[float, float]
) -> None:
    assert_crop_matched(client, registered_set, 0.5, anchor, shrink=1, min_iou=0.85)


# A quarter crop shows the original's details at twice their size: the rocket's top right
# corner is matched only by the look at 320 px, where they meet the original's scale.
@pytest.mark.parametrize(("anchor", "shrink"), [((0.5, 0.5), 0.6), ((1.0, 1.0), 0.6), ((1.0, 0.0), 1)])
def test_quarter_crop_is_matched_with_its_region(
    client: FlaskClient, registered_set: dict[str, Signed], anchor: tuple[float, float], shrink: float
) -> None:
    assert_crop_matched(client, registered_set, 0.25, anchor, shrink, min_iou=0.8)


# At a fifth of its size the picture is a corner of the page: for most fixtures only the large
# look finds it, which verifies each candidate where its votes cluster first.
@pytest.mark.parametrize("scale", [0.8, 0.2])
def test_screenshot_is_matched_with_the_whole_image_as_region(
    client: FlaskClient, registered_set: dict[str, Signed], scale: float
) -> None:
    for name, signed in registered_set.items():
        shot, _ = transforms.screenshot(signed.data, scale=scale)
        result = verify(client, shot)
        assert result["verdict"] == "matched", name
        best = result["matches"][0]
        assert best["generation_id"] == signed.generation_id
        width, height = best["record"]["width"], best["record"]["height"]
        assert polygon_iou(best["region"], (0, 0, width, height)) > 0.9


def test_unrelated_image_is_not_matched(client: FlaskClient, registered_set: dict[str, Signed]) -> None:
    for data in (fixture_bytes("hubble.jpg"), transforms.crop(fixture_bytes("hubble.jpg"), 0.5)[0]):
        result = verify(client, data)
        assert result["verdict"] == "no_match"
        assert all(m["verdict"] != "matched" for m in result["matches"])


def test_verify_before_anything_is_registered_finds_no_match(client: FlaskClient) -> None:
    """A fresh install: every look runs (nothing matches) against an empty store."""
    result = verify(client, fixture_bytes("rocket.jpg"))
    assert result["verdict"] == "no_match"
    assert result["matches"] == []


def test_tampered_signed_image_is_invalid_yet_found_by_search(
    client: FlaskClient, signed_image: Signed
) -> None:
    tampered = bytearray(signed_image.data)
    position = len(tampered) - 2000  # inside the JPEG entropy-coded scan, after the manifest
    tampered[position] ^= 0x01
    result = verify(client, bytes(tampered))
    assert result["c2pa"]["validation_state"] == "Invalid"
    assert result["c2pa"]["failures"]
    assert result["c2pa"]["generation_id"] is None
    assert result["c2pa"]["claimed_generation_id"] == signed_image.generation_id
    assert result["verdict"] == "matched"
    assert result["matches"][0]["generation_id"] == signed_image.generation_id


def test_private_fields_need_scope_read(
    client: FlaskClient, settings: Settings, signed_image: Signed
) -> None:
    stripped = transforms.strip(signed_image.data)
    assert "private" not in verify(client, stripped)["matches"][0]["record"]
    assert "private" not in verify(client, stripped, api_key(settings, "verify"))["matches"][0]["record"]
    private = verify(client, stripped, api_key(settings, "read"))["matches"][0]["record"]["private"]
    assert private == {"user": "u1"}


def test_batch_needs_a_key_and_answers_per_file(
    client: FlaskClient, settings: Settings, signed_image: Signed
) -> None:
    files = [
        (io.BytesIO(transforms.strip(signed_image.data)), "a.jpg"),
        (io.BytesIO(b"junk"), "b.bin"),
        (io.BytesIO(fixture_bytes("hubble.jpg")), "c.jpg"),
    ]
    assert_problem(client.post("/v1/verify/batch", data={"image": [(io.BytesIO(b"x"), "x.jpg")]}), 401)
    response = client.post(
        "/v1/verify/batch",
        data={"image": files},
        headers={"Authorization": f"Bearer {api_key(settings, 'verify')}"},
    )
    results = response.get_json()["results"]
    assert [r["file"] for r in results] == ["a.jpg", "b.bin", "c.jpg"]
    assert results[0]["verdict"] == "matched"
    assert results[1]["error"]["status"] == 415
    assert results[2]["verdict"] == "no_match"


def test_batch_of_more_than_32_is_refused(client: FlaskClient, settings: Settings) -> None:
    files = [(io.BytesIO(b"x"), f"{i}.jpg") for i in range(33)]
    response = client.post(
        "/v1/verify/batch",
        data={"image": files},
        headers={"Authorization": f"Bearer {api_key(settings, 'verify')}"},
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    ("data", "status"), [(b"", 422), (b"text" * 50, 415), (fixture_bytes("coffee.jpg")[:3000], 422)]
)
def test_bad_uploads_to_verify_are_problems(client: FlaskClient, data: bytes, status: int) -> None:
    response = client.post("/v1/verify", data={"image": (io.BytesIO(data), "x")})
    assert_problem(response, status)


def sixteen_bit_grey(image: Image.Image) -> Image.Image:
    return Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)


# Scanners and image editors write 16-bit grey PNG and TIFF, and CIELAB TIFF: Pillow cannot
# resample the first or turn the second grey as they are.
@pytest.mark.parametrize(
    ("convert", "fmt"),
    [(sixteen_bit_grey, "PNG"), (sixteen_bit_grey, "TIFF"), (lambda im: im.convert("LAB"), "TIFF")],
    ids=["16-bit-grey-png", "16-bit-grey-tiff", "cielab-tiff"],
)
def test_copies_in_uncommon_pixel_modes_are_matched(
    client: FlaskClient, registered_set: dict[str, Signed], convert, fmt: str
) -> None:
    signed = registered_set["rocket"]
    options = {"compression": "tiff_lzw"} if fmt == "TIFF" else {}
    copy = transforms.encode(convert(transforms.decode(signed.data)), fmt, **options)
    result = verify(client, copy)
    assert result["verdict"] == "matched"
    assert result["matches"][0]["generation_id"] == signed.generation_id


def test_a_16_bit_grey_png_is_registered_and_its_stripped_copy_matched(
    client: FlaskClient, signing_key: str
) -> None:
    image = sixteen_bit_grey(transforms.decode(fixture_bytes("chelsea.jpg")))
    signed = register(client, signing_key, transforms.encode(image, "PNG"), filename="scan.png")
    # Re-saved as an 8-bit JPEG the way image tools do it: the top 8 bits of each pixel.
    eight_bit = np.asarray(Image.open(io.BytesIO(signed.data))) >> 8
    result = verify(client, transforms.encode(Image.fromarray(eight_bit.astype(np.uint8)), "JPEG"))
    assert result["verdict"] == "matched"
    assert result["matches"][0]["generation_id"] == signed.generation_id


def test_exif_orientation_is_applied_before_registering_and_matching(
    client: FlaskClient, signing_key: str
) -> None:
    """A phone photo stored sideways with an orientation tag is registered as people see it."""
    upright = Image.open(io.BytesIO(fixture_bytes("coffee.jpg"))).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed after a 90 degree clockwise turn
    tagged = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(tagged, "PNG", exif=exif)
    signed = register(client, signing_key, tagged.getvalue(), filename="phone.png")

    record = client.get(
        f"/v1/generations/{signed.generation_id}", headers={"Authorization": f"Bearer {signing_key}"}
    ).get_json()
    assert (record["width"], record["height"]) == upright.size
    # The same pixels, upright and untagged, as a re-posting site would serve them.
    plain = io.BytesIO()
    upright.save(plain, "PNG")
    result = verify(client, plain.getvalue())
    assert result["matches"][0]["generation_id"] == signed.generation_id
    assert "exact_pixels" in {m["method"] for m in result["matches"][0]["methods"]}


# Registered drawing -> a different drawing that shares only a shape or a typeface with it.
COINCIDENCES = {
    "sign-cycles.jpg": "sign-ahead-only.jpg",  # the same round blue sign, another symbol
    "caption-name.jpg": "caption-map.jpg",  # captions in one typeface
    "badge-button.jpg": "badge-rooster.jpg",  # a dark-rimmed disc
    "caption-word.jpg": "caption-meme.jpg",  # letters of a word, bent by an affine map onto a caption's
}


def test_drawings_sharing_only_a_shape_or_a_typeface_are_not_matched(
    client: FlaskClient, signing_key: str
) -> None:
    registered = {
        name: register(client, signing_key, fixture_bytes(name), filename=name) for name in COINCIDENCES
    }
    strongest = 0
    for name, other in COINCIDENCES.items():
        result = verify(client, fixture_bytes(other), signing_key)  # scope read: possible matches in full
        assert result["verdict"] != "matched", other
        for match in result["matches"]:
            if match["generation_id"] == registered[name].generation_id:
                strongest = max(strongest, *(m.get("score", 0) for m in match["methods"]))
    # Keypoints do line up (enough inliers for a match on their own); the dense check tells.
    assert strongest >= Thresholds().inliers_match


def test_a_later_look_does_not_judge_a_record_again_for_the_part_already_judged(
    client: FlaskClient, signing_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drawing that shares a shape with a registered one is found by look after look; judging
    the same part of that record again, with no more inliers, cost each such never-registered
    query hundreds of milliseconds and changed no verdict (index.judging.SAME_REGION)."""
    for name in COINCIDENCES:
        register(client, signing_key, fixture_bytes(name), filename=name)
    judged: list[tuple[int, tuple[float, float, float, float], int]] = []
    judge = judging._judge_models

    def recorded(query: Any, suspect: Any, record_id: int, similarity: Any) -> Any:
        judged.append((record_id, judging._box(similarity.region) or (0, 0, 0, 0), similarity.inliers))
        return judge(query, suspect, record_id, similarity)

    monkeypatch.setattr(judging, "_judge_models", recorded)
    judgements = 0
    for other in COINCIDENCES.values():
        judged.clear()
        assert verify(client, fixture_bytes(other), signing_key)["verdict"] != "matched", other
        judgements += len(judged)
        for number, (record_id, box, inliers) in enumerate(judged):
            before = [(b, i) for r, b, i in judged[:number] if r == record_id]
            if any(judging._box_overlap(box, b) >= judging.SAME_REGION for b, _ in before):
                assert inliers > max(i for _, i in before), other
    assert judgements > len(COINCIDENCES)  # looks did judge these records


def test_mirrored_copy_of_a_calm_picture_is_confirmed_by_its_turned_back_features(
    client: FlaskClient, signing_key: str
) -> None:
    """A flat picture with one small detail has a weak PDQ hash (quality < 50): a mirrored copy's
    PDQ hit alone is only a possible match, and local features do not survive mirroring."""
    detail = transforms.decode(fixture_bytes("astronaut.jpg")).crop((150, 40, 450, 340)).resize((120, 120))
    calm = Image.new("RGB", (800, 600), "#808080")
    calm.paste(detail, (560, 60))
    signed = register(client, signing_key, transforms.encode(calm, "PNG"))
    result = verify(client, transforms.encode(ImageOps.mirror(calm), "JPEG", quality=85))
    assert result["verdict"] == "matched"
    best = result["matches"][0]
    assert best["generation_id"] == signed.generation_id
    methods = {m["method"]: m for m in best["methods"]}
    assert methods["pdq"]["confidence"] < 0.9 <= methods["local_features"]["confidence"]


def flat_discs(palette: tuple[str, ...], seed: int = 1) -> Image.Image:
    """Overlapping discs of flat colour, drawn large and scaled down: smooth edges, no corners."""
    rng = random.Random(seed)
    large = Image.new("RGB", (3200, 2400), "white")
    draw = ImageDraw.Draw(large)
    for _ in range(14):
        radius, x, y = rng.randint(150, 450), rng.randint(0, 3200), rng.randint(0, 2400)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=rng.choice(palette))
    return large.resize((800, 600), Image.Resampling.LANCZOS)


def striped_flag(colour: str) -> Image.Image:
    """Nine stripes and a cross in the canton, in one colour on white."""
    flag = Image.new("RGB", (900, 600), "white")
    draw = ImageDraw.Draw(flag)
    for stripe in range(0, 9, 2):
        draw.rectangle((0, round(stripe * 600 / 9), 900, round((stripe + 1) * 600 / 9) - 1), fill=colour)
    draw.rectangle((0, 0, 333, 333), fill=colour)
    draw.rectangle((0, 133, 333, 199), fill="white")
    draw.rectangle((133, 0, 199, 333), fill="white")
    return flag


# Crops whose keypoints, at every look, are too few or too alike to make a match (seed 1's
# crop at (0.2, 0.2) is matched by its 12 inliers since a crop's sides no longer count as
# disagreeing edges; its centre still needs the dense look).
@pytest.mark.parametrize(("seed", "anchor"), [(1, (0.5, 0.5)), (6, (1.0, 0.0))])
def test_a_crop_of_a_flat_drawing_is_placed_in_it_without_keypoints(
    client: FlaskClient, signing_key: str, seed: int, anchor: tuple[float, float]
) -> None:
    """Smooth flat shapes give keypoints too few and too alike to align a crop of them."""
    palette = ("#d01c1f", "#f2b705", "#e8702a")
    signed = register(client, signing_key, transforms.encode(flat_discs(palette, seed), "PNG"))
    cropped, box = transforms.crop(signed.data, 0.25, anchor)
    result = verify(client, cropped)
    assert result["verdict"] == "matched"
    best = result["matches"][0]
    assert best["generation_id"] == signed.generation_id
    methods = {m["method"]: m["confidence"] for m in best["methods"]}
    assert methods["dense_alignment"] >= 0.9 > methods.get("local_features", 0.0)
    assert polygon_iou(best["region"], box) > 0.9
    assert 0.2 < best["coverage"] < 0.3


@pytest.mark.parametrize(("seed", "stretch"), [(1, (1.3, 1.0)), (6, (1.0, 0.75))])
def test_a_crop_of_a_flat_drawing_stretched_to_another_format_is_placed_in_it_without_keypoints(
    client: FlaskClient, signing_key: str, seed: int, stretch: tuple[float, float]
) -> None:
    """A quarter of a flat drawing fitted into another format (stretched along one axis):
    upright at one scale it fits nowhere, stretched it fits its box. Another drawing of the
    same colours, cropped and stretched alike, is no match."""
    palette = ("#d01c1f", "#f2b705", "#e8702a")
    signed = register(client, signing_key, transforms.encode(flat_discs(palette, seed), "PNG"))

    def stretched_crop(data: bytes) -> tuple[bytes, tuple[int, int, int, int]]:
        cropped, box = transforms.crop(data, 0.25, (0.3, 0.6))
        image = transforms.decode(cropped)
        size = (round(image.width * stretch[0]), round(image.height * stretch[1]))
        return transforms.encode(image.resize(size, Image.Resampling.BILINEAR), "JPEG", quality=85), box

    own, box = stretched_crop(signed.data)
    result = verify(client, own)
    assert result["verdict"] == "matched"
    best = result["matches"][0]
    assert best["generation_id"] == signed.generation_id
    assert "dense_alignment" in {m["method"] for m in best["methods"]}
    assert polygon_iou(best["region"], box) > 0.85
    other, _ = stretched_crop(transforms.encode(flat_discs(palette, seed + 1), "PNG"))
    assert all(m["verdict"] != "matched" for m in verify(client, other)["matches"])


def drum(outline: int, fill: str) -> Image.Image:
    """A drum drawn as clip art: an ellipse on top of a cylinder, outlined ``outline`` px wide."""
    image = Image.new("RGB", (800, 800), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((150, 440, 650, 640), fill=fill, outline="black", width=outline)
    draw.rectangle((150, 260, 650, 540), fill=fill)
    draw.line((150 + outline // 2, 260, 150 + outline // 2, 540), fill="black", width=outline)
    draw.line((650 - outline // 2, 260, 650 - outline // 2, 540), fill="black", width=outline)
    draw.ellipse((150, 160, 650, 360), fill=fill, outline="black", width=outline)
    return image


def test_a_stretched_crop_of_a_drawing_does_not_match_the_same_shape_drawn_with_other_lines_and_fill(
    client: FlaskClient, signing_key: str
) -> None:
    """A stretched placement has one more free parameter than an upright one: part of a drum
    drawn with thin lines and a grey fill, stretched, fits a drum drawn with thick lines on
    white about as well as a copy would at half the preview's resolution (a false match of
    the full benchmark run); only the lines' widths at full size tell them apart."""
    register(client, signing_key, transforms.encode(drum(14, "white"), "PNG"))
    # The drum's right half below the top's far edge, and the white beside it.
    part = drum(3, "#c8c8c8").crop((420, 150, 660, 500))
    stretched = part.resize((part.width, round(part.height * 1.25)), Image.Resampling.BILINEAR)
    result = verify(client, transforms.encode(stretched, "JPEG", quality=85))
    assert all(m["verdict"] != "matched" for m in result["matches"])


def rings_on_a_page() -> Image.Image:
    """Two thin rings in the middle of a large blank page, as clip art sits on an A4 sheet."""
    page = Image.new("RGB", (1200, 1700), "white")
    draw = ImageDraw.Draw(page)
    rng = random.Random(2)
    for _ in range(2):
        x, y = rng.randint(450, 700), rng.randint(650, 900)
        draw.ellipse((x, y, x + rng.randint(30, 120), y + rng.randint(30, 120)), outline="#333333", width=2)
    return page


def test_a_crop_of_a_small_drawing_on_a_large_page_is_judged_on_the_finer_preview(
    client: FlaskClient, signing_key: str
) -> None:
    """Some thirty inliers align the crop, too few to be trusted unconfirmed. On a 256 px
    preview the rings span 5-18 px: too few structured blocks to confirm them (a possible
    match). The 512 px preview has enough, and they agree."""
    signed = register(client, signing_key, transforms.encode(rings_on_a_page(), "PNG"))
    cropped, box = transforms.crop(signed.data, 0.5)
    result = verify(client, cropped)
    assert result["verdict"] == "matched"
    best = result["matches"][0]
    assert best["generation_id"] == signed.generation_id
    (method,) = best["methods"]
    assert method["method"] == "local_features"
    assert method["score"] < 60  # inliers_unjudged: without the agreement no match
    assert method["agreement"] >= 0.9
    assert polygon_iou(best["region"], box) > 0.9


def test_records_kept_with_smaller_previews_are_still_matched(settings: Settings, signing_key: str) -> None:
    """A store registered when previews were kept at 256 px is searched after the upgrade: its
    previews are judged at that size only."""
    before = create_app(dataclasses.replace(settings, thumbnail_side=256)).test_client()
    signed = register(before, signing_key, fixture_bytes("chelsea.jpg"))
    after = create_app(settings).test_client()
    for keep_area in (0.5, 0.25):
        cropped, box = transforms.crop(signed.data, keep_area, (1.0, 1.0))
        result = verify(after, cropped)
        assert result["verdict"] == "matched"
        assert result["matches"][0]["generation_id"] == signed.generation_id
        assert polygon_iou(result["matches"][0]["region"], box) > 0.8


def test_a_crop_of_the_same_design_in_other_colours_is_not_matched(
    client: FlaskClient, signing_key: str
) -> None:
    """Flags share designs and differ in colour: grey structure lines the crop up (with few
    keypoints and without), the hue tells them apart."""
    signed = register(client, signing_key, transforms.encode(striped_flag("#0d5eaf"), "PNG"))
    own, _ = transforms.crop(signed.data, 0.25, (0.2, 0.2))
    assert verify(client, own)["matches"][0]["generation_id"] == signed.generation_id
    other, _ = transforms.crop(transforms.encode(striped_flag("#c8102e"), "PNG"), 0.25, (0.2, 0.2))
    result = verify(client, other)
    assert result["verdict"] != "matched"
    assert all(m["verdict"] != "matched" for m in result["matches"])


def cross_flag(border: str | None) -> Image.Image:
    """A white Nordic cross on red, with an optional border in another colour (as Piedmont's
    flag has a blue one around the Danish design)."""
    flag = Image.new("RGB", (900, 600), border or "#c8102e")
    draw = ImageDraw.Draw(flag)
    draw.rectangle((60, 60, 839, 539), fill="#c8102e")
    draw.rectangle((270, 60, 349, 539), fill="white")
    draw.rectangle((60, 260, 839, 339), fill="white")
    return flag


def test_a_crop_of_stripes_and_crosses_is_no_match_for_any_flag_that_holds_them(
    client: FlaskClient, signing_key: str
) -> None:
    """A crop that shows only a cross on a field lies in every flag of that design: placed in a
    registered flag without keypoints it agrees exactly, yet proves nothing of where it came
    from. The unregistered flag's crop is no match; the registered flag's own is a possible one."""
    signed = register(client, signing_key, transforms.encode(cross_flag(border="#0d5eaf"), "PNG"))
    unregistered, _ = transforms.crop(transforms.encode(cross_flag(border=None), "PNG"), 0.25, (0.35, 0.4))
    result = verify(client, unregistered, signing_key)
    assert all(m["verdict"] != "matched" for m in result["matches"])
    own, _ = transforms.crop(signed.data, 0.25, (0.35, 0.4))
    result = verify(client, own, signing_key)
    assert result["verdict"] == "possible_match"
    assert result["matches"][0]["generation_id"] == signed.generation_id


def arrow(double: bool) -> Image.Image:
    """A black arrow pointing right on white; ``double``: another head at the tail, the same
    head at the tip."""
    picture = Image.new("RGB", (900, 600), "white")
    draw = ImageDraw.Draw(picture)
    draw.rectangle((320 if double else 80, 250, 640, 350), fill="black")
    draw.polygon([(560, 120), (820, 300), (560, 480)], fill="black")
    if double:
        draw.polygon([(340, 120), (80, 300), (340, 480)], fill="black")
    return picture


def test_a_crop_of_an_arrow_s_head_is_no_match_for_every_arrow_drawn_with_it(
    client: FlaskClient, signing_key: str
) -> None:
    """A crop that shows only where a head leaves the shaft is a few straight edges between two
    flat colours: placed in a registered arrow without keypoints it agrees exactly, yet any
    arrow drawn with that head holds it. Another arrow's crop is no match; the registered
    arrow's own is a possible one."""
    signed = register(client, signing_key, transforms.encode(arrow(double=False), "PNG"))
    where = (0.95, 0.1)  # the head's upper edge, its base above the shaft, the shaft's top
    unregistered, _ = transforms.crop(transforms.encode(arrow(double=True), "PNG"), 0.25, where)
    result = verify(client, unregistered, signing_key)
    assert result["matches"] and all(m["verdict"] != "matched" for m in result["matches"])
    own, _ = transforms.crop(signed.data, 0.25, where)
    result = verify(client, own, signing_key)
    assert result["verdict"] == "possible_match"
    assert result["matches"][0]["generation_id"] == signed.generation_id


def test_two_layouts_alike_to_pdq_are_not_matched(client: FlaskClient, signing_key: str) -> None:
    """PDQ sees where an image is dark and light: a plain dark panel and a speaker grille of the
    same size share a hash; laid over each other they disagree."""
    grille, panel = grille_and_panel()
    register(client, signing_key, grille)
    result = verify(client, panel, signing_key)
    assert result["verdict"] != "matched"
    hit = result["matches"][0]["methods"][0]
    assert hit["method"] == "pdq" and hit["distance"] <= Thresholds().pdq_match
    assert hit["agreement"] < Thresholds().pdq_match_agreement


def test_a_manifest_signed_by_someone_else_is_not_ours_whatever_it_claims(
    client: FlaskClient, settings: Settings, tmp_path
) -> None:
    from provenance.devkeys import KeyFiles, generate_dev_keys

    other = Settings(data_dir=tmp_path / "other")
    keys = other.keys_directory
    generate_dev_keys(KeyFiles.under(keys, other.cert_chain, other.private_key, other.trust_anchors))
    theirs = register(create_app(other).test_client(), api_key(other, "sign"), fixture_bytes("coffee.jpg"))
    result = verify(client, theirs.data)
    assert result["c2pa"]["validation_state"] == "Valid"  # intact, but not under our root
    assert result["c2pa"]["signed_by_us"] is False
    assert result["c2pa"]["signer_status"] is None
    assert result["c2pa"]["claimed_generation_id"] == theirs.generation_id
    assert result["c2pa"]["signed_at"] is None  # the time in our assertion is only ours to claim
    assert result["verdict"] == "no_match"


def test_a_manifest_c2pa_cannot_load_is_invalid_and_the_pixels_still_searched(
    client: FlaskClient, settings: Settings, signed_image: Signed
) -> None:
    damaged = transforms.break_manifest(signed_image.data)
    result = verify(client, damaged)
    assert result["c2pa"]["present"] is True
    assert result["c2pa"]["validation_state"] == "Invalid"
    assert result["c2pa"]["failures"] and result["c2pa"]["error"]
    assert result["c2pa"]["generation_id"] is None
    assert result["verdict"] == "matched"
    assert result["matches"][0]["generation_id"] == signed_image.generation_id

    response = client.post(
        "/v1/verify/batch",
        data={"image": [(io.BytesIO(damaged), "a.jpg"), (io.BytesIO(signed_image.data), "b.jpg")]},
        headers={"Authorization": f"Bearer {api_key(settings, 'verify')}"},
    )
    assert [r["verdict"] for r in response.get_json()["results"]] == ["matched", "authentic"]


def test_a_forged_manifest_of_any_shape_is_reported_not_believed(
    client: FlaskClient, settings: Settings, tmp_path, signed_image: Signed
) -> None:
    """Anyone can sign a manifest with their own certificate and put anything JSON allows in it."""
    keys = tmp_path / "forger"
    generate_dev_keys(KeyFiles.under(keys, keys / "chain.pem", keys / "signer.key", keys / "root.pem"))
    forger = ManifestSigner(
        dataclasses.replace(
            settings, cert_chain_path=keys / "chain.pem", private_key_path=keys / "signer.key"
        )
    )
    manifest = {
        "claim_generator_info": [{"name": "forger", "version": "1"}],
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [{"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}]
                },
            },
            {"label": GENERATION_ASSERTION, "data": [signed_image.generation_id]},
        ],
    }
    forged = forger.sign(manifest, fixture_bytes("coffee.jpg"), "image/jpeg").data
    result = verify(client, forged)
    assert result["c2pa"]["present"] is True
    assert result["c2pa"]["validation_state"] != "Trusted"
    assert result["c2pa"]["claimed_generation_id"] is None
    assert result["verdict"] == "matched"


def test_pngs_viewers_show_despite_damage_are_matched(
    client: FlaskClient, signing_key: str, signed_image: Signed
) -> None:
    """libpng drops an ancillary chunk with a wrong CRC and shows the picture; so do we."""
    text_broken = transforms.break_png_crc(transforms.png_with_text(signed_image.data), b"tEXt")
    signed_png = register(
        client, signing_key, as_format(fixture_bytes("rocket.jpg"), "PNG"), filename="r.png"
    )
    manifest_broken = transforms.break_png_crc(signed_png.data, b"caBX")
    cut_after_pixels = signed_png.data[:-6]  # the IEND chunk cut in half
    for damaged, original in [
        (text_broken, signed_image),
        (manifest_broken, signed_png),
        (cut_after_pixels, signed_png),
    ]:
        result = verify(client, damaged)
        assert result["verdict"] in {"matched", "authentic"}
        assert result["matches"][0]["generation_id"] == original.generation_id


def test_a_png_cut_off_inside_its_pixels_is_still_refused(client: FlaskClient) -> None:
    png = as_format(fixture_bytes("rocket.jpg"), "PNG")
    _, offset, length = next(c for c in transforms.png_chunks(png) if c[0] == b"IDAT")
    response = client.post("/v1/verify", data={"image": (io.BytesIO(png[: offset + length // 2]), "x.png")})
    assert_problem(response, 422)


def test_a_gradient_saved_again_is_matched_through_the_service_on_either_store(
    client: FlaskClient, signing_key: str
) -> None:
    """Which records are smooth is read from the store without their descriptors (their size
    stands for their keypoint count): on SQLite and on PostgreSQL alike."""
    gradient = Design("linear", 0).picture()
    signed = register(client, signing_key, transforms.encode(gradient, "PNG"), filename="gradient.png")
    found = verify(client, transforms.encode(gradient, "JPEG", quality=92))
    assert found["verdict"] == "matched"
    assert found["matches"][0]["generation_id"] == signed.generation_id
