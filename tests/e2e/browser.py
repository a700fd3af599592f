"""Headless Chromium for the HTML the product writes and serves: screenshots, the DOM, console messages."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
_CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]? ?(.*)")


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a throw-away profile (nothing left running afterwards); console messages of
    the page go to stderr (``--enable-logging=stderr``)."""
    assert Path(CHROMIUM).exists(), "headless Chromium is missing: apt-get install -y chromium (see .ci/run)"
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to its console (errors, violations, uncaught exceptions), from Chromium's log."""
    return [m.group(1) for line in stderr.splitlines() if (m := _CONSOLE.search(line))]


def screenshot(url: str, shot: Path, *, size: tuple[int, int] = (1200, 2000)) -> bytes:
    """A PNG of ``url`` at ``size``, checked to be one; the page must log nothing to its console."""
    res = chromium(f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}", url)
    assert shot.is_file(), res.stderr[-2000:]
    assert console_messages(res.stderr) == [], console_messages(res.stderr)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert struct.unpack(">II", data[16:24]) == size
    return data


def dom(url: str) -> str:
    """The DOM of ``url`` after loading; the page must log nothing to its console."""
    res = chromium("--dump-dom", url)
    assert console_messages(res.stderr) == [], console_messages(res.stderr)
    return res.stdout


def colours(png: Path) -> set[tuple[int, int, int]]:
    """The RGB colours a screenshot holds (to see that a drawing is there, in its colours)."""
    from PIL import Image

    with Image.open(png) as img:
        return {c[:3] for _, c in (img.convert("RGB").getcolors(maxcolors=1 << 20) or [])}
