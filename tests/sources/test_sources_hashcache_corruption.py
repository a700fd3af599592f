"""A damaged hash cache is a miss or one line saying the file is safe to delete: never a traceback, never a wrong
hash. Each test damages a real cache file written by a real resolver, then resolves the same tree again."""

from __future__ import annotations

import hashlib
import marshal
import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.diagnostics import ReconcileError
from reconciler.model import PathSource
from reconciler.sources import HASH_DB_NAME, SourceResolver

MakeResolver = Callable[..., SourceResolver]
N_FILES = 3000  # enough for the rows and the listing blob to span many pages


def make_tree(root: Path) -> dict[str, str]:
    expected = {}
    for i in range(N_FILES):
        p = root / f"d{i % 30:02d}" / f"f{i:05d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = b"content %d" % i
        p.write_bytes(data)
        expected[f"t/{p.relative_to(root).as_posix()}"] = hashlib.sha256(data).hexdigest()
    return expected


@pytest.fixture
def warm(tmp_path: Path, make_resolver: MakeResolver) -> tuple[PathSource, dict[str, str], Path]:
    """A tree, its true hashes, and the cache database after one resolve (checkpointed: the resolver closed)."""
    root = tmp_path / "tree"
    expected = make_tree(root)
    source = PathSource(root, dest="t")
    with make_resolver() as first:
        assert {f.path: f.sha256 for f in first.resolve(source).files} == expected
    db = tmp_path / "cache" / HASH_DB_NAME
    assert db.stat().st_size > 100 * 4096 and not Path(f"{db}-wal").exists()
    return source, expected, db


def resolve_again(make_resolver: MakeResolver, source: PathSource) -> tuple[dict[str, str] | None, str | None]:
    """(content, None) when the damage was a miss, (None, message) when it was the one-line error."""
    try:
        with make_resolver() as again:
            return {f.path: f.sha256 for f in again.resolve(source).files}, None
    except ReconcileError as err:
        return None, str(err)


def assert_miss_or_one_line(result: tuple[dict[str, str] | None, str | None], expected: dict[str, str],
                            db: Path) -> str:
    content, message = result
    if message is not None:
        assert "\n" not in message and "safe to delete" in message and str(db) in message, message
        return "error"
    assert content == expected  # a miss: hashed again, never a wrong hash
    return "miss"


def sql(db: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    con = sqlite3.connect(db)
    for s in statements:
        con.execute(s, params) if params else con.execute(s)
    con.commit()
    con.close()


def test_truncated_database(warm, make_resolver: MakeResolver) -> None:
    source, expected, db = warm
    os.truncate(db, db.stat().st_size // 3)
    assert assert_miss_or_one_line(resolve_again(make_resolver, source), expected, db) == "error"


@pytest.mark.parametrize("seed", range(6))
def test_pages_overwritten_with_garbage(warm, make_resolver: MakeResolver, seed: int) -> None:
    source, expected, db = warm
    rng = random.Random(seed)
    page = 4096
    n_pages = db.stat().st_size // page
    with open(db, "r+b") as f:
        for p in rng.sample(range(1, n_pages), k=max(1, n_pages // 10)):  # page 0 holds the header
            f.seek(p * page)
            f.write(rng.randbytes(page))
    assert_miss_or_one_line(resolve_again(make_resolver, source), expected, db)


def test_garbage_header_is_the_one_line_error(warm, make_resolver: MakeResolver) -> None:
    source, expected, db = warm
    with open(db, "r+b") as f:
        f.write(b"\xff" * 100)
    assert assert_miss_or_one_line(resolve_again(make_resolver, source), expected, db) == "error"


@pytest.mark.parametrize("blob", [
    b"",
    b"\x00garbage\xff" * 50,
    marshal.dumps([1, 2, 3]),
    marshal.dumps({"a": "b"}),
    marshal.dumps(["0" * 63] * N_FILES),
    marshal.dumps(["G" * 64] * N_FILES),
    marshal.dumps(["A" * 64] * N_FILES),
    marshal.dumps([b"a" * 64] * N_FILES),
    marshal.dumps(["a" * 64] * N_FILES)[:-7],  # cut short
    b"[\xff\xff\xff\x7f",  # a list claiming 2**31 - 1 items
])
def test_bad_listing_blobs_are_misses(warm, make_resolver: MakeResolver, blob: bytes) -> None:
    source, expected, db = warm
    sql(db, "UPDATE listings SET hashes = ?", params=(blob,))
    sql(db, "DELETE FROM file_hashes")  # so that a wrong listing could not be hidden by the per-file rows
    assert assert_miss_or_one_line(resolve_again(make_resolver, source), expected, db) == "miss"


@pytest.mark.parametrize("value", [12345, 1.5, "not hashed", "F" * 64, "g" * 64, " " * 64, "a" * 63 + "\n"])
def test_listing_and_rows_of_the_wrong_type_are_misses(warm, make_resolver: MakeResolver, value: object) -> None:
    source, expected, db = warm
    sql(db, "UPDATE listings SET hashes = 7, listing = 8")
    sql(db, "UPDATE file_hashes SET sha256 = ?", params=(value,))
    assert assert_miss_or_one_line(resolve_again(make_resolver, source), expected, db) == "miss"


def test_a_blob_hash_and_text_stats_are_misses(warm, make_resolver: MakeResolver) -> None:
    source, expected, db = warm
    sql(db, "DELETE FROM listings", "UPDATE file_hashes SET sha256 = CAST(sha256 AS BLOB) WHERE path LIKE '%0.bin'",
        "UPDATE file_hashes SET ino = 'x' WHERE path LIKE '%1.bin'", "UPDATE file_hashes SET size = 'big' "
        "WHERE path LIKE '%2.bin'", "UPDATE file_hashes SET sha256 = X'00' WHERE path LIKE '%3.bin'")
    assert assert_miss_or_one_line(resolve_again(make_resolver, source), expected, db) == "miss"


def test_tables_of_another_shape_are_the_one_line_error(warm, make_resolver: MakeResolver) -> None:
    source, expected, db = warm
    sql(db, "DROP TABLE file_hashes", "CREATE TABLE file_hashes (x)", "DELETE FROM listings")
    assert assert_miss_or_one_line(resolve_again(make_resolver, source), expected, db) == "error"


def test_a_wrong_schema_version_is_the_one_line_error(warm, make_resolver: MakeResolver) -> None:
    source, expected, db = warm
    sql(db, "UPDATE meta SET value = X'31' WHERE key = 'schema'")  # the bytes of '1', not the text
    assert assert_miss_or_one_line(resolve_again(make_resolver, source), expected, db) == "error"
