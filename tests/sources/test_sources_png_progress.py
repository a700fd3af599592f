"""The deterministic PNG encoder and the progress reporter."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from reconciler.sources.png import encode_png, zlib_stored
from reconciler.sources.progress import Progress


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (28, 28), (200, 150)])  # 200x150 spans several blocks
def test_png_decodes_to_the_same_pixels(mode: str, channels: int, width: int, height: int) -> None:
    pixels = np.random.default_rng(width * channels).integers(0, 256, (height, width, channels), dtype=np.uint8)
    data = encode_png(width, height, mode, pixels.tobytes())
    image = Image.open(io.BytesIO(data))
    assert (image.mode, image.size) == (mode, (width, height))
    assert image.tobytes() == pixels.tobytes()
    assert encode_png(width, height, mode, pixels.tobytes()) == data
    assert b"tIME" not in data and b"tEXt" not in data


def test_stored_zlib_stream_round_trips() -> None:
    for size in (0, 1, 65535, 65536, 200_000):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert zlib.decompress(zlib_stored(payload)) == payload


def test_png_rejects_wrong_input() -> None:
    with pytest.raises(ValueError, match="unsupported image mode 'P'"):
        encode_png(1, 1, "P", b"\x00")
    with pytest.raises(ValueError, match="expected 3 bytes"):
        encode_png(1, 1, "RGB", b"\x00")


def test_progress_prints_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress("hashing", 3, 3000, stream=out, delay=0, plain_interval=0) as bar:
        for _ in range(3):
            bar.advance(1, 1000)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("hashing: 1/3 files, 1000 B/2.9 KiB")
    assert lines[-1].startswith("hashing: 3/3 files") and lines[-1].endswith(" done")


def test_progress_is_silent_for_short_work_or_when_disabled() -> None:
    out = io.StringIO()
    with Progress("hashing", 2, stream=out, delay=60) as bar:
        bar.advance(2)
    with Progress("hashing", 2, stream=out, delay=0, enabled=False) as bar:
        bar.advance(2)
    assert out.getvalue() == ""
