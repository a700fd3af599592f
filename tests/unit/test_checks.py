"""Every built-in check rule passes on good files and fails on bad ones, on real files in a temporary folder;
conditions, severities, overrides and the stored form behave as documented."""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from reconciler.checks import (
    CheckInput,
    VersionChecks,
    checks_from_json,
    checks_to_json,
    evaluate_check,
    parse_condition,
    ui_rows,
)
from reconciler.diagnostics import SourceSpan
from reconciler.model import CheckSpec, Content, FileEntry, VersionKey, freeze_json

V = VersionKey("p", "ds", "1.0.0")


def write(root: Path, files: dict[str, bytes]) -> Content:
    entries = {}
    for rel, data in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        entries[rel] = FileEntry(rel, len(data), hashlib.sha256(data).hexdigest(), str(path))
    return Content(entries)


def png(width: int = 4, height: int = 3, mode: str = "RGB") -> bytes:
    import io

    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def check(rule: str, error_if: str | None = None, warn_if: str | None = None, severity: str = "error",
          **params: Any) -> CheckSpec:
    return CheckSpec(f"my-{rule}", rule, severity, error_if, warn_if, freeze_json(params), SourceSpan("m.yaml", 9, 5))


def run(spec: CheckSpec, content: Content, parent: Content | None = None,
        others: dict[str, Content] | None = None) -> Any:
    return evaluate_check(spec, CheckInput(V, content, parent, others or {}, workers=2))


# --- conditions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "measure", "holds"), [
    (">5", 6, True), (">5", 5, False), (">=5", 5, True), ("<10", 9, True), ("!=0", 0, False), ("==3", 3, True),
    (">1KiB", 1025, True), (">1KiB", 1024, False), (">=2MB", 2_000_000, True), (">2.5%", 2.6, True),
])
def test_conditions(text: str, measure: float, holds: bool) -> None:
    assert parse_condition(text).holds(measure) is holds


def test_a_bad_condition_is_refused() -> None:
    with pytest.raises(ValueError, match="not a condition"):
        parse_condition("more than 5")


# --- counts and sizes --------------------------------------------------------------------------------------


def test_files_and_bytes(tmp_path: Path) -> None:
    content = write(tmp_path, {"a.txt": b"abc", "b.txt": b"de"})
    assert run(check("files", error_if="<2"), content).status == "pass"
    failed = run(check("files", error_if="<3"), content)
    assert failed.status == "fail" and failed.measure == 2 and failed.threshold == "<3"
    assert run(check("bytes", error_if=">5"), content).status == "pass"
    assert run(check("bytes", error_if=">4"), content).status == "fail"


def test_largest_file(tmp_path: Path) -> None:
    content = write(tmp_path, {"small.bin": b"x", "big.bin": b"x" * 2048})
    assert run(check("largest_file", error_if=">4KiB"), content).status == "pass"
    failed = run(check("largest_file", error_if=">1KiB"), content)
    assert failed.status == "fail" and failed.offending == ("big.bin",) and failed.measure == 2048


def test_empty_files(tmp_path: Path) -> None:
    assert run(check("empty_files"), write(tmp_path / "ok", {"a.txt": b"a"})).status == "pass"
    failed = run(check("empty_files"), write(tmp_path / "bad", {"a.txt": b"a", "b.txt": b"", "c/d.txt": b""}))
    assert failed.status == "fail" and failed.offending == ("b.txt", "c/d.txt") and failed.offending_count == 2
    assert failed.span == SourceSpan("m.yaml", 9, 5) and "b.txt" in failed.message


def test_extensions(tmp_path: Path) -> None:
    spec = check("extensions", allowed=[".png", "json"])
    assert run(spec, write(tmp_path / "ok", {"a.png": b"1", "b.JSON": b"{}"})).status == "pass"
    failed = run(spec, write(tmp_path / "bad", {"a.png": b"1", "notes.txt": b"2", "README": b"3"}))
    assert failed.status == "fail" and failed.offending == ("README", "notes.txt")


def classes(root: Path, counts: dict[str, int]) -> Content:
    return write(root, {f"train/{cls}/{i}.png": f"{cls}{i}".encode() for cls, n in counts.items() for i in range(n)})


def test_class_samples(tmp_path: Path) -> None:
    spec = check("class_samples", min=2, max=4)
    assert run(spec, classes(tmp_path / "ok", {"cat": 2, "dog": 4})).status == "pass"
    failed = run(spec, classes(tmp_path / "bad", {"cat": 1, "dog": 3, "eel": 5}))
    assert failed.status == "fail" and failed.offending == ("train/cat", "train/eel")


def test_class_imbalance(tmp_path: Path) -> None:
    spec = check("class_imbalance", error_if=">3")
    assert run(spec, classes(tmp_path / "ok", {"cat": 2, "dog": 6})).status == "pass"
    failed = run(spec, classes(tmp_path / "bad", {"cat": 1, "dog": 4}))
    assert failed.status == "fail" and failed.measure == 4 and failed.offending == ("train/cat", "train/dog")


# --- images --------------------------------------------------------------------------------------------------


def test_images_decodable(tmp_path: Path) -> None:
    good = png()
    assert run(check("images"), write(tmp_path / "ok", {"a.png": good, "b.jpg": png(mode="L")[:0] or good})
               ).status == "pass"
    failed = run(check("images"), write(tmp_path / "bad", {"a.png": good, "cut.png": good[: len(good) // 2],
                                                            "text.jpg": b"not an image"}))
    assert failed.status == "fail" and failed.offending == ("cut.png", "text.jpg")
    assert "not decodable" in failed.message


def test_image_bounds_and_modes(tmp_path: Path) -> None:
    spec = check("images", min_width=4, max_height=3, modes=["RGB"])
    assert run(spec, write(tmp_path / "ok", {"a.png": png(4, 3)})).status == "pass"
    failed = run(spec, write(tmp_path / "bad", {"narrow.png": png(2, 3), "tall.png": png(4, 9),
                                                 "gray.png": png(4, 3, "L"), "fine.png": png(5, 2)}))
    assert failed.offending == ("gray.png", "narrow.png", "tall.png")


def test_images_in_parallel_find_every_bad_file(tmp_path: Path) -> None:
    files = {f"img/{i:03}.png": png() for i in range(100)}
    files["img/050.png"] = b"broken"
    failed = run(check("images"), write(tmp_path, files))
    assert failed.offending == ("img/050.png",)


# --- duplicates and leakage -------------------------------------------------------------------------------


def test_duplicates(tmp_path: Path) -> None:
    assert run(check("duplicates"), write(tmp_path / "ok", {"a": b"1", "b": b"2", "e1": b"", "e2": b""})
               ).status == "pass"
    failed = run(check("duplicates"), write(tmp_path / "bad", {"a": b"1", "b": b"2", "c": b"1", "d/e": b"1"}))
    assert failed.offending == ("c", "d/e") and "same content as a" in failed.message


def test_leakage_across_splits(tmp_path: Path) -> None:
    spec = check("leakage", splits={"train": "train/**", "test": "test/**"})
    assert run(spec, write(tmp_path / "ok", {"train/a": b"1", "test/b": b"2", "train/c": b"2x"})).status == "pass"
    failed = run(spec, write(tmp_path / "bad", {"train/a": b"1", "train/b": b"2", "test/x": b"2", "test/y": b"3"}))
    assert failed.offending == ("test/x", "train/b") and "content also in" in failed.message


def test_leakage_against_another_dataset(tmp_path: Path) -> None:
    other = write(tmp_path / "other", {"eval/1": b"secret"})
    spec = check("leakage", datasets=["p/eval@1.0.0"])
    assert run(spec, write(tmp_path / "ok", {"a": b"fine"}), others={"p/eval@1.0.0": other}).status == "pass"
    failed = run(spec, write(tmp_path / "bad", {"a": b"secret"}), others={"p/eval@1.0.0": other})
    assert failed.offending == ("a",)
    missing = run(spec, write(tmp_path / "x", {"a": b"1"}))
    assert missing.status == "fail" and "not a version in the manifests" in missing.message


# --- annotations ----------------------------------------------------------------------------------------------

SCHEMA = {"type": "object", "required": ["label"], "properties": {"label": {"type": "string"},
                                                                    "box": {"type": "array", "maxItems": 4}}}


def test_annotations_json_jsonl_yaml_against_a_schema(tmp_path: Path) -> None:
    spec = check("annotations", glob=["*.json", "*.jsonl", "*.yaml"], schema=SCHEMA)
    ok = {"a.json": b'{"label": "cat"}', "b.jsonl": b'{"label": "x"}\n\n{"label": "y"}\n',
          "c.yaml": b"label: dog\nbox: [1, 2, 3, 4]\n", "ignored.txt": b"nonsense"}
    assert run(spec, write(tmp_path / "ok", ok)).status == "pass"
    bad = {"a.json": b'{"label": 3}', "b.jsonl": b'{"label": "x"}\n{"box": []}\n', "c.yaml": b"label: [unclosed",
           "d.json": b"{not json", "e.yaml": b"!!python/object:os.system {}\n", "f.json": b'{"label": "ok"}'}
    failed = run(spec, write(tmp_path / "bad", bad))
    assert failed.offending == ("a.json", "b.jsonl", "c.yaml", "d.json", "e.yaml")
    assert "line 2" in failed.message or failed.offending_count == 5


def test_annotations_schema_file_and_csv_columns(tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    assert run(check("annotations", glob="*.json", schema_file=str(schema_file)),
               write(tmp_path / "j", {"a.json": b'{"label": "x"}'})).status == "pass"
    columns = [{"name": "path"}, {"name": "label", "type": "int", "min": 0, "max": 9}]
    spec = check("annotations", glob="*.csv", columns=columns)
    assert run(spec, write(tmp_path / "ok", {"l.csv": b"path,label\na.png,3\nb.png,9\n"})).status == "pass"
    failed = run(spec, write(tmp_path / "bad", {"l.csv": b"path,label\na.png,3\nb.png,x\n",
                                                "m.csv": b"path,label\n,1\n", "n.csv": b"path\na.png\n",
                                                "o.csv": b"path,label\na,12\n"}))
    assert failed.offending == ("l.csv", "m.csv", "n.csv", "o.csv")
    missing = run(check("annotations", glob="*.json", schema_file=str(tmp_path / "nope.json")),
                  write(tmp_path / "j2", {"a.json": b"{}"}))
    assert missing.status == "fail" and "cannot read the schema" in missing.message


# --- change guards ------------------------------------------------------------------------------------------


def test_change_guard(tmp_path: Path) -> None:
    parent = write(tmp_path / "p", {f"f{i}": str(i).encode() for i in range(10)})
    same_but_one = write(tmp_path / "a", {**{f"f{i}": str(i).encode() for i in range(1, 10)}, "new": b"n"})
    spec = check("change", error_if=">20%")
    assert run(spec, same_but_one, parent).status == "pass"
    broken = write(tmp_path / "b", {"f0": b"changed", "f1": b"1"})
    failed = run(spec, broken, parent)
    assert failed.status == "fail" and failed.measure == 90 and failed.offending[:2] == ("f0", "f2")
    assert run(check("change", error_if=">20", of="modified"), broken, parent).status == "pass"
    assert run(spec, broken).status == "pass"  # no parent: nothing changed


# --- command --------------------------------------------------------------------------------------------------


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "check.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_command_pass_and_fail(tmp_path: Path) -> None:
    content = write(tmp_path / "d", {"a.txt": b"x", "b.bad": b"y"})
    argv = script(tmp_path, """
        import json, sys
        data = json.load(sys.stdin)
        bad = [f["path"] for f in data["files"] if f["path"].endswith(".bad") and open(f["local"]).read() == "y"]
        print(json.dumps({"status": "fail" if bad else "pass", "message": f"{len(bad)} bad", "offending": bad}))
    """)
    failed = run(check("command", run=argv), content)
    assert failed.status == "fail" and failed.offending == ("b.bad",) and "1 bad" in failed.message
    assert run(check("command", run=argv), write(tmp_path / "e", {"a.txt": b"x"})).status == "pass"


def test_command_that_misbehaves_fails_the_check(tmp_path: Path) -> None:
    content = write(tmp_path / "d", {"a.txt": b"x"})
    slow = script(tmp_path, "import time; time.sleep(30)")
    timed_out = run(check("command", run=slow, timeout=0.5), content)
    assert timed_out.status == "fail" and "did not answer within" in timed_out.message
    assert "cannot run" in run(check("command", run=[str(tmp_path / "missing")]), content).message
    crash = run(check("command", run=[sys.executable, "-c", "import sys; sys.exit('boom')"]), content)
    assert crash.status == "fail" and "boom" in crash.message
    # the arguments reach the program as they are: no shell interprets them
    echo = run(check("command", run=[sys.executable, "-c", "import sys, json; print(json.dumps({'status': "
                                     "'pass', 'message': sys.argv[1]}))", "$(touch pwned); `x`"]), content)
    assert echo.status == "pass" and "$(touch pwned)" in echo.message and not Path("pwned").exists()


# --- severities, stored form ---------------------------------------------------------------------------------


def test_warn_severity_and_warn_if(tmp_path: Path) -> None:
    content = write(tmp_path, {"a": b"", "b": b"1"})
    assert run(check("empty_files", severity="warn"), content).status == "warn"
    assert run(check("files", error_if="<1", warn_if="<5"), content).status == "warn"
    assert run(check("files", error_if="<3", severity="warn"), content).status == "warn"


def test_results_round_trip_and_table(tmp_path: Path) -> None:
    content = write(tmp_path, {"a": b"", "b": b"1"})
    results = VersionChecks(V, content.digest(), (run(check("empty_files"), content),
                                                  run(check("files", error_if="<1"), content)))
    data = checks_to_json(results)
    assert data["format_version"] == 1 and data["checks"][0]["status"] == "fail"
    assert data["checks"][0]["location"] == "m.yaml:9:5" and data["checks"][0]["offending"] == ["a"]
    assert checks_from_json(json.loads(json.dumps(data))) == results
    rows = ui_rows(results)
    assert rows[0][0] == "check" and rows[1][3] == "fail" and len(rows) == 3


def test_leakage_across_the_versions_declared_splits(tmp_path: Path) -> None:
    content = write(tmp_path, {"train/a": b"1", "test/b": b"1"})
    data = CheckInput(V, content, splits={"train": ("train/**",), "test": ("test/**",)})
    assert evaluate_check(check("leakage"), data).offending == ("test/b", "train/a")
    lost = run(check("leakage"), content)
    assert lost.status == "fail" and "no splits to compare" in lost.message


def test_a_stop_drops_the_files_not_started() -> None:
    """A signal raised while files are checked in parallel ends the pass without checking the rest."""
    import threading
    import time

    from reconciler.checks.rules import _parallel

    files = [FileEntry(f"f{i:05d}", 1, "h", "/nowhere") for i in range(5000)]
    seen: list[str] = []
    lock = threading.Lock()

    def slow(f: FileEntry) -> str | None:
        with lock:
            seen.append(f.path)
        if f.path == "f00000":
            raise KeyboardInterrupt
        time.sleep(0.001)
        return None

    with pytest.raises(KeyboardInterrupt):
        _parallel(slow, files, workers=2)
    time.sleep(0.05)
    assert len(seen) < 500


def test_images_are_found_by_extension_whatever_its_case(tmp_path: Path) -> None:
    failed = run(check("images"), write(tmp_path, {"A.PNG": b"broken", "b.Jpg": png(), "c.txt": b"text"}))
    assert failed.offending == ("A.PNG",)


def test_the_package_names_load_on_first_use() -> None:
    import reconciler.checks as package

    assert sorted(package.__all__) == sorted(package._MODULE_OF)
    for name in package.__all__:
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError):
        package.nothing_such  # noqa: B018
