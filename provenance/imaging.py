"""Untrusted image bytes -> a decoded image, within byte and pixel limits, or a clear error."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from provenance.errors import ImageTooLarge, InvalidImage, PayloadTooLarge, UnsupportedMediaType

SIGNABLE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# What a suspect copy may arrive as: screenshots and re-posts come in more containers.
READABLE_FORMATS = {**SIGNABLE_FORMATS, "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# A real PNG has a few ancillary chunks and image data in chunks of 8 KB or more (6,400 for 50 MB).
MAX_PNG_ANCILLARY_CHUNKS = 1_000
MAX_PNG_CHUNKS = 100_000
# Pillow modes that resample and convert to grey and RGB as they are.
_WORKING_MODES = frozenset(
    {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "I", "F"}
)


@dataclass(frozen=True)
class DecodedImage:
    """Original bytes, their container format, and the pixels as displayed (EXIF orientation applied)."""

    data: bytes
    format: str
    mime_type: str
    image: Image.Image

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def pixels_sha256(self) -> str:
        """Hash of the decoded RGB pixels: equal for a lossless re-encode of the same image."""
        rgb = self.image if self.image.mode == "RGB" else self.image.convert("RGB")
        digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
        digest.update(rgb.tobytes())
        return digest.hexdigest()


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    formats: dict[str, str] = READABLE_FORMATS,
    tolerate_damage: bool = False,
) -> DecodedImage:
    """Decode untrusted bytes fully, checking size limits before any pixel is decoded.

    With ``tolerate_damage``, a PNG that Pillow refuses but viewers show (an ancillary chunk with
    a wrong CRC, a tail cut off after the pixels) is decoded without the damaged chunks, as
    libpng does; the original bytes are kept. Without it, such a PNG is refused naming the damage.

    Raises:
        PayloadTooLarge, ImageTooLarge, UnsupportedMediaType, InvalidImage.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the upload has {len(data)} bytes; the limit is {max_bytes}")
    if not data:
        raise InvalidImage("the upload is empty")
    _check_png_chunk_count(data)
    try:
        image = _decode(data, max_pixels, formats)
    except (UnsupportedMediaType, InvalidImage):
        repaired, damage = _png_without_damage(data)
        if damage is None:
            raise
        if not tolerate_damage:
            raise InvalidImage(f"the PNG is damaged: {damage}") from None
        image = _decode(repaired, max_pixels, formats)
    container = image.format
    assert container is not None
    return DecodedImage(data, container, formats[container], _workable(image))


def _decode(data: bytes, max_pixels: int, formats: dict[str, str]) -> Image.Image:
    with warnings.catch_warnings():
        # Our own pixel limit replaces Pillow's global decompression-bomb warning; its error, at
        # twice Image.MAX_IMAGE_PIXELS, still comes first and is the same answer as ours.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as exc:
            raise UnsupportedMediaType("the upload is not an image in a supported format") from exc
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(f"the image declares too many pixels: {exc}") from exc
        except (
            Exception
        ) as exc:  # Pillow's parsers raise many kinds (TypeError, struct.error...) on hostile headers
            raise InvalidImage(f"the image header could not be read: {exc}") from exc
        if image.format not in formats:
            raise UnsupportedMediaType(
                f"{image.format} images are not supported; send {', '.join(sorted(formats))}"
            )
        if image.width * image.height > max_pixels:
            raise ImageTooLarge(
                f"the image has {image.width}x{image.height} pixels; the limit is {max_pixels}"
            )
        try:
            image.load()
            # In place: without an orientation tag, exif_transpose would return a full copy.
            ImageOps.exif_transpose(image, in_place=True)
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(f"the image declares too many pixels: {exc}") from exc
        except Exception as exc:  # the decoders too: a TIFF tag of the wrong type is a TypeError
            raise InvalidImage(f"the image is truncated or corrupt: {exc}") from exc
    return image


def _check_png_chunk_count(data: bytes) -> None:
    """Refuse a PNG of millions of tiny chunks before Pillow (or the repair) walks each one: a
    50 MB file of them took 20 s and 600 MB. libpng caps ancillary chunks at 1,000 likewise."""
    if not data.startswith(_PNG_SIGNATURE):
        return
    chunks = ancillary = 0
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        chunks += 1
        ancillary += bool(data[position + 4] & 0x20)
        if ancillary > MAX_PNG_ANCILLARY_CHUNKS or chunks > MAX_PNG_CHUNKS:
            raise InvalidImage(
                f"the PNG has more than {MAX_PNG_CHUNKS} chunks or {MAX_PNG_ANCILLARY_CHUNKS} ancillary ones"
            )
        if data[position + 4 : position + 8] == b"IEND":
            return
        position += 12 + length


def _png_without_damage(data: bytes) -> tuple[bytes, str | None]:
    """The PNG without the damage libpng forgives (PNG spec 5.4; libpng's default for ancillary
    chunks), and the first damage found, or None where there is none to forgive.

    Ancillary chunks (lower-case first letter: text, colour profile, our manifest's caBX) with a
    wrong CRC are dropped; a file cut off inside a chunk keeps the chunks before it and gets its
    IEND back. Critical chunks are left to Pillow: if their pixels are not all there, it says so.
    Only ancillary chunks' CRCs are computed, so that the image data is not read twice.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return data, None
    kept, damage, position = [_PNG_SIGNATURE], None, len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            damage = damage or f"it is cut off inside its {kind.decode('latin-1')} chunk"
            break
        ancillary = bool(kind[0] & 0x20)
        crc = struct.unpack(">I", data[end - 4 : end])[0]
        if ancillary and zlib.crc32(data[position + 4 : end - 4]) != crc:
            damage = damage or f"its {kind.decode('latin-1')} chunk has a wrong CRC"
        else:
            kept.append(data[position:end])
        position = end
        if kind == b"IEND":
            break
    else:
        damage = damage or "it is cut off before its IEND chunk"
    if damage is not None and not kept[-1].startswith(_PNG_IEND[:8]):
        kept.append(_PNG_IEND)
    return b"".join(kept), damage


def _workable(image: Image.Image) -> Image.Image:
    """The image in a mode that Pillow can resample and turn grey or RGB, as every fingerprint
    and preview begins by doing. 16-bit grey (PNG, TIFF) becomes the 8 bits a screen shows of
    it; CIELAB and other rare TIFF modes become RGB."""
    if image.mode in _WORKING_MODES:
        return image
    if image.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image) >> 8).astype(np.uint8), "L")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise UnsupportedMediaType(f"images in {image.mode} mode cannot be read; send RGB or grey") from exc


def thumbnail_jpeg(image: Image.Image, side: int) -> bytes:
    """A small JPEG for side-by-side display."""
    scale = min(1.0, side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # reducing_gap 1: a box average by the whole factor does for a preview, at a third of the cost.
    small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0).convert("RGB")
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80)
    return out.getvalue()
