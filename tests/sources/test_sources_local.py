"""Path sources: walking rules (globs, dest, symlinks, special files) and their errors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.diagnostics import ReconcileError, SourceSpan
from reconciler.globs import GlobSet
from reconciler.model import PathSource
from reconciler.sources import SourceResolver

MakeResolver = Callable[..., SourceResolver]


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def paths(resolver_content: object) -> list[str]:
    return [f.path for f in resolver_content.files]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.png", "a.png", True),
        ("*.png", "x/y/a.png", True),  # no slash: base name at any depth
        ("*.png", "a.png.txt", False),
        ("img/*.png", "img/a.png", True),
        ("img/*.png", "x/img/a.png", False),  # with a slash: anchored
        ("img/*.png", "img/sub/a.png", False),
        ("img/**/*.png", "img/a.png", True),
        ("img/**/*.png", "img/s/t/a.png", True),
        ("**/cache", "a/b/cache/f", True),  # a folder match covers what is below it
        ("cache", "x/cache/f", True),
        ("?.txt", "a.txt", True),
        ("?.txt", "ab.txt", False),
        ("[ab].txt", "b.txt", True),
        ("[!ab].txt", "b.txt", False),
        ("./img/a.png", "img/a.png", True),
        ("/img/a.png", "img/a.png", True),
    ],
)
def test_glob_rules(pattern: str, path: str, expected: bool) -> None:
    assert GlobSet.compile([pattern]).matches(path) is expected


def test_folder_with_dest_include_exclude(tmp_path: Path, make_resolver: MakeResolver) -> None:
    root = tmp_path / "data"
    write(root / "b.png", b"bb")
    write(root / "a.png", b"a")
    write(root / "sub" / "c.png", b"ccc")
    write(root / "sub" / "notes.txt")
    write(root / "cache" / "d.png")
    source = PathSource(root, dest="imgs/v1", include=("*.png",), exclude=("cache",))
    content = make_resolver().resolve(source)
    assert paths(content) == ["imgs/v1/a.png", "imgs/v1/b.png", "imgs/v1/sub/c.png"]
    by_path = {f.path: f for f in content.files}
    assert by_path["imgs/v1/sub/c.png"].size == 3
    assert by_path["imgs/v1/sub/c.png"].sha256 == hashlib.sha256(b"ccc").hexdigest()
    assert by_path["imgs/v1/a.png"].local == str(root / "a.png")
    assert content.links == ()


def test_single_file_goes_under_dest_by_name(tmp_path: Path, make_resolver: MakeResolver) -> None:
    f = write(tmp_path / "labels.csv", b"a,b\n")
    content = make_resolver().resolve(PathSource(f, dest="meta"))
    assert [(e.path, e.size) for e in content.files] == [("meta/labels.csv", 4)]


def test_symlinks_followed_loops_not_and_special_files_skipped(tmp_path: Path, make_resolver: MakeResolver) -> None:
    root = tmp_path / "data"
    outside = write(tmp_path / "outside" / "big.bin", b"payload")
    write(root / "real" / "r.txt", b"r")
    os.symlink(outside, root / "linked.bin")  # symlinked file: followed
    os.symlink(outside.parent, root / "linked_dir")  # symlinked folder: walked under the link's name
    os.symlink(root, root / "real" / "loop")  # back to an ancestor: an error, unless excluded
    os.mkfifo(root / "pipe")  # special file: skipped
    content = make_resolver().resolve(PathSource(root, exclude=("real/loop",)))
    assert paths(content) == ["linked.bin", "linked_dir/big.bin", "real/r.txt"]
    linked = content.files[0]
    assert (linked.size, linked.sha256) == (7, hashlib.sha256(b"payload").hexdigest())


@pytest.mark.parametrize("link,target,why", [
    ("real/loop", ".", "a symlink loop (back to the source folder)"),
    ("real/up", "real", "a symlink loop (back to real)"),
    ("again", "real", "a symlink to real, a folder of the same source: its files would be in the dataset twice"),
])
def test_a_symlinked_folder_of_the_source_itself_is_an_error_naming_it(
    tmp_path: Path, make_resolver: MakeResolver, span: SourceSpan, link: str, target: str, why: str
) -> None:
    root = tmp_path / "data"
    write(root / "real" / "r.txt", b"r")
    os.symlink(root / target, root / link)
    with pytest.raises(ReconcileError) as info:
        make_resolver().resolve(PathSource(root, span=span))
    assert str(info.value) == (f"manifests/example.yaml:12:7: error: path source: {link} is {why}; exclude it "
                               f"(exclude: [{link}]) or remove the link")


def test_missing_path_is_one_error_line_naming_the_manifest(
    tmp_path: Path, make_resolver: MakeResolver, span: SourceSpan
) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ReconcileError) as info:
        make_resolver().resolve(PathSource(missing, span=span))
    assert str(info.value) == f"manifests/example.yaml:12:7: error: path source: {missing} does not exist"


def test_no_matching_files_is_an_error(tmp_path: Path, make_resolver: MakeResolver, span: SourceSpan) -> None:
    write(tmp_path / "d" / "a.txt")
    with pytest.raises(ReconcileError, match=r"^manifests/example.yaml:12:7: error: .*no files matching"):
        make_resolver().resolve(PathSource(tmp_path / "d", include=("*.png",), span=span))


def test_unreadable_entry_is_an_error(tmp_path: Path, make_resolver: MakeResolver, span: SourceSpan) -> None:
    """chmod 000 does not stop root, so as root the unreadable entry is a dangling symlink instead."""
    root = tmp_path / "data"
    write(root / "ok.txt")
    if os.geteuid() == 0:
        bad = root / "broken"
        os.symlink(tmp_path / "gone", bad)
        expected = f"{bad} is a dangling symlink"
    else:
        bad = write(root / "secret.txt")
        bad.chmod(0)
        expected = f"cannot read {bad}: permission denied"
    with pytest.raises(ReconcileError) as info:
        make_resolver().resolve(PathSource(root, span=span))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("manifests/example.yaml:12:7: error: path source: ")
    assert expected in message


def test_dangling_symlink_is_an_error_unless_excluded(
    tmp_path: Path, make_resolver: MakeResolver, span: SourceSpan
) -> None:
    root = tmp_path / "data"
    write(root / "ok.txt")
    os.symlink(tmp_path / "gone", root / "broken")
    with pytest.raises(ReconcileError, match="dangling symlink"):
        make_resolver().resolve(PathSource(root, span=span))
    assert paths(make_resolver().resolve(PathSource(root, exclude=("broken",)))) == ["ok.txt"]


def test_bad_dest_is_an_error(tmp_path: Path, make_resolver: MakeResolver, span: SourceSpan) -> None:
    write(tmp_path / "a.txt")
    with pytest.raises(ReconcileError, match=r"12:7: error: path source: dest '\.\./x'"):
        make_resolver().resolve(PathSource(tmp_path / "a.txt", dest="../x", span=span))


def test_resolve_all_reports_every_broken_source(tmp_path: Path, make_resolver: MakeResolver) -> None:
    write(tmp_path / "ok" / "a.txt")
    sources = [
        PathSource(tmp_path / "gone-1", span=SourceSpan("m.yaml", 9, 9)),
        PathSource(tmp_path / "ok", dest="fine", span=SourceSpan("m.yaml", 5, 9)),
        PathSource(tmp_path / "gone-2", span=SourceSpan("m.yaml", 7, 9)),
    ]
    resolver = make_resolver()
    assert [f.path for f in resolver.resolve_all(sources[1:2])[0].files] == ["fine/a.txt"]
    with pytest.raises(ReconcileError) as info:
        resolver.resolve_all(sources)
    assert str(info.value).splitlines() == [
        f"m.yaml:7:9: error: path source: {tmp_path / 'gone-2'} does not exist",
        f"m.yaml:9:9: error: path source: {tmp_path / 'gone-1'} does not exist",
    ]


def test_the_walk_yields_sorted_paths_with_their_stats_and_absolute_paths(tmp_path: Path) -> None:
    """Folders are walked where their name plus ``/`` sorts, so no sort of the whole listing is needed: names
    around ``/`` in code-point order (``-``, ``.``, ``0``) and a symlinked folder land where a sort puts them."""
    from reconciler.sources.hashcache import stat_key
    from reconciler.sources.local import walk_source

    root = tmp_path / "data"
    other = tmp_path / "elsewhere"
    for rel in ["a/f", "a.txt/x", "a-b", "a0", "b/c/d/e/f", "b/c.d/e", "b/c-d", "b/c0", "b.", "é/z", "z"]:
        write(root / rel)
    write(other / "in.bin")
    (root / "a+link").symlink_to(other, target_is_directory=True)
    walked = walk_source(root)
    rels = [f.rel for f in walked]
    assert rels == sorted(rels) and len(rels) == 12 and "a+link/in.bin" in rels
    for f in walked:
        assert f.path == os.path.join(root, f.rel) and f.key == stat_key(os.stat(f.path)) and f.size == 1
    assert walked[-1] == list(walked)[-1] and walked[1:3] == list(walked)[1:3] and list(walked.sizes()) == [1] * 12
    single = walk_source(root / "z")
    assert [(f.rel, f.path) for f in single] == [("z", str(root / "z"))]


def test_remembered_hashes_read_back_as_stored_and_a_tampered_blob_is_a_miss(tmp_path: Path) -> None:
    from reconciler.sources.hashcache import HashCache

    cache = HashCache(tmp_path / "h.sqlite3")
    hashes = [hashlib.sha256(bytes([i])).hexdigest() for i in range(5)]
    memo = cache.store_listing("src", "L", hashes)
    hit = cache.load_listing("src", "L")
    assert hit is not None and list(hit[0]) == hashes and hit[0][-1] == hashes[-1] and hit[1] == memo
    assert cache.load_listing("src", "other listing") is None
    blob = cache._db.execute("SELECT hashes FROM listings").fetchone()[0]
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    cache._db.execute("UPDATE listings SET hashes = ?", (flipped,))
    assert cache.load_listing("src", "L") is None
    cache.close()
