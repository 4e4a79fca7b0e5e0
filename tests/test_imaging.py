"""Decoding untrusted uploads: whatever Pillow's parsers raise on hostile bytes is a 4xx."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image

from provenance.errors import InvalidImage
from provenance.imaging import READABLE_FORMATS, decode_image
from tests import transforms

LIMITS = {"max_bytes": 60 * 2**20, "max_pixels": 100_000_000}


def tiff_with_a_double_strip_offset() -> bytes:
    """A TIFF whose StripOffsets tag (273) claims type DOUBLE: Pillow raises TypeError."""
    out = io.BytesIO()
    Image.new("RGB", (48, 32)).save(out, "TIFF")
    data = bytearray(out.getvalue())
    (first_ifd,) = struct.unpack("<I", data[4:8])
    (entries,) = struct.unpack("<H", data[first_ifd : first_ifd + 2])
    for n in range(entries):
        at = first_ifd + 2 + 12 * n
        if struct.unpack("<H", data[at : at + 2])[0] == 273:
            data[at + 2 : at + 4] = struct.pack("<H", 12)
    return bytes(data)


def test_a_tiff_whose_decoder_raises_a_type_error_is_an_invalid_image() -> None:
    with pytest.raises(InvalidImage):
        decode_image(tiff_with_a_double_strip_offset(), formats=READABLE_FORMATS, **LIMITS)


def chunk(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_a_png_of_millions_of_tiny_chunks_is_refused_at_once() -> None:
    """50 MB of empty ancillary chunks took 20 s and 600 MB to decode and repair."""
    png = transforms.encode(Image.new("RGB", (8, 8)), "PNG")
    header, rest = png[:33], png[33:]  # signature and IHDR, then the image data and IEND
    padded = header + chunk(b"zzZz") * 2_000_000 + rest
    started = time.perf_counter()
    with pytest.raises(InvalidImage, match="chunks"):
        decode_image(padded, formats=READABLE_FORMATS, tolerate_damage=True, **LIMITS)
    assert time.perf_counter() - started < 1
    assert decode_image(header + chunk(b"zzZz") * 10 + rest, formats=READABLE_FORMATS, **LIMITS)
