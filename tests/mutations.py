"""Malformed uploads for fuzzing, seeded: signed images with damaged manifests, chunks, headers and
tails, and metadata that is hostile or out of bounds. Shared by tests/test_fuzz.py and
scripts/fuzz_uploads.py, so that the suite and the long run send the same kinds of input."""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from tests import transforms

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Mutant:
    """One malformed input and how it was made, to name it when it fails."""

    kind: str
    data: bytes


def manifest_span(data: bytes) -> tuple[int, int] | None:
    """Where the C2PA manifest store lies in a signed JPEG (APP11 segments), PNG (caBX chunk) or
    WebP (C2PA chunk), as (start, end); None when the file carries none."""
    if data.startswith(b"\xff\xd8"):
        return _jpeg_app11_span(data)
    if data.startswith(PNG_SIGNATURE):
        return next(
            ((start, start + length) for kind, start, length in png_chunks(data) if kind == b"caBX"), None
        )
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        position = 12
        while position + 8 <= len(data):
            (length,) = struct.unpack("<I", data[position + 4 : position + 8])
            if data[position : position + 4] == b"C2PA":
                return position + 8, min(len(data), position + 8 + length)
            position += 8 + length + (length & 1)
    return None


def _jpeg_app11_span(data: bytes) -> tuple[int, int] | None:
    position, first, last = 2, None, None
    while position + 4 <= len(data) and data[position] == 0xFF and data[position + 1] != 0xDA:
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if data[position + 1] == 0xEB:
            first = position + 4 if first is None else first
            last = position + 2 + length
        position += 2 + length
    return (first, last) if first is not None and last is not None else None


def png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset of its data, data length) of each chunk of a PNG."""
    return [(kind, offset + 8, length) for kind, offset, length in transforms.png_chunks(data)]


def _flip_bits(data: bytes, rng: random.Random, span: tuple[int, int], count: int) -> bytes:
    out = bytearray(data)
    for _ in range(count):
        position = rng.randrange(span[0], span[1])
        out[position] ^= 1 << rng.randrange(8)
    return bytes(out)


def manifest_byte(data: bytes, rng: random.Random) -> bytes:
    """One bit changed inside the manifest store (the issue's 3 % of 500s)."""
    span = manifest_span(data) or (0, len(data))
    return _flip_bits(data, rng, span, 1)


def manifest_run(data: bytes, rng: random.Random) -> bytes:
    """A run of random bytes written over part of the manifest store."""
    start, end = manifest_span(data) or (0, len(data))
    at = rng.randrange(start, end)
    run = rng.randbytes(min(end - at, rng.choice([2, 16, 200])))
    return data[:at] + run + data[at + len(run) :]


def header_bytes(data: bytes, rng: random.Random) -> bytes:
    """A few bits changed in the first 64 bytes: magic, sizes, IHDR, RIFF and VP8 headers."""
    return _flip_bits(data, rng, (0, min(64, len(data))), rng.randint(1, 3))


def anywhere(data: bytes, rng: random.Random) -> bytes:
    return _flip_bits(data, rng, (0, len(data)), rng.randint(1, 8))


def truncated(data: bytes, rng: random.Random) -> bytes:
    """Cut anywhere, most often near the end (a download that stopped)."""
    keep = len(data) - rng.randint(1, 64) if rng.random() < 0.5 else rng.randrange(len(data))
    return data[: max(0, keep)]


def tail_garbage(data: bytes, rng: random.Random) -> bytes:
    return data + rng.randbytes(rng.choice([1, 7, 1000]))


def inserted(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + rng.randbytes(rng.randint(1, 32)) + data[at:]


def chunk_crc(data: bytes, rng: random.Random) -> bytes:
    """PNG: a wrong CRC on one chunk, critical or ancillary. Other formats: a length field broken."""
    chunks = png_chunks(data) if data.startswith(PNG_SIGNATURE) else []
    if not chunks:
        span = manifest_span(data) or (0, len(data))
        return _flip_bits(data, rng, (max(0, span[0] - 4), span[0] or 1), 1)
    _, start, length = rng.choice(chunks)
    return _flip_bits(data, rng, (start + length, start + length + 4), 1)


def chunk_length(data: bytes, rng: random.Random) -> bytes:
    """PNG: one chunk's length field changed, so the walk lands in the middle of the data."""
    chunks = png_chunks(data) if data.startswith(PNG_SIGNATURE) else []
    if not chunks:
        return anywhere(data, rng)
    _, start, _ = rng.choice(chunks)
    return _flip_bits(data, rng, (start - 8, start - 4), 1)


def declared_size(data: bytes, rng: random.Random) -> bytes:
    """PNG: an IHDR claiming a huge or zero size, with a correct CRC, so only the size is wrong."""
    if not data.startswith(PNG_SIGNATURE):
        return header_bytes(data, rng)
    width, height = rng.choice([(0, 10), (1, 2**31 - 1), (50_000, 50_000), (20_000, 10_000), (2**32 - 1, 1)])
    header = struct.pack(">II", width, height) + data[24:29]
    ihdr = b"IHDR" + header
    return data[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


IMAGE_MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "manifest-byte": manifest_byte,
    "manifest-run": manifest_run,
    "header-bytes": header_bytes,
    "anywhere": anywhere,
    "truncated": truncated,
    "tail-garbage": tail_garbage,
    "inserted": inserted,
    "chunk-crc": chunk_crc,
    "chunk-length": chunk_length,
    "declared-size": declared_size,
}
# The manifest is where the issue found its 500s: it gets more of the draws.
_IMAGE_WEIGHTS = {"manifest-byte": 4, "manifest-run": 2, "chunk-crc": 2}


def mutate_image(data: bytes, rng: random.Random) -> Mutant:
    names = list(IMAGE_MUTATIONS)
    name = rng.choices(names, weights=[_IMAGE_WEIGHTS.get(n, 1) for n in names])[0]
    return Mutant(name, IMAGE_MUTATIONS[name](data, rng))


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def mutate_metadata(rng: random.Random) -> Mutant:
    """Metadata text for POST /v1/generations: hostile, out of bounds, or plain wrong."""
    public = rng.choice(
        [
            _nested(rng.choice([33, 1000, 100_000 // 2])),
            '{"a": ' * 200 + "1" + "}" * 200,
            "9" * rng.choice([17, 4301, 20_000]),
            "-" + "9" * 5000,
            "NaN",
            "Infinity",
            "-Infinity",
            "1e999",
            '"\\ud800"',
            '"' + "x" * 70_000 + '"',
            '{"k": "' + "\\u0000" * 10 + '"}',
            '{"": null, "t": true, "f": 1.5e-300}',
        ]
    )
    text = rng.choice(
        [
            f'{{"model": "fuzz", "public": {{"v": {public}}}}}',
            f'{{"model": {public}}}',
            f'{{"model": "fuzz", "private": {public}}}',
            public,
            '{"model": "fuzz", "public": {"v": 1}',  # cut short
            rng.randbytes(40).decode("latin-1"),
        ]
    )
    return Mutant("metadata", text.encode())


VERIFY, BATCH, BY_CONTENT, GENERATIONS = (
    "/v1/verify",
    "/v1/verify/batch",
    "/sbr/v1/matches/byContent",
    "/v1/generations",
)
_MIME = {b"\xff\xd8": "image/jpeg", b"\x89P": "image/png", b"RI": "image/webp"}


@dataclass(frozen=True)
class Upload:
    """One request to send: multipart ``image`` parts (and ``metadata``), or a raw body for byContent."""

    endpoint: str
    kind: str
    images: tuple[bytes, ...]
    metadata: str | None = None
    content_type: str = "image/jpeg"


def uploads(originals: list[bytes], seed: int, count: int) -> list[Upload]:
    """``count`` requests to the four upload endpoints, each with at least one malformed part."""
    rng = random.Random(seed)
    plan = []
    for _ in range(count):
        original = rng.choice(originals)
        mutant = mutate_image(original, rng)
        endpoint = rng.choices([VERIFY, BATCH, BY_CONTENT, GENERATIONS], weights=[8, 3, 4, 5])[0]
        if endpoint == BATCH:
            others = [mutate_image(rng.choice(originals), rng).data for _ in range(rng.randint(0, 2))]
            plan.append(Upload(BATCH, mutant.kind, (mutant.data, original, *others)))
        elif endpoint == BY_CONTENT:
            # Mostly the original's type; sometimes another image type, as a careless client sends.
            mime = (
                _MIME.get(original[:2], "image/jpeg")
                if rng.random() < 0.8
                else rng.choice(list(_MIME.values()))
            )
            plan.append(Upload(BY_CONTENT, mutant.kind, (mutant.data,), content_type=mime))
        elif endpoint == GENERATIONS:
            choice = rng.random()
            metadata = mutate_metadata(rng).data.decode() if choice < 0.6 else '{"model": "fuzz"}'
            image = original if choice < 0.3 else mutant.data
            kind = "metadata" if choice < 0.3 else mutant.kind
            plan.append(Upload(GENERATIONS, kind, (image,), metadata))
        else:
            plan.append(Upload(VERIFY, mutant.kind, (mutant.data,)))
    return plan
