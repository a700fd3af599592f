"""Chunks are zipped while every file's bytes are hashed against the plan: a file that changed is named."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from reconciler.clearml_backend.upload import FileChanged, _write_zip
from reconciler.model import FileEntry


def _entry(tmp: Path, path: str, planned: bytes, actual: bytes) -> FileEntry:
    local = tmp / path
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(actual)
    return FileEntry(path, len(planned), hashlib.sha256(planned).hexdigest(), str(local))


def _never() -> None:
    return None


def test_a_chunk_holds_exactly_the_planned_bytes(tmp_path: Path) -> None:
    files = [_entry(tmp_path, "a.txt", b"alpha" * 100, b"alpha" * 100), _entry(tmp_path, "img/x.png", b"\x89PNG",
                                                                           b"\x89PNG")]
    target = tmp_path / "chunk.zip"
    _write_zip(target, files, "auto", _never)
    with zipfile.ZipFile(target) as zf:
        assert zf.read("a.txt") == b"alpha" * 100 and zf.read("img/x.png") == b"\x89PNG"
        kinds = {i.filename: i.compress_type for i in zf.infolist()}
    assert kinds == {"a.txt": zipfile.ZIP_DEFLATED, "img/x.png": zipfile.ZIP_STORED}  # a PNG is stored as it is


@pytest.mark.parametrize("actual", [b"alpha!", b"alphb", b"alp"], ids=["grew", "same size", "shrank"])
def test_a_file_that_changed_after_the_plan_fails_the_chunk_and_is_named(tmp_path: Path, actual: bytes) -> None:
    changed = _entry(tmp_path, "sub/b.txt", b"alpha", actual)
    with pytest.raises(FileChanged) as err:
        _write_zip(tmp_path / "chunk.zip", [changed], "deflate", _never)
    assert "sub/b.txt" in str(err.value) and "not what the plan hashed" in str(err.value)
    assert err.value.local == changed.local


def test_a_file_that_vanished_is_named(tmp_path: Path) -> None:
    gone = FileEntry("gone.txt", 3, "0" * 64, str(tmp_path / "gone.txt"))
    with pytest.raises(FileChanged, match="gone.txt: cannot read"):
        _write_zip(tmp_path / "chunk.zip", [gone], "store", _never)


def test_a_chunk_zipped_in_memory_is_the_chunk_zipped_to_a_file(tmp_path: Path) -> None:
    import io

    files = [_entry(tmp_path, "a.txt", b"alpha" * 100, b"alpha" * 100), _entry(tmp_path, "b/c.jpg", b"\xff" * 70000,
                                                                           b"\xff" * 70000)]
    target, buffer = tmp_path / "chunk.zip", io.BytesIO()
    _write_zip(target, files, "auto", _never)
    _write_zip(buffer, files, "auto", _never)
    assert buffer.getvalue() == target.read_bytes()  # same headers, sizes and CRCs: the SDK reads either alike
