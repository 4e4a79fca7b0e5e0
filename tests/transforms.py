"""Edits that copies of images suffer in the wild, for tests: strip, crop, resize, re-encode, pad,
warp; and synthetic layouts that can be drawn twice with other details."""

from __future__ import annotations

import io
import random
import struct

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, PngImagePlugin


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def strip(data: bytes, quality: int = 85) -> bytes:
    """Decode and re-encode as JPEG: the manifest is gone and the pixels change slightly."""
    return encode(decode(data), "JPEG", quality=quality)


def crop(
    data: bytes, keep_area: float, anchor: tuple[float, float] = (0.5, 0.5)
) -> tuple[bytes, tuple[int, int, int, int]]:
    """Keep ``keep_area`` of the image (same aspect), placed at ``anchor`` (0..1 per axis).

    Returns the JPEG and the crop box in the original's pixel coordinates.
    """
    image = decode(data)
    side = keep_area**0.5
    width, height = round(image.width * side), round(image.height * side)
    left = round((image.width - width) * anchor[0])
    top = round((image.height - height) * anchor[1])
    box = (left, top, left + width, top + height)
    return encode(image.crop(box), "JPEG", quality=85), box


def resize(data: bytes, factor: float) -> bytes:
    image = decode(data)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return encode(image.resize(size, Image.Resampling.LANCZOS), "JPEG", quality=85)


def pad(data: bytes, border: int, colour: str = "white") -> bytes:
    return encode(ImageOps.expand(decode(data), border=border, fill=colour), "PNG")


def screenshot(data: bytes, scale: float = 0.8) -> tuple[bytes, tuple[int, int]]:
    """The image, scaled, inside a larger window with a title bar and text; returns PNG and offset."""
    image = decode(data)
    shown = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (shown.width + 300, shown.height + 200), "#f2f2f2")
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, 40), fill="#3b5998")
    for line in range(6):
        draw.text((shown.width + 60, 80 + 24 * line), f"comment {line}: look at this", fill="#222")
    offset = (30, 90)
    canvas.paste(shown, offset)
    return encode(canvas, "PNG"), offset


def warp(
    image: Image.Image,
    to_warped: np.ndarray,
    size: tuple[int, int],
    background: tuple[int, int, int] = (0, 0, 0),
) -> Image.Image:
    """The image under a 3x3 map onto a canvas of ``size`` (a print photographed at an angle)."""
    pixels = cv2.warpPerspective(
        np.asarray(image.convert("RGB")), to_warped, size, flags=cv2.INTER_LINEAR, borderValue=background
    )
    return Image.fromarray(pixels)


_WORDS = [
    "total",
    "north",
    "report",
    "sales",
    "index",
    "profile",
    "status",
    "garden",
    "ocean",
    "update",
    "river",
    "delta",
]


def layout(number: int, details: int, size: tuple[int, int] = (960, 720)) -> Image.Image:
    """A synthetic page: a dozen outlined boxes, each with a label, on a soft colour field. The boxes'
    places and sizes come from ``number``; ``details`` draws the background, the outlines' colours
    and widths and the labels, so two details of one number share every box corner."""
    places, drawn = random.Random(number), random.Random(1_000_003 * number + details)
    width, height = size
    # A soft, pale background: what little structure there is, the boxes and labels bring.
    noise = np.random.default_rng(drawn.randrange(2**31)).uniform(150, 230, (height // 120, width // 120, 3))
    image = Image.fromarray(cv2.resize(noise.astype(np.uint8), size, interpolation=cv2.INTER_CUBIC))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=18)
    for _ in range(12):
        box_width, box_height = places.randint(60, 260), places.randint(40, 180)
        left, top = places.randint(0, width - box_width - 1), places.randint(0, height - box_height - 1)
        colour = tuple(drawn.randrange(140) for _ in range(3))
        draw.rectangle(
            (left, top, left + box_width, top + box_height), outline=colour, width=drawn.randint(2, 5)
        )
        draw.text((left + 8, top + 8), drawn.choice(_WORDS), fill=colour, font=font)
    return image


def break_manifest(signed: bytes) -> bytes:
    """One byte changed inside the manifest: the soft-binding hash's CBOR array claims 33 items
    instead of 32, so c2pa cannot load the active manifest at all (the store names a manifest
    it does not hold)."""
    damaged = bytearray(signed)
    damaged[signed.index(b"evalue\x98\x20") + 7] = 0x21
    return bytes(damaged)


def png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, data length) of each chunk of a PNG."""
    chunks, position = [], 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        chunks.append((data[position + 4 : position + 8], position, length))
        position += 12 + length
    return chunks


def break_png_crc(data: bytes, kind: bytes) -> bytes:
    """The PNG with a wrong CRC on its first chunk of ``kind``."""
    _, offset, length = next(chunk for chunk in png_chunks(data) if chunk[0] == kind)
    damaged = bytearray(data)
    damaged[offset + 8 + length] ^= 0x01
    return bytes(damaged)


def png_with_text(data: bytes) -> bytes:
    """A stripped PNG copy with a text chunk before the pixels, as editors write one."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "shared from a phone")
    return encode(decode(data), "PNG", pnginfo=info)
