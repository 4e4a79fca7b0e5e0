#!/usr/bin/env python3
"""Robustness benchmark: recall per edit family, false matches on never-registered images, latency.

Registers real photographs and illustrations (scripts/bench_corpus.py), fills the store with other
real images up to --records, then verifies edited copies of the registered images (every family
below, fixed seeds; AugLy for text, emoji, padding and screenshots) and never-registered images
with edited copies of them. Prints, per family: recall (the right record first, verdict
`matched`), the possible-match rate, false matches, and median and p95 verify latency; then the
split by stage, the index RAM per record, and the calibration margins (the strongest evidence
ever seen for a wrong record). Queries run in one process per core; latencies are per query.

Smooth pictures (synthetic gradients, soft art, flat illustrations and flags made by
tests/smooth_pictures.py, and calm real wallpapers) are registered beside them and get their own
barely-edited copies; each synthetic one's hard negative (the same design, one thing changed) is a
never-registered query.

Usage: .venv/bin/python scripts/bench_robustness.py [--registered 300] [--records 10000] [--unrelated 10000]
       [--smooth 40] [--smooth-real 20] [--near-misses 30]
       [--data-dir DIR]   # keep the registered store there and reuse it, adding what it lacks
       [--only "NAME|FAMILY" ...]   # replay chosen queries of a run on the same store
       [--save-queries DIR]   # and write them there, to look at
       [--milvus URI|embedded]   # search an index rebuilt in Milvus instead of FAISS
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import random
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from index import Calibration, FingerprintStore, MilvusIndex, SearchIndex, one_thread_per_process  # noqa: E402
from index.features import extract_local_features, verify_geometry  # noqa: E402
from index.scoring import geometry_confidence, verdict_for  # noqa: E402
from provenance import db  # noqa: E402
from provenance.config import Settings  # noqa: E402
from provenance.devkeys import KeyFiles, generate_dev_keys  # noqa: E402
from provenance.registry import GenerationRequest  # noqa: E402
from provenance.services import build_services, save_index  # noqa: E402
from provenance.verify import RecordMatch  # noqa: E402
from scripts.bench_warps import (  # noqa: E402
    LAYOUT,
    SUBJECT,
    collage,
    near_miss_query,
    near_miss_record,
    perspective,
    stretch,
)
from tests.smooth_pictures import KINDS, Design  # noqa: E402

DATA = ROOT / "bench-data"
CALM_MIN_SPREAD = 5.0  # colour_spread of a calm photo registered as a smooth picture
TILE_MIN_KEYPOINTS = 200
Transform = Callable[[Image.Image, random.Random], Image.Image]


def _augly() -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import augly.image as imaugs
    return imaugs


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def webp(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "WEBP", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def scale(image: Image.Image, factor: float) -> Image.Image:
    return image.resize(
        (max(16, round(image.width * factor)), max(16, round(image.height * factor))),
        Image.Resampling.BILINEAR,
    )


def crop(image: Image.Image, area: float, rng: random.Random, centred: bool) -> Image.Image:
    side = area**0.5
    width, height = round(image.width * side), round(image.height * side)
    x = (image.width - width) // 2 if centred else rng.randint(0, image.width - width)
    y = (image.height - height) // 2 if centred else rng.randint(0, image.height - height)
    return image.crop((x, y, x + width, y + height))


def noise(image: Image.Image, rng: random.Random) -> Image.Image:
    generator = np.random.default_rng(rng.randint(0, 2**31))
    pixels = np.asarray(image.convert("RGB"), np.float32) + generator.normal(
        0, 15, (image.height, image.width, 3)
    )
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def gamma(image: Image.Image, value: float) -> Image.Image:
    table = [round(255 * (i / 255) ** value) for i in range(256)] * 3
    return image.convert("RGB").point(table)


def rotate(image: Image.Image, degrees: float) -> Image.Image:
    return image.convert("RGB").rotate(degrees, Image.Resampling.BILINEAR, expand=True, fillcolor="black")


def meme(image: Image.Image, rng: random.Random) -> Image.Image:
    """White bands above and below with caption text, as meme generators make."""
    band = max(40, image.height // 6)
    canvas = Image.new("RGB", (image.width, image.height + 2 * band), "white")
    canvas.paste(image.convert("RGB"), (0, band))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(14, band // 2))
    draw.text((10, band // 4), "WHEN THE MODEL SAYS", fill="black", font=font)
    draw.text(
        (10, image.height + band + band // 4),
        rng.choice(["NOBODY:", "ME:", "IT'S REAL"]),
        fill="black",
        font=font,
    )
    return canvas


def overlay_text(image: Image.Image, rng: random.Random) -> Image.Image:
    return _augly().overlay_text(
        image.convert("RGB"),
        # AugLy's default text is drawn from the unseeded global random at import, so it
        # differed between worker processes and runs.
        text=[rng.randrange(1, 1000) for _ in range(5)],
        font_size=0.12,
        opacity=1.0,
        x_pos=rng.uniform(0, 0.4),
        y_pos=rng.uniform(0, 0.6),
    )


def overlay_emoji(image: Image.Image, rng: random.Random) -> Image.Image:
    return _augly().overlay_emoji(
        image.convert("RGB"),
        emoji_size=0.25,
        opacity=1.0,
        x_pos=rng.uniform(0, 0.7),
        y_pos=rng.uniform(0, 0.7),
    )


def pad(image: Image.Image, rng: random.Random) -> Image.Image:
    border = round(max(image.size) * 0.15)
    colour = rng.choice(["white", "black", "#3b5998"])
    return ImageOps.expand(image.convert("RGB"), border=border, fill=colour)


def screenshot(image: Image.Image, rng: random.Random) -> Image.Image:
    """The image inside AugLy's web or mobile page template."""
    from augly.utils import SCREENSHOT_TEMPLATES_DIR

    template = Path(SCREENSHOT_TEMPLATES_DIR) / rng.choice(["web.png", "mobile.png"])
    return _augly().overlay_onto_screenshot(
        image.convert("RGB"),
        template_filepath=str(template),
        resize_src_to_match_template=True,
        crop_src_to_fit=False,
    )


def mirrored_combo(image: Image.Image, rng: random.Random) -> Image.Image:
    """Mirrored, cropped to 60-80 % of the area anywhere, recoloured (saturation, brightness,
    contrast), sometimes overlaid with text or an emoji, and re-encoded as JPEG q60-90."""
    edited = crop(ImageOps.mirror(image.convert("RGB")), rng.uniform(0.6, 0.8), rng, centred=False)
    edited = ImageEnhance.Color(edited).enhance(rng.uniform(0.6, 1.5))
    edited = ImageEnhance.Brightness(edited).enhance(rng.uniform(0.85, 1.15))
    edited = ImageEnhance.Contrast(edited).enhance(rng.uniform(0.85, 1.15))
    if rng.random() < 0.3:
        edited = rng.choice([overlay_text, overlay_emoji])(edited, rng)
    return jpeg(edited, rng.randint(60, 90))


def mild_edit(image: Image.Image, rng: random.Random) -> Image.Image:
    """What a barely edited copy of a smooth picture goes through: resized to 60-100 % of the
    side, brightness, contrast and saturation within 10-15 %, JPEG q85-95."""
    factor = rng.uniform(0.6, 1.0)
    edited = image.convert("RGB").resize(
        (round(image.width * factor), round(image.height * factor)), Image.Resampling.BILINEAR
    )
    edited = ImageEnhance.Brightness(edited).enhance(rng.uniform(0.9, 1.1))
    edited = ImageEnhance.Contrast(edited).enhance(rng.uniform(0.9, 1.1))
    edited = ImageEnhance.Color(edited).enhance(rng.uniform(0.85, 1.15))
    return jpeg(edited, rng.randint(85, 95))


FAMILIES: dict[str, tuple[str, Transform]] = {
    "strip (lossless re-save)": ("strip", lambda im, r: im.convert("RGB")),
    "jpeg q20": ("re-encode", lambda im, r: jpeg(im, 20)),
    "webp q50": ("re-encode", lambda im, r: webp(im, 50)),
    "resize to 1/4 side": ("resize", lambda im, r: jpeg(scale(im, 0.25), 85)),
    "resize to 1/2 side": ("resize", lambda im, r: jpeg(scale(im, 0.5), 85)),
    "brightness +50%": ("colour", lambda im, r: ImageEnhance.Brightness(im).enhance(1.5)),
    "contrast -50%": ("colour", lambda im, r: ImageEnhance.Contrast(im).enhance(0.5)),
    "gamma 0.6": ("colour", lambda im, r: gamma(im, 0.6)),
    "saturation x2": ("colour", lambda im, r: ImageEnhance.Color(im).enhance(2.0)),
    "grayscale": ("colour", lambda im, r: ImageOps.grayscale(im).convert("RGB")),
    "blur r=2": ("blur", lambda im, r: im.filter(ImageFilter.GaussianBlur(2))),
    "noise sigma=15": ("noise", noise),
    "mirror": ("mirror", lambda im, r: ImageOps.mirror(im)),
    "rotate 90": ("rotate 90/180", lambda im, r: im.rotate(90, expand=True)),
    "rotate 180": ("rotate 90/180", lambda im, r: im.rotate(180)),
    "rotate 5": ("rotate <=15", lambda im, r: rotate(im, r.choice([-5, 5]))),
    "rotate 15": ("rotate <=15", lambda im, r: rotate(im, r.choice([-15, 15]))),
    "text overlay": ("overlays", overlay_text),
    "emoji overlay": ("overlays", overlay_emoji),
    "meme borders": ("overlays", meme),
    "padding 15%": ("overlays", pad),
    "screenshot": ("screenshot", screenshot),
    "crop 50% centred": ("crop 50%", lambda im, r: crop(im, 0.5, r, True)),
    "crop 50% off-centre": ("crop 50%", lambda im, r: crop(im, 0.5, r, False)),
    "crop 50% + resize + jpeg": ("crop 50%", lambda im, r: jpeg(scale(crop(im, 0.5, r, False), 0.6), 60)),
    "crop 25% centred": ("crop 25%", lambda im, r: crop(im, 0.25, r, True)),
    "crop 25% off-centre": ("crop 25%", lambda im, r: crop(im, 0.25, r, False)),
    "crop 25% + resize + jpeg": ("crop 25%", lambda im, r: jpeg(scale(crop(im, 0.25, r, False), 0.8), 60)),
    "perspective 8%": ("perspective", perspective),
    "stretch 10-30%": ("stretched", stretch),
    "crop 50% + stretch": ("stretched", lambda im, r: stretch(im, r, keep_area=0.5)),
    "crop 25% + stretch": ("stretched", lambda im, r: stretch(im, r, keep_area=0.25)),
    "collage 2x2": ("collage", lambda im, r: collage(im, r, 2, _collage_photos, load)),
    "collage 3x3": ("collage", lambda im, r: collage(im, r, 3, _collage_photos, load)),
    "mirror + crop + colour + jpeg": ("mirrored combos", mirrored_combo),
}
# Edits of the smooth registered pictures (gradients, soft art, flat illustrations, calm
# wallpapers), which the detailed families above do not touch: a copy barely edited.
SMOOTH_FAMILIES: dict[str, tuple[str, Transform]] = {
    "smooth: jpeg q92": ("smooth re-encode", lambda im, r: jpeg(im, 92)),
    "smooth: mild edit": ("smooth re-encode", mild_edit),
}
# Never-registered queries: a synthetic smooth picture's hard negative (the same design with one
# thing changed, tests.smooth_pictures), barely edited as its copies are.
HARD_NEGATIVE = "hard negative (mild edit)"
EDITS: dict[str, Transform] = {
    **{name: edit for name, (_, edit) in (FAMILIES | SMOOTH_FAMILIES).items()},
    HARD_NEGATIVE: mild_edit,
}
TARGETS = {
    "strip": 99,
    "re-encode": 99,
    "resize": 99,
    "colour": 99,
    "blur": 99,
    "noise": 99,
    "mirror": 99,
    "rotate 90/180": 99,
    "overlays": 99,
    "crop 50%": 97,
    "crop 25%": 90,
    "screenshot": 95,
    "rotate <=15": 95,
    "perspective": 90,
    "stretched": 92,
    "collage": 90,
    "mirrored combos": 90,
    "smooth re-encode": 99,
}
# The edits that near misses (bench_warps) are queried with, besides none.
NEAR_MISS_FAMILIES = ["original", "perspective 8%", "stretch 10-30%", "crop 50% + stretch", "collage 2x2"]


# Images of the corpus that reuse a drawn part of another (found among the reported false
# matches and inspected by eye, each pair side by side): a match between them is the part
# really being shared, not a false match. Reported as "shared" apart from "false".
SHARED_CONTENT = [
    ("openclipart-png-00024", "openclipart-png-07218", "the same 'Linked Image Not Found' placeholder"),
    ("openclipart-png-00197", "openclipart-png-04317", "the same grey cat, inside a number 6"),
    ("openclipart-png-01933", "openclipart-png-02602", "the same 'Free icons by Lumen Design Studio' line"),
    ("openclipart-png-01987", "openclipart-png-02089", "the same magnifying glass"),
    ("openclipart-png-02282", "openclipart-png-07229", "the same house on stilts"),
    ("openclipart-png-02763", "openclipart-png-03003", "the same pancakes, on a breakfast plate"),
    ("openclipart-png-03368", "openclipart-png-03583", "the same sandalled feet"),
    ("openclipart-png-06155", "openclipart-png-06640", "the same Union Jack, in another flag"),
    ("openclipart-png-06156", "openclipart-png-07783", "the same cycle-route sign, in a bus-lane sign"),
    ("openclipart-png-07737", "openclipart-png-07766", "the same sailing dinghy"),
    ("openclipart-png-07794", "openclipart-png-07797", "the same vehicle, mirrored and recoloured"),
    ("openclipart-png-07794", "openclipart-png-07937", "the same vehicle, recoloured"),
    ("openclipart-png-06805", "openclipart-png-07185", "the same emblem, in a coat of arms"),
    ("openclipart-png-01933", "openclipart-png-03480", "the same 'Lumen Design Studio' credit line"),
    ("openclipart-png-02602", "openclipart-png-03480", "the same 'Lumen Design Studio' credit line"),
    ("openclipart-png-02602", "openclipart-png-03098", "the same 'Lumen Design Studio' credit line"),
    ("openclipart-png-02618", "openclipart-png-03502", "the same girl's face, beside a pie chart"),
    ("openclipart-png-00345", "openclipart-png-01874", "the same two houses"),
    ("openclipart-png-01899", "openclipart-png-01914", "the same sign frame, another symbol inside"),
    ("openclipart-png-02020", "openclipart-png-02025", "the same x and green square, placed apart"),
    ("openclipart-png-02225", "openclipart-png-02340", "the same printer, recoloured"),
    ("openclipart-png-01938", "openclipart-png-02464", "the same power symbol"),
    ("openclipart-png-06961", "openclipart-png-07029", "the same sign's corner, another symbol inside"),
    ("openclipart-png-02115", "openclipart-png-02170", "the same monitor, recoloured, a keyboard added"),
    ("wesnoth-1.16-data-04790", "wesnoth-1.16-data-04870", "one mountain piece, its rock peak the same"),
    (
        "plasma-workspace-wallpapers-00028",
        "plasma-workspace-wallpapers-00029",
        "one scene, cut and coloured two ways",
    ),
]
_SHARED = {frozenset(pair[:2]) for pair in SHARED_CONTENT}


def source_of(name: str) -> str:
    """corpus/img/openclipart-png-07229.jpg#3x3s-3 -> openclipart-png-07229"""
    return Path(name.partition("#")[0]).stem


def shares_content(name: str, other: str) -> bool:
    return frozenset((source_of(name), source_of(other))) in _SHARED


def judge_wrong_matches(result: dict[str, Any], wrong_names: list[str]) -> None:
    """Split the wrong records that reached `matched` into false matches and shared content."""
    shared = [n for n in wrong_names if shares_content(str(result["name"]), n)]
    result["wrong_names"] = wrong_names
    result["shared_content"] = len(shared)
    result["false_match"] = len(shared) < len(wrong_names)


def encode_query(image: Image.Image) -> bytes:
    """Edits that already encoded (re-encodes) keep their bytes' pixels; others are saved losslessly."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


SYNTHETIC = "synthetic/"  # synthetic/linear-7: tests.smooth_pictures.Design("linear", 7)
NEGATIVE = "negative/"  # negative/linear-7: that design's hard negative, never registered


def load(name: str) -> Image.Image:
    for prefix in (SYNTHETIC, NEGATIVE):
        if name.startswith(prefix):
            kind, _, seed = name.removeprefix(prefix).rpartition("-")
            design = Design(kind, int(seed))
            return design.picture() if prefix == SYNTHETIC else design.negative(int(seed))
    return Image.open(DATA / name).convert("RGB")


def corner_count(image: Image.Image) -> int:
    """The benchmark's own measure of detail: ORB corners of contrast 10 or more that TEBLID
    describes, in a 640 px grey copy (what the service extracted until 2026-12). Fixed here, so
    that a change to the service's extractor does not change which images are queried or fill
    the store, and runs before and after it compare the same queries."""
    scale = max(image.size) / 640
    size = (max(1, round(image.width / scale)), max(1, round(image.height / scale)))
    gray = np.asarray(image.convert("L").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
    corners = cv2.ORB.create(nfeatures=6000, fastThreshold=10).detect(gray, None)
    described, _ = cv2.xfeatures2d.TEBLID.create(1.0).compute(gray, corners)
    return len(described)


def colour_spread(image: Image.Image) -> float:
    """The benchmark's own measure of a smooth picture's content: the spread (CIELAB units) of
    the colours of 8 px blocks of a 256 px copy. A plain colour field (0-1) identifies nothing,
    and the service says so; a calm wallpaper or a gradient holds 5 and more."""
    small = image.convert("RGB")
    small.thumbnail((256, 256))
    pixels = np.asarray(small, np.float32) / 255
    rows, cols = pixels.shape[0] // 8, pixels.shape[1] // 8
    lab = cv2.cvtColor(np.ascontiguousarray(pixels[: rows * 8, : cols * 8]), cv2.COLOR_RGB2LAB)
    means = lab.reshape(rows, 8, cols, 8, 3).mean(axis=(1, 3)).reshape(-1, 3)
    return float(np.sqrt(means.var(axis=0).sum()))


def has_detail(name: str, keypoints: int = 100) -> bool:
    return corner_count(load(name)) >= keypoints


def art_group(name: str) -> str:
    """corpus/img/openclipart-png-07218.jpg -> openclipart-png-072"""
    stem = Path(name).stem
    package, _, number = stem.rpartition("-")
    return f"{package}-{int(number) // 100:03d}"


# ---- registration ---------------------------------------------------------------------------


Window = tuple[float, float, float]  # left, top, side: fractions of the image


def windows() -> list[tuple[str, Window]]:
    """Tiles of a 2x2 and a 3x3 grid, the same grids shifted by half a tile both ways, then the
    2x2 grid shifted by half a tile along one axis (used only when the others do not fill the
    store). Every tile keeps at least a ninth of its image: smaller ones are mostly one flat
    shape of a drawing, which no generator publishes."""
    found: list[tuple[str, Window]] = []
    for label, grid, shift_x, shift_y in (
        ("2x2", 2, 0.0, 0.0),
        ("3x3", 3, 0.0, 0.0),
        ("2x2s", 2, 0.5, 0.5),
        ("3x3s", 3, 0.5, 0.5),
        ("2x2sx", 2, 0.5, 0.0),
        ("2x2sy", 2, 0.0, 0.5),
    ):
        side = 1 / grid
        columns, rows = grid - (shift_x > 0), grid - (shift_y > 0)
        found += [
            (f"{label}-{j * columns + i}", ((i + shift_x) * side, (j + shift_y) * side, side))
            for j in range(rows)
            for i in range(columns)
        ]
    return found


def register_all(
    settings: Settings, names: list[str], count: int, done: dict[str, str] | None = None
) -> dict[str, str]:
    """Register ``count`` images: the named ones, then tiles of them (see ``windows``).

    Tiles of one grid share no content with each other, so they are distinct real-image
    distractors; they let a few thousand corpus images fill a store of 10,000 records. Tiles
    with little detail (a margin, one word of a caption) are skipped: a generator does not
    publish near-blank images, and they would only stand in for one. ``done`` (name -> id) was
    registered by an earlier run and is kept.
    """
    registry = build_services(settings).require_registry()
    request = GenerationRequest(model="bench")
    ids: dict[str, str] = dict(done or {})
    work: list[tuple[str, Callable[[], Image.Image]]] = [(n, lambda n=n: load(n)) for n in names]
    for label, window in windows():
        work += [(f"{n}#{label}", lambda n=n, w=window: tile(load(n), w)) for n in names]
    published = settings.data_dir / "published"
    published.mkdir(exist_ok=True)
    with db.connect(settings.database) as connection:
        for name, make in work:
            if len(ids) == count:
                break
            if name in ids:
                continue
            image = make()
            if "#" in name and corner_count(image) < TILE_MIN_KEYPOINTS:
                continue
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=92)
            registration = registry.register(connection, buffer.getvalue(), request)
            ids[name] = registration.record.generation_id
            # Copies in the wild start from what we published: the signed file.
            (published / f"{registration.record.generation_id}.jpg").write_bytes(registration.signed)
            if len(ids) % 500 == 0:
                print(f"  registered {len(ids)}/{count}", file=sys.stderr, flush=True)
    return ids


def register_near_misses(settings: Settings, names: list[str]) -> dict[str, str]:
    """Register the registered side of each near miss (bench_warps)."""
    registry = build_services(settings).require_registry()
    ids: dict[str, str] = {}
    with db.connect(settings.database) as connection:
        for name in names:
            buffer = io.BytesIO()
            near_miss_record(name, load).save(buffer, "JPEG", quality=92)
            registration = registry.register(connection, buffer.getvalue(), GenerationRequest(model="bench"))
            ids[name] = registration.record.generation_id
    return ids


def register(
    settings: Settings, registered: list[str], filler: list[str], records: int
) -> tuple[dict[str, str], dict[str, str]]:
    keys = settings.keys_directory
    generate_dev_keys(KeyFiles.under(keys, settings.cert_chain, settings.private_key, settings.trust_anchors))
    started = time.perf_counter()
    ids = register_all(settings, registered, len(registered))
    filler_ids = register_all(settings, filler, max(0, records - len(registered)))
    print(f"registered in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return ids, filler_ids


def tile(image: Image.Image, window: Window) -> Image.Image:
    left, top, side = window
    x, y = round(left * image.width), round(top * image.height)
    return image.crop((x, y, x + round(side * image.width), y + round(side * image.height)))


# ---- queries --------------------------------------------------------------------------------

_verifier = None
_index: SearchIndex | None = None
_settings: Settings | None = None
_collage_photos: list[str] = []  # never-registered photos, for the other tiles of a collage
_saved_queries: Path | None = None  # where each query's bytes are written (--save-queries)


def _init_worker(
    settings: Settings, calibration: Calibration, collage_photos: list[str], saved_queries: Path | None
) -> None:
    global _verifier, _index, _settings, _collage_photos, _saved_queries
    _collage_photos, _saved_queries = collage_photos, saved_queries
    one_thread_per_process()  # one process per core, as gunicorn runs them
    _settings = settings
    services = build_services(settings, calibration)
    _verifier, _index = services.verifier, services.index


def query_file_name(name: str, family: str) -> str:
    """A file name for one query of a run: its image's name and its edit family."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{Path(name).stem}-{family}") + ".jpg"


def run_query(job: tuple[str, str, str | None, int]) -> dict[str, object]:
    name, family, expected, seed = job
    assert _verifier is not None and _settings is not None
    rng = random.Random(seed)
    published = _settings.data_dir / "published" / f"{expected}.jpg"
    if expected:
        image = Image.open(published)
    else:
        image = near_miss_query(name, load) if name.startswith((SUBJECT, LAYOUT)) else load(name)
    if family != "original":
        image = EDITS[family](image, rng)
    data = encode_query(image)
    if _saved_queries:
        (_saved_queries / query_file_name(name, family)).write_bytes(data)
    with db.connect(_settings.database) as connection:
        started = time.perf_counter()
        result = _verifier.verify(connection, data)
        elapsed = (time.perf_counter() - started) * 1000
    top = result.matches[0] if result.matches else None
    hit = result.verdict == "matched" and top is not None and top.record.generation_id == expected
    wrong = [m for m in result.matches if m.record.generation_id != expected]
    wrong_inliers = [m2.score for m in wrong for m2 in m.methods if m2.method == "local_features"]
    wrong_pdq = [m2.distance for m in wrong for m2 in m.methods if m2.method == "pdq"]
    return {
        "name": name,
        "family": family,
        "expected": expected,
        "verdict": result.verdict,
        "top": top.record.generation_id if top else None,
        "elapsed": elapsed,
        "timings": result.timings_ms,
        "false_match": any(m.verdict == "matched" for m in wrong),
        # The method each matched record's confidence came from, to tell which look found it.
        "by": [strongest_method(m) for m in result.matches if m.verdict == "matched"],
        "low_detail": bool(result.query and result.query.low_detail),
        "wrong_ids": [m.record.generation_id for m in wrong if m.verdict == "matched"],
        "wrong_inliers": max(wrong_inliers, default=0),
        "wrong_pdq": min(wrong_pdq, default=256),
        # Raw evidence per matched record, so thresholds can be re-calibrated from a saved run.
        "evidence": [
            [
                m.record.generation_id,
                next((x.score for x in m.methods if x.method == "local_features"), 0),
                next((x.agreement for x in m.methods if x.method == "local_features"), None),
                max((x.confidence for x in m.methods if x.method != "local_features"), default=0.0),
                next((x.distance for x in m.methods if x.method == "pdq"), None),
                next((x.agreement for x in m.methods if x.method == "pdq"), None),
                next((x.blocks for x in m.methods if x.method == "local_features"), None),
            ]
            for m in result.matches
        ],
        **(diagnose(image, data, expected) if expected and not hit else {}),
    }


def strongest_method(match: RecordMatch) -> str:
    return str(max(match.methods, key=lambda m: m.confidence).method)


def diagnose(image: Image.Image, data: bytes, expected: str) -> dict[str, object]:
    """Why a copy was missed: the expected record's vote rank and its best geometric evidence."""
    assert _verifier is not None and _index is not None and _settings is not None
    from provenance.imaging import decode_image
    from provenance.records import RecordStore

    calibration = _verifier.calibration

    decoded = decode_image(data, max_bytes=10**9, max_pixels=10**9).image
    with db.connect(_settings.database) as connection:
        record = RecordStore(connection).by_generation_id(expected)
        assert record is not None
        reference = FingerprintStore(connection).local_features(record.id)
    query = extract_local_features(decoded)
    retrieval = calibration.retrieval
    candidates = _index.search_local(query.descriptors[: retrieval.query_descriptors], retrieval)
    rank = next((i for i, c in enumerate(candidates) if c.record_id == record.id), None)
    geometry = verify_geometry(query, reference, calibration.ransac) if reference is not None else None
    return {
        "expected_rank": rank,
        "expected_votes": candidates[rank].votes if rank is not None else 0,
        "top_votes": candidates[0].votes if candidates else 0,
        "expected_inliers": geometry.inliers if geometry else 0,
        "expected_scale": round(geometry.scale, 3) if geometry else None,
        "query_keypoints": len(query),
        "query_size": list(decoded.size),
    }


def rescore(results: list[dict[str, Any]], calibration: Calibration, names: dict[str, str]) -> None:
    """Re-judge saved results under other local-feature thresholds (PDQ and exact stay as run).

    Approximate for recall: a run with a higher threshold would also have taken its second
    look for queries that the first look matched here.
    """
    for r in results:
        scored = sorted(
            (
                (max(geometry_confidence(inliers, agreement, calibration.thresholds), other), gid)
                for gid, inliers, agreement, other, *_ in r["evidence"]
            ),
            reverse=True,
        )
        r["top"] = scored[0][1] if scored else None
        r["verdict"] = verdict_for(scored[0][0]) if scored else "no_match"
        wrong = [
            names.get(gid, gid) for c, gid in scored if gid != r["expected"] and verdict_for(c) == "matched"
        ]
        judge_wrong_matches(r, wrong)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# The looks that run only while nothing matched (index.matching.LOOKS), each by a step it
# always times: the last of them in a query's timings is the look that found its match.
LATER_LOOKS = (
    ("smooth", "smooth"),
    ("small", "local_extract_small"),
    ("smaller", "local_extract_smaller"),
    ("dense", "dense"),
    ("large", "local_extract_large"),
    ("mirrored", "local_extract_mirrored"),
)


def found_by(result: dict[str, object]) -> str:
    """Which look found a matched copy: a later look, else the first ones (PDQ, the local
    features, turned upright), which every query runs."""
    timings = result["timings"]
    assert isinstance(timings, dict)
    ran = [look for look, step in LATER_LOOKS if step in timings]
    return ran[-1] if ran else "first looks"


def report(results: list[dict[str, object]], records: int, ram_per_record: float) -> None:
    by_family: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in results:
        kind = "near miss" if str(r["name"]).startswith((SUBJECT, LAYOUT)) else "unrelated"
        by_family[str(r["family"]) if r["expected"] else f"{kind}: {r['family']}"].append(r)
    # "low detail": queries the service itself reports as too flat to match with precision (a crop
    # of a drawing's empty background); "detailed %" is the recall over the others.
    print(
        f"\n{'family':30} {'group':14} {'n':>6} {'recall %':>9} {'target':>7} {'low detail':>10} "
        f"{'detailed %':>10} {'possible %':>10} {'false':>6} {'shared':>6} {'median ms':>10} {'p95 ms':>7}"
    )
    print("-" * 135)
    group_stats: dict[str, list[bool]] = defaultdict(list)
    groups = {name: group for name, (group, _) in (FAMILIES | SMOOTH_FAMILIES).items()}
    for family in [*groups, *sorted(f for f in by_family if f.startswith(("unrelated", "near miss")))]:
        rows = by_family.get(family, [])
        if not rows:
            continue
        group = groups.get(family, family.partition(":")[0])
        hits = [r["verdict"] == "matched" and r["top"] == r["expected"] for r in rows]
        possible = [r["verdict"] == "possible_match" for r in rows]
        group_stats[group].extend(hits)
        latencies = [float(r["elapsed"]) for r in rows]  # type: ignore[arg-type]
        detailed = [h for h, r in zip(hits, rows, strict=True) if not r.get("low_detail")]
        low_detail = len(rows) - len(detailed)
        if group in ("unrelated", "near miss"):
            recall, detailed_recall = f"{'':>9}", f"{'':>10}"
        else:
            recall = f"{100 * sum(hits) / len(rows):9.1f}"
            detailed_recall = f"{100 * sum(detailed) / max(1, len(detailed)):10.1f}"
        target = f"{TARGETS[group]:>7}" if group in TARGETS else f"{'':>7}"
        possible_rate = 100 * sum(possible) / len(rows)
        print(
            f"{family:30} {group:14} {len(rows):>6} {recall} {target} {low_detail:>10} {detailed_recall} "
            f"{possible_rate:>10.1f} "
            f"{sum(bool(r['false_match']) for r in rows):>6} "
            f"{sum(bool(r.get('shared_content')) for r in rows):>6} {statistics.median(latencies):>10.1f} "
            f"{percentile(latencies, 95):>7.1f}"
        )
    print(
        "\nby group (target): "
        + ", ".join(
            f"{g} {100 * sum(h) / len(h):.1f}% ({TARGETS[g]})" for g, h in group_stats.items() if g in TARGETS
        )
    )
    # What each look pays for: it runs for every query that nothing matched before it.
    found = Counter(
        found_by(r)
        for r in results
        if r["expected"] and r["verdict"] == "matched" and r["top"] == r["expected"]
    )
    print(
        "copies matched, by the look that found them: "
        + ", ".join(f"{k} {v}" for k, v in found.most_common())
    )
    all_latency = [float(r["elapsed"]) for r in results]  # type: ignore[arg-type]
    stages: dict[str, list[float]] = defaultdict(list)
    names: set[str] = set().union(*(r["timings"] for r in results))  # type: ignore[arg-type]
    for r in results:
        for stage in names:
            stages[stage].append(float(r["timings"].get(stage, 0.0)))  # type: ignore[union-attr]
    false_matches = sum(bool(r["false_match"]) for r in results)
    shared = sum(bool(r.get("shared_content")) for r in results)
    print(
        f"queries {len(results)}, records {records}, false matches {false_matches}, "
        f"matches of drawings that share a drawn part (SHARED_CONTENT) {shared}"
    )
    copies = [float(r["elapsed"]) for r in results if r["expected"]]  # type: ignore[arg-type]
    unrelated = [float(r["elapsed"]) for r in results if not r["expected"]]  # type: ignore[arg-type]
    print(
        f"verify latency: median {statistics.median(all_latency):.1f} ms, "
        f"p95 {percentile(all_latency, 95):.1f} ms (copies {percentile(copies, 50):.0f} / "
        f"{percentile(copies, 95):.0f}, unrelated {percentile(unrelated, 50):.0f} / "
        f"{percentile(unrelated, 95):.0f}); "
        "median by stage: " + ", ".join(f"{s} {statistics.median(v):.1f}" for s, v in stages.items())
    )
    print(f"index RAM per record: {ram_per_record:.0f} bytes")
    print(
        f"calibration: most inliers for a wrong record {max(int(r['wrong_inliers']) for r in results)}, "
        f"closest PDQ distance of a wrong record {min(int(r['wrong_pdq']) for r in results)}"
    )


@contextlib.contextmanager
def milvus_server(given: str | None) -> Iterator[str | None]:
    """The Milvus URI to search through, if any: as given, or an embedded server for the run."""
    if given != "embedded":
        yield given
        return
    from tests.milvus import MilvusCluster

    cluster = MilvusCluster.start()
    try:
        yield cluster.uri
    finally:
        cluster.stop()


def calibrated(args: argparse.Namespace) -> Calibration:
    """The service's calibration with the thresholds given on the command line instead."""
    thresholds = Calibration().thresholds
    if args.inliers_match:
        thresholds = replace(thresholds, inliers_match=args.inliers_match)
    if args.agreement:
        fewest, many = args.agreement
        thresholds = replace(thresholds, agreement_at_fewest_inliers=fewest, agreement_at_many_inliers=many)
    if args.agreement_below_match:
        thresholds = replace(thresholds, agreement_below_match=args.agreement_below_match)
    return replace(Calibration(), thresholds=thresholds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--registered", type=int, default=300, help="registered images that get edited queries"
    )
    parser.add_argument(
        "--records", type=int, default=10000, help="records in the store in all (filler included)"
    )
    parser.add_argument(
        "--unrelated", type=int, default=10000, help="never-registered queries (originals + edits)"
    )
    parser.add_argument(
        "--queried", type=int, help="edit only the first N registered images (quicker runs while tuning)"
    )
    parser.add_argument("--families", help="comma-separated subset of the edit families")
    parser.add_argument(
        "--smooth",
        type=int,
        default=40,
        help="synthetic smooth pictures registered (gradients, soft art, flat illustrations, flags); "
        "each one's hard negative is a never-registered query",
    )
    parser.add_argument(
        "--smooth-real", type=int, default=20, help="real low-detail corpus pictures registered as smooth"
    )
    parser.add_argument(
        "--rescore", type=Path, help="re-judge a --json file of an earlier run instead of running"
    )
    parser.add_argument("--inliers-match", type=int, help="the matched threshold to try (run or --rescore)")
    parser.add_argument(
        "--agreement",
        type=float,
        nargs=2,
        metavar=("AT_FEWEST", "AT_MANY"),
        help="the dense agreement shares to try (at inliers-match, 40 inliers more)",
    )
    parser.add_argument("--agreement-below-match", type=float, help="the share asked below inliers-match")
    parser.add_argument(
        "--near-misses",
        type=int,
        default=30,
        help="near misses of each kind (bench_warps), each queried 5 ways",
    )
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", type=Path, help="also write every query's result here")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME|FAMILY",
        help="ask only these queries of the run (repeatable; as a --json file names them): "
        "replays a false match or a miss on the same store with the same seed",
    )
    parser.add_argument(
        "--save-queries",
        type=Path,
        metavar="DIR",
        help="write each query as asked into DIR (NAME-FAMILY.jpg), to look at a replayed miss",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep the registered store here; an existing one is reused, registering what it lacks",
    )
    parser.add_argument(
        "--milvus",
        metavar="URI",
        help="search an index rebuilt in Milvus at URI ('embedded': start the tests' Milvus server)",
    )
    args = parser.parse_args()
    if args.save_queries:
        args.save_queries.mkdir(parents=True, exist_ok=True)
    calibration = calibrated(args)

    if args.rescore:
        saved = json.loads(args.rescore.read_text())
        if calibration != Calibration():
            rescore(saved["results"], calibration, saved["names"])
            print(f"rescored with {calibration.thresholds}")
        report(saved["results"], saved["records"], saved["ram_per_record"])
        return
    corpus_file = DATA / "corpus" / "corpus.json"
    if not corpus_file.exists():
        sys.exit("run scripts/bench_corpus.py first (it fetches the images from Debian packages)")
    corpus = json.loads(corpus_file.read_text())
    rng = random.Random(args.seed)
    photos, art = list(corpus["photos"]), list(corpus["art"])
    rng.shuffle(photos)
    # Art is split by source group (a package's files in runs of 100, which keeps an artist's
    # series together), never by image: clip-art series reuse parts across drawings, and a
    # sibling on each side of the split would be a copy, not an unrelated image.
    groups: dict[str, list[str]] = defaultdict(list)
    for name in art:
        groups[art_group(name)].append(name)
    group_order = sorted(groups)
    rng.shuffle(group_order)
    # Queried originals must carry identifying detail (>= 100 keypoints): a flat colour field or a
    # plain gradient cannot be matched with precision by any method, and the service says so
    # (`query.low_detail`). They still count as never-registered distractors.
    detailed_photos = [p for p in photos if has_detail(p)]
    registered_photos = detailed_photos[: len(detailed_photos) * 2 // 3]
    wanted_art = max(0, args.registered - len(registered_photos))
    registered_art: list[str] = []
    filler: list[str] = []
    unrelated_art: list[str] = []
    for i, group in enumerate(group_order):
        if len(registered_art) < wanted_art:
            registered_art += [n for n in groups[group] if has_detail(n)][: wanted_art - len(registered_art)]
        else:
            (filler if i % 2 else unrelated_art).extend(groups[group])
    # Smooth pictures are registered deliberately, apart from the detailed ones: synthetic ones
    # of every kind, and calm real wallpapers (low-detail photos, otherwise only distractors).
    synthetic = [f"{SYNTHETIC}{KINDS[i % len(KINDS)]}-{i // len(KINDS)}" for i in range(args.smooth)]
    calm_photos = [
        p for p in photos if p not in set(detailed_photos) and colour_spread(load(p)) >= CALM_MIN_SPREAD
    ][: args.smooth_real]
    smooth = synthetic + calm_photos
    registered = registered_photos + registered_art + smooth
    low_detail = len(photos) - len(detailed_photos) - len(calm_photos)
    print(f"{low_detail} low-detail photos are only distractors", file=sys.stderr)
    unrelated_photos = [p for p in photos if p not in set(registered_photos) | set(calm_photos)]
    # A near miss's photo is half registered: it is no longer an unrelated image, nor a collage's tile.
    near_photos = [p for p in unrelated_photos if has_detail(p)][: args.near_misses]
    unrelated_photos = [p for p in unrelated_photos if p not in set(near_photos)]
    near_misses = [SUBJECT + p for p in near_photos] + [LAYOUT + str(i) for i in range(args.near_misses)]

    with tempfile.TemporaryDirectory() as scratch, milvus_server(args.milvus) as milvus_uri:
        settings = Settings(data_dir=args.data_dir or Path(scratch), milvus_uri=milvus_uri)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        state = settings.data_dir / "bench-ids.json"
        if state.exists():
            ids, filler_ids, *near = json.loads(state.read_text())
            near_ids = near[0] if near else {}
            # Images this version registers that the reused store lacks (a family of pictures
            # added since) are registered now, beside the rest.
            missing = [n for n in registered if n not in ids]
            if missing:
                ids = register_all(settings, missing, len(ids) + len(missing), ids)
                print(f"registered {len(missing)} images the reused store lacked", file=sys.stderr)
            if len(ids) + len(filler_ids) < args.records:  # a bigger store than last time
                filler_ids = register_all(settings, filler, args.records - len(ids), filler_ids)
        else:
            ids, filler_ids = register(settings, registered, filler, args.records)
            near_ids = {}
        near_ids.update(register_near_misses(settings, [n for n in near_misses if n not in near_ids]))
        state.write_text(json.dumps([ids, filler_ids, near_ids]))
        names_by_id = {v: k for k, v in {**ids, **filler_ids, **near_ids}.items()}
        # A reused store may hold images an earlier selection registered, or the half of a photo
        # that an earlier, larger run made a near miss: they stay records, queried by no family and
        # never asked as never-registered images.
        halves = {n.removeprefix(SUBJECT) for n in near_ids if n.startswith(SUBJECT)}
        taken = set(ids) | set(filler_ids) | halves
        unrelated_photos = [p for p in unrelated_photos if p not in taken]
        unrelated = unrelated_photos + [n for n in unrelated_art if n not in taken]
        detailed_set, smooth_set = set(registered) - set(smooth), set(smooth)
        registered = [n for n in ids if n in detailed_set]
        smooth = [n for n in ids if n in smooth_set]
        if milvus_uri:
            started = time.perf_counter()
            with db.open_database(settings.database) as connection:
                MilvusIndex.rebuild_from(FingerprintStore(connection), milvus_uri, settings.milvus_collection)
            print(f"Milvus rebuild: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        services = build_services(settings)
        save_index(settings, services.index)
        records, ram = services.index.records, services.index.memory_bytes() / max(1, services.index.records)

        jobs: list[tuple[str, str, str | None, int]] = []
        chosen = set(args.families.split(",")) if args.families else set(FAMILIES) | set(SMOOTH_FAMILIES)
        for names, edits in ((registered, FAMILIES), (smooth, SMOOTH_FAMILIES)):
            for i, name in enumerate(names[: args.queried]):
                jobs += [
                    (name, family, ids[name], args.seed + i * 100 + j)
                    for j, family in enumerate(edits)
                    if family in chosen
                ]
        families = list(FAMILIES)
        for i in range(args.unrelated):
            name = unrelated[i % len(unrelated)]
            family = (
                "original" if i < len(unrelated) else families[(i // len(unrelated) * 7 + i) % len(families)]
            )
            jobs.append((name, family, None, args.seed + 10_000_000 + i))
        for i, name in enumerate(near_misses):
            jobs += [
                (name, family, None, args.seed + 20_000_000 + i * 100 + j)
                for j, family in enumerate(NEAR_MISS_FAMILIES)
            ]
        if HARD_NEGATIVE in chosen or not args.families:
            jobs += [
                (NEGATIVE + name.removeprefix(SYNTHETIC), HARD_NEGATIVE, None, args.seed + 30_000_000 + i)
                for i, name in enumerate(smooth)
                if name.startswith(SYNTHETIC)
            ]
        if args.only:
            wanted = {tuple(query.split("|", 1)) for query in args.only}
            jobs = [job for job in jobs if (job[0], job[1]) in wanted]
        print(f"{len(jobs)} queries on {args.workers} processes", file=sys.stderr)
        context = multiprocessing.get_context("spawn")  # c2pa objects must not cross a fork
        collage_photos = unrelated_photos
        initargs = (settings, calibration, collage_photos, args.save_queries)
        with context.Pool(args.workers, initializer=_init_worker, initargs=initargs) as pool:
            results = list(pool.imap_unordered(run_query, jobs, chunksize=8))
    if not results:
        print(f"{records} records registered; no queries asked")
        return
    for r in results:
        judge_wrong_matches(r, [names_by_id[i] for i in r.pop("wrong_ids")])  # type: ignore[union-attr]
    if args.json:
        saved = {"results": results, "records": records, "ram_per_record": ram, "names": names_by_id}
        args.json.write_text(json.dumps(saved))
    report(results, records, ram)


if __name__ == "__main__":
    main()
