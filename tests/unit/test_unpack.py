"""A chunk's small files into a staging tree (reconciler.unpack): what is read from the zip is checked before it is
written, and the forked helpers give the same result as unpacking here, pass errors on, and leave no process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from reconciler import unpack as unpacking
from reconciler.clearml_backend import BackendError
from reconciler.model import StoredFile
from reconciler.sources.hashcache import stat_key
from reconciler.unpack import unpack

DATA = {"a/1.txt": b"one" * 100, "a/b/2.bin": os.urandom(3000), "3.txt": b"", "c/4.txt": b"four"}


def _entry(path: str, data: bytes) -> StoredFile:
    return StoredFile(path, len(data), hashlib.sha256(data).hexdigest(), "v1", "data")


def _chunk(path: Path, members: dict[str, bytes], compression: int) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for rel, data in members.items():
            zf.writestr(rel, data)
    return path


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
@pytest.mark.parametrize("in_memory", [True, False])
def test_members_are_written_with_their_stats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: int,
                                              in_memory: bool) -> None:
    if not in_memory:
        monkeypatch.setattr(unpacking, "IN_MEMORY", 0)  # read through ZipFile from the file
    files = [_entry(p, d) for p, d in DATA.items()]
    source = _chunk(tmp_path / "c.zip", DATA, compression)
    reported: list[tuple[int, int]] = []
    tree = tmp_path / "tree"
    keys = unpack(source, files, [3, 0, 1], "chunk", str(tree), lambda n, b: reported.append((n, b)))
    got = {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    assert got == {f.path: DATA[f.path] for f in (files[3], files[0], files[1])}
    assert list(keys) == [k for i in (3, 0, 1) for k in stat_key(os.stat(tree / files[i].path))]
    assert reported == [(3, 4 + 300 + 3000)]  # one report at the end (fewer files than REPORT_EVERY)


def test_a_member_missing_different_or_too_large_is_refused_before_it_is_written(tmp_path: Path) -> None:
    files = [_entry("x.txt", b"abc")]
    for name, members, match in [
        ("missing", {"y.txt": b"abc"}, "lacks x.txt"),
        ("other", {"x.txt": b"abd"}, "does not match the version's file list"),
        ("larger", {"x.txt": b"abc" * 1_000_000}, r"\(4 bytes"),  # read no further than one byte past the record
    ]:
        for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            tree = tmp_path / f"{name}-{compression}"
            with pytest.raises(BackendError, match=match):
                unpack(_chunk(tmp_path / f"{name}.zip", members, compression), files, [0], "chunk", str(tree),
                       lambda n, b: None)
            assert not (tree / "x.txt").exists()
    (tmp_path / "not.zip").write_bytes(b"not a zip")
    with pytest.raises(zipfile.BadZipFile):
        unpack(tmp_path / "not.zip", files, [0], "chunk", str(tmp_path / "t"), lambda n, b: None)


# The helpers fork, so they are used only from a process that runs no other thread (never a test runner's
# worker): this runs in a fresh interpreter.
HELPERS = """
import hashlib, json, os, sys, threading, zipfile
from array import array
from pathlib import Path
from reconciler.clearml_backend import BackendError
from reconciler.model import StoredFile
from reconciler.sources.hashcache import stat_key
from reconciler.unpack import Helpers, unpack

root = Path(sys.argv[1])
data = {f"d{i % 3}/f{i}.bin": os.urandom(100 + i) for i in range(9000)}
files = [StoredFile(p, len(d), hashlib.sha256(d).hexdigest(), "v1", "data") for p, d in data.items()]
halves = [array("q", range(0, 4500)), array("q", range(4500, 9000))]
for k, half in enumerate(halves):
    with zipfile.ZipFile(root / f"{k}.zip", "w") as zf:
        for i in half:
            zf.writestr(files[i].path, data[files[i].path])
seventh = data[files[7].path]
(root / "bad.zip").write_bytes((root / "0.zip").read_bytes().replace(seventh, bytes(len(seventh))))

helpers = Helpers.start(files, 2)
assert helpers is not None, "no helper started"
progress = []
results = {}

def run(k):
    tree = str(root / f"tree{k}")
    results[k] = helpers.unpack(root / f"{k}.zip", halves[k], "chunk", tree, lambda n, b: progress.append(n))

threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
for t in threads: t.start()
for t in threads: t.join()
same = all(list(results[k]) == [x for i in halves[k] for x in stat_key(os.stat(root / f"tree{k}" / files[i].path))]
           for k in (0, 1))
contents = all((root / f"tree{k}" / files[i].path).read_bytes() == data[files[i].path]
               for k in (0, 1) for i in halves[k])
try:
    helpers.unpack(root / "bad.zip", halves[0], "chunk 0", str(root / "tree-bad"), lambda n, b: None)
    error = None
except BackendError as err:
    error = str(err)
# a helper that dies: its chunk comes back to be unpacked here, the other helper goes on
helpers._idle[-1].kill()
lost = helpers.unpack(root / "1.zip", halves[1], "chunk", str(root / "tree-lost"), lambda n, b: None)
again = helpers.unpack(root / "1.zip", halves[1], "chunk", str(root / "tree-again"), lambda n, b: None)
helpers.close()
try:
    os.waitpid(-1, os.WNOHANG)
    children = "some"
except ChildProcessError:
    children = "none"
print(json.dumps({"same": same, "contents": contents, "progress": sum(progress), "reports": len(progress),
                  "error": error, "lost": lost is None, "again": again is not None and len(again) == 5 * 4500,
                  "children": children}))
"""


def test_helpers_unpack_as_here_pass_errors_on_and_leave_no_process(tmp_path: Path) -> None:
    script = tmp_path / "helpers.py"
    script.write_text(textwrap.dedent(HELPERS))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr
    import json

    got = json.loads(proc.stdout)
    assert got["same"] and got["contents"]
    assert got["progress"] == 9000 and got["reports"] == 4  # every 4,096 files, then the rest of each chunk
    assert got["error"].startswith("error: d1/f7.bin in chunk 0 does not match the version's file list (107 bytes")
    assert got["lost"] and got["again"]
    assert got["children"] == "none"
