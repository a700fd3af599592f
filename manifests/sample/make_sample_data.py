#!/usr/bin/env python3
"""Writes the sample dataset's images: small RGB PNGs of shapes in class folders, byte for byte reproducible.

    python manifests/sample/make_sample_data.py           # (re)write manifests/sample/data/
    python manifests/sample/make_sample_data.py --check   # exit 1 if the files on disk differ

Only the standard library is used. The PNGs hold uncompressed (stored) deflate blocks and every pixel comes
from a seeded ``random.Random``, so the bytes do not depend on the zlib build or the platform.

Layout (what shapes.yaml builds on):
    data/v1/{circle,square,triangle}/<class>_NNN.png   12 images per class: version 1.0.0
    data/v2/cross/cross_NNN.png                         12 images of a new class: added in 1.1.0
    data/v2/circle/circle_000.png                       a redrawn circle: replaces 1.0.0's file in 1.1.0
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

SIZE = 32
PER_CLASS = 12
HERE = Path(__file__).resolve().parent
Pixel = tuple[int, int, int]
Shape = Callable[[float, float, float, float], bool]  # (x, y, centre, radius) -> inside


def _circle(x: float, y: float, c: float, r: float) -> bool:
    return (x - c) ** 2 + (y - c) ** 2 <= r * r


def _square(x: float, y: float, c: float, r: float) -> bool:
    return abs(x - c) <= r * 0.8 and abs(y - c) <= r * 0.8


def _triangle(x: float, y: float, c: float, r: float) -> bool:
    top, bottom = c - r, c + r * 0.8
    if not top <= y <= bottom:
        return False
    half = (y - top) / (bottom - top) * r
    return abs(x - c) <= half


def _cross(x: float, y: float, c: float, r: float) -> bool:
    arm = r * 0.3
    return (abs(x - c) <= arm and abs(y - c) <= r) or (abs(y - c) <= arm and abs(x - c) <= r)


SHAPES: dict[str, Shape] = {"circle": _circle, "square": _square, "triangle": _triangle, "cross": _cross}


def _colour(rng: random.Random, low: int, high: int) -> Pixel:
    r, g, b = (low + int(rng.random() * (high - low)) for _ in range(3))
    return r, g, b


def draw(shape: str, seed: int) -> list[list[Pixel]]:
    """A SIZE x SIZE image: a shape of random colour, size and offset on a light random background."""
    rng = random.Random(seed)
    background, ink = _colour(rng, 190, 255), _colour(rng, 0, 150)
    radius = SIZE * (0.25 + rng.random() * 0.15)
    centre = SIZE / 2 + (rng.random() - 0.5) * 4
    inside = SHAPES[shape]
    return [
        [ink if inside(x + 0.5, y + 0.5, centre, radius) else background for x in range(SIZE)]
        for y in range(SIZE)
    ]


def _stored_zlib(data: bytes) -> bytes:
    """A zlib stream of uncompressed deflate blocks: the same bytes with any zlib."""
    out = bytearray(b"\x78\x01")
    blocks = [data[i : i + 65535] for i in range(0, len(data), 65535)] or [b""]
    for i, block in enumerate(blocks):
        final = 1 if i == len(blocks) - 1 else 0
        out += struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF) + block
    return bytes(out + struct.pack(">I", zlib.adler32(data)))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(pixels: list[list[Pixel]]) -> bytes:
    """An 8-bit RGB PNG of ``pixels`` (rows of (r, g, b))."""
    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\x00" + bytes(v for px in row for v in px) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", _stored_zlib(raw))
        + _chunk(b"IEND", b"")
    )


def sample_files() -> Iterator[tuple[str, bytes]]:
    """(path relative to this folder, PNG bytes) of every sample image, in a fixed order."""
    for index, shape in enumerate(("circle", "square", "triangle")):
        for i in range(PER_CLASS):
            yield f"data/v1/{shape}/{shape}_{i:03d}.png", png(draw(shape, index * 1000 + i))
    for i in range(PER_CLASS):
        yield f"data/v2/cross/cross_{i:03d}.png", png(draw("cross", 3000 + i))
    yield "data/v2/circle/circle_000.png", png(draw("circle", 9000))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write data/ into (default: here)")
    args = parser.parse_args(argv)
    differ = []
    for rel, data in sample_files():
        target = args.out / rel
        if args.check:
            if not target.is_file() or target.read_bytes() != data:
                differ.append(rel)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for rel in differ:
        print(f"differs: {rel}", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
