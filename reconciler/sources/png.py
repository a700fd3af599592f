"""A byte-for-byte deterministic PNG encoder for 8-bit images.

Compressed PNG bytes depend on the zlib implementation and version (Pillow wheels, zlib-ng, distribution
patches), so an image written on one machine may differ from the same image written on another, which would
show up as a content change of a finalized dataset version. This encoder writes the pixel rows with filter
0 into *stored* (uncompressed) deflate blocks, whose layout the format fixes completely: the same pixels give
the same bytes everywhere, forever. No ancillary chunks (no time, gamma or text) are written. The files
are valid PNGs that every decoder reads; ClearML compresses them when it packs a dataset for upload.
"""

from __future__ import annotations

import struct
import zlib

PNG_FORMAT_VERSION = 1  # bump when the bytes this module writes change
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {"L": (0, 1), "LA": (4, 2), "RGB": (2, 3), "RGBA": (6, 4)}
_STORED_MAX = 0xFFFF


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zlib_stored(data: bytes) -> bytes:
    """A zlib stream holding ``data`` in stored deflate blocks of at most 65535 bytes."""
    out = [b"\x78\x01"]
    blocks = [data[i : i + _STORED_MAX] for i in range(0, len(data), _STORED_MAX)] or [b""]
    for index, block in enumerate(blocks):
        final = 1 if index == len(blocks) - 1 else 0
        out.append(struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF))
        out.append(block)
    out.append(struct.pack(">I", zlib.adler32(data)))
    return b"".join(out)


def encode_png(width: int, height: int, mode: str, pixels: bytes) -> bytes:
    """PNG bytes for 8-bit ``pixels`` (row-major, ``mode`` one of L, LA, RGB, RGBA as Pillow names them)."""
    if mode not in _COLOR_TYPES:
        raise ValueError(f"unsupported image mode {mode!r} (supported: {', '.join(_COLOR_TYPES)})")
    color_type, channels = _COLOR_TYPES[mode]
    stride = width * channels
    if len(pixels) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of pixels, got {len(pixels)}")
    rows = b"".join(b"\x00" + pixels[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib_stored(rows)) + _chunk(b"IEND", b"")
