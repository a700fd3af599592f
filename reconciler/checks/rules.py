"""The built-in rules: each looks at a version's content (paths, sizes, hashes), its parent, and the bytes of
its files where it must (images, annotations, the command), and says what it measured and what offends.

A rule never decides pass or fail: :mod:`.evaluate` applies the check's conditions to the measure. Files are
read from ``FileEntry.local``; a file without a local copy (an external link, a file only the server holds) is
not read, and the outcome says how many were skipped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..globs import GlobSet
from ..model import CheckSpec, Content, FileEntry, VersionKey, thaw_json
from ..statistics import extension, is_image, split_and_class

COMMAND_FORMAT_VERSION = 1
COMMAND_TIMEOUT = 300.0  # seconds, unless the check gives its own
_MAX_COMMAND_OUTPUT = 1 << 20


@dataclass(frozen=True, slots=True)
class CheckInput:
    """What a check may look at. ``others``: contents of other versions by ``project/name@version`` (leakage)."""

    version: VersionKey
    content: Content
    parent: Content | None = None
    others: Mapping[str, Content] = field(default_factory=dict)
    workers: int = 4
    splits: Mapping[str, Sequence[str]] = field(default_factory=dict)  # the version's declared splits


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a rule measured. ``offending``: (path, why) pairs, in path order; ``problem``: the check could not
    be evaluated (a bad schema file, a command that would not run): it fails whatever its conditions say."""

    measure: float
    offending: tuple[tuple[str, str], ...] = ()
    note: str = ""
    problem: str | None = None
    count: int | None = None  # offending items when more than listed (None: len(offending))

    @property
    def offending_count(self) -> int:
        return len(self.offending) if self.count is None else self.count


Rule = Callable[[CheckSpec, CheckInput], Outcome]


def _param(spec: CheckSpec, name: str, default: Any = None) -> Any:
    return thaw_json(spec.params.get(name, default))


def _selected(spec: CheckSpec, content: Content, images_only: bool = False) -> list[FileEntry]:
    """The files the check's ``glob`` selects; without one, every file (or every image, as statistics sees
    them: by extension, whatever its case)."""
    pats = _param(spec, "glob")
    patterns = [pats] if isinstance(pats, str) else list(pats or ())
    files = list(content.files.values())
    if not patterns:
        return [f for f in files if is_image(f.path)] if images_only else files
    globs = GlobSet.compile(patterns)
    return [f for f in files if globs.matches(f.path)]


def _unread(files: Sequence[FileEntry]) -> tuple[list[FileEntry], str]:
    local = [f for f in files if f.local]
    skipped = len(files) - len(local)
    return local, (f"{skipped} files not read (no local copy)" if skipped else "")


def _parallel(fn: Callable[[FileEntry], str | None], files: Sequence[FileEntry], workers: int
              ) -> list[tuple[str, str]]:
    """``(path, why)`` for every file ``fn`` finds a problem with, in path order."""
    if len(files) < 64 or workers <= 1:
        found = [fn(f) for f in files]
    else:  # a signal stops it at once: the files not started are dropped, not waited for
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="checks")
        try:
            found = list(pool.map(fn, files, chunksize=32))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    return sorted((f.path, why) for f, why in zip(files, found, strict=True) if why)


# --- counts and sizes -------------------------------------------------------------------------------------


def rule_files(spec: CheckSpec, data: CheckInput) -> Outcome:
    return Outcome(data.content.file_count)


def rule_bytes(spec: CheckSpec, data: CheckInput) -> Outcome:
    return Outcome(data.content.total_size)


def rule_largest_file(spec: CheckSpec, data: CheckInput) -> Outcome:
    files = list(data.content.files.values())
    if not files:
        return Outcome(0)
    largest = max(files, key=lambda f: (f.size, f.path))
    return Outcome(largest.size, ((largest.path, f"{largest.size} bytes"),))


def rule_empty_files(spec: CheckSpec, data: CheckInput) -> Outcome:
    return Outcome(0, tuple(sorted((f.path, "0 bytes") for f in _selected(spec, data.content) if f.size == 0)))


def rule_extensions(spec: CheckSpec, data: CheckInput) -> Outcome:
    allowed = {str(e).lower() if str(e).startswith(".") or str(e) == "(none)" else f".{str(e).lower()}"
               for e in _param(spec, "allowed", [])}
    paths = [f.path for f in _selected(spec, data.content)] + list(data.content.links)
    bad = tuple(sorted((p, f"extension {extension(p)}") for p in paths if extension(p) not in allowed))
    return Outcome(0, bad)


def _classes(spec: CheckSpec, data: CheckInput) -> dict[str, Counter[str]]:
    """split -> class -> files, over the files the check selects (images by default)."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for f in _selected(spec, data.content, images_only=True):
        split, cls = split_and_class(f.path)
        per[split][cls] += 1
    return per


def rule_class_samples(spec: CheckSpec, data: CheckInput) -> Outcome:
    low, high = _param(spec, "min"), _param(spec, "max")
    bad = []
    for split, counts in sorted(_classes(spec, data).items()):
        for cls, n in sorted(counts.items()):
            where = cls if split == "(none)" else f"{split}/{cls}"
            if low is not None and n < low:
                bad.append((where, f"{n} samples < min {low}"))
            elif high is not None and n > high:
                bad.append((where, f"{n} samples > max {high}"))
    return Outcome(0, tuple(bad))


def rule_class_imbalance(spec: CheckSpec, data: CheckInput) -> Outcome:
    worst, offending = 1.0, ()  # type: float, tuple[tuple[str, str], ...]
    for split, counts in sorted(_classes(spec, data).items()):
        if len(counts) < 2:
            continue
        (big, n_big), (small, n_small) = max(counts.items(), key=lambda kv: kv[1]), min(counts.items(),
                                                                                          key=lambda kv: kv[1])
        ratio = n_big / n_small
        if ratio > worst:
            prefix = "" if split == "(none)" else f"{split}/"
            worst = ratio
            offending = ((f"{prefix}{small}", f"{n_small} samples"), (f"{prefix}{big}", f"{n_big} samples"))
    return Outcome(worst, offending)


# --- images ---------------------------------------------------------------------------------------------------


def _image_problem(spec: CheckSpec) -> Callable[[FileEntry], str | None]:
    from PIL import Image

    bounds = {k: _param(spec, k) for k in ("min_width", "max_width", "min_height", "max_height")}
    modes = set(_param(spec, "modes", []) or [])

    def problem(f: FileEntry) -> str | None:
        try:
            with Image.open(str(f.local)) as img:
                img.load()
                width, height, mode = img.width, img.height, img.mode
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            return f"not decodable ({type(err).__name__}: {err})"
        for name, value, limit in (("width", width, bounds["min_width"]), ("height", height, bounds["min_height"])):
            if limit is not None and value < limit:
                return f"{name} {value} < {limit}"
        for name, value, limit in (("width", width, bounds["max_width"]), ("height", height, bounds["max_height"])):
            if limit is not None and value > limit:
                return f"{name} {value} > {limit}"
        if modes and mode not in modes:
            return f"mode {mode} not in {', '.join(sorted(modes))}"
        return None

    return problem


def rule_images(spec: CheckSpec, data: CheckInput) -> Outcome:
    files, note = _unread(_selected(spec, data.content, images_only=True))
    return Outcome(0, tuple(_parallel(_image_problem(spec), files, data.workers)), note)


# --- duplicates and leakage -------------------------------------------------------------------------------


def rule_duplicates(spec: CheckSpec, data: CheckInput) -> Outcome:
    first: dict[str, str] = {}
    bad = []
    for f in sorted(_selected(spec, data.content), key=lambda f: f.path):
        if f.size == 0 and not _param(spec, "include_empty", False):
            continue
        seen = first.setdefault(f.sha256, f.path)
        if seen != f.path:
            bad.append((f.path, f"same content as {seen}"))
    return Outcome(0, tuple(bad))


def rule_leakage(spec: CheckSpec, data: CheckInput) -> Outcome:
    given = _param(spec, "splits", {}) or {str(k): list(v) for k, v in data.splits.items()}
    if not given and not _param(spec, "datasets"):
        return Outcome(0, problem="no splits to compare: give the check splits, or the version splits:")
    splits = {str(k): GlobSet.compile([v] if isinstance(v, str) else v) for k, v in given.items()}
    files = [f for f in data.content.files.values() if f.size or _param(spec, "include_empty", False)]
    owners: dict[str, set[str]] = defaultdict(set)  # sha256 -> splits (or datasets) holding it
    member: dict[str, str] = {}
    for f in files:
        for name, globs in splits.items():
            if globs.matches(f.path):
                owners[f.sha256].add(name)
                member[f.path] = name
                break
    for ref in _param(spec, "datasets", []) or []:
        other = data.others.get(str(ref))
        if other is None:
            return Outcome(0, problem=f"{ref!r} is not a version in the manifests")
        for f in other.files.values():
            owners[f.sha256].add(str(ref))
    bad = []
    for f in sorted(files, key=lambda f: f.path):
        mine = member.get(f.path)
        others = sorted(owners.get(f.sha256, set()) - {mine} if mine else set())
        if mine is None:  # a file in no split leaks only into other datasets
            others = [o for o in sorted(owners.get(f.sha256, set())) if o not in splits]
        if others:
            bad.append((f.path, f"content also in {', '.join(others)}"))
    return Outcome(0, tuple(bad))


# --- annotations ----------------------------------------------------------------------------------------------


def _format(spec: CheckSpec, path: str) -> str:
    fmt = str(_param(spec, "format", "auto"))
    if fmt != "auto":
        return fmt
    return {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".yaml": "yaml", ".yml": "yaml",
            ".csv": "csv"}.get(extension(path), "json")


def _records(fmt: str, text: str) -> Iterable[tuple[int, Any]]:
    """``(line, value)`` per record: the document for json/yaml, each line for jsonl, each row for csv."""
    if fmt == "json":
        yield 1, json.loads(text)
    elif fmt == "yaml":
        import yaml

        yield 1, yaml.safe_load(text)
    elif fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield n, json.loads(line)
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:
            yield reader.line_num, row


_COLUMN_TYPES: Mapping[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str,
                                                      "bool": lambda v: {"true": True, "false": False}[v.lower()]}


def _column_problem(columns: Sequence[Mapping[str, Any]], row: Mapping[str, Any]) -> str | None:
    for col in columns:
        name = str(col["name"])
        value = row.get(name)
        if value is None:
            return f"column {name!r} missing"
        if value == "":
            if col.get("required", True):
                return f"column {name!r} is empty"
            continue
        try:
            typed = _COLUMN_TYPES[str(col.get("type", "str"))](value)
        except (ValueError, KeyError):
            return f"column {name!r}: {value!r} is not {col.get('type')}"
        if "allowed" in col and typed not in col["allowed"] and value not in col["allowed"]:
            return f"column {name!r}: {value!r} is not one of the allowed values"
        if isinstance(typed, (int, float)) and not isinstance(typed, bool):
            if "min" in col and typed < col["min"]:
                return f"column {name!r}: {value} < min {col['min']}"
            if "max" in col and typed > col["max"]:
                return f"column {name!r}: {value} > max {col['max']}"
    return None


def _schema(spec: CheckSpec) -> tuple[Any, str | None]:
    """The JSON Schema validator of the check (None without a schema) or the problem reading it."""
    schema = _param(spec, "schema")
    schema_file = _param(spec, "schema_file")
    if schema is None and schema_file is None:
        return None, None
    import jsonschema

    if schema_file is not None:
        try:
            text = Path(schema_file).read_text(encoding="utf-8")
            import yaml

            schema = json.loads(text) if schema_file.endswith(".json") else yaml.safe_load(text)
        except (OSError, ValueError, UnicodeDecodeError) as err:
            return None, f"cannot read the schema {schema_file}: {err}"
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as err:
        return None, f"the schema is not a valid JSON Schema: {err.message}"
    return cls(schema), None


def rule_annotations(spec: CheckSpec, data: CheckInput) -> Outcome:
    validator, problem = _schema(spec)
    if problem:
        return Outcome(0, problem=problem)
    columns = _param(spec, "columns") or []
    files, note = _unread(_selected(spec, data.content))

    def check(f: FileEntry) -> str | None:
        fmt = _format(spec, f.path)
        line = 0
        try:
            text = Path(str(f.local)).read_text(encoding="utf-8-sig")
            for line, record in _records(fmt, text):
                if validator is not None:
                    err = next(iter(sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))),
                               None)
                    if err is not None:
                        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
                        return f"line {line}: {where}: {err.message}"
                if columns and fmt == "csv":
                    bad = _column_problem(columns, record)
                    if bad:
                        return f"line {line}: {bad}"
        except (OSError, UnicodeDecodeError) as err:
            return f"unreadable: {err}"
        except (ValueError, csv.Error) as err:  # json.JSONDecodeError is a ValueError
            return f"line {line + 1 if fmt == 'jsonl' else max(line, 1)}: not {fmt}: {err}"
        except Exception as err:  # noqa: BLE001  (yaml errors: the message, never a traceback)
            return f"not {fmt}: {type(err).__name__}: {err}"
        return None

    return Outcome(0, tuple(_parallel(check, files, data.workers)), note)


# --- change guards ----------------------------------------------------------------------------------------


def rule_change(spec: CheckSpec, data: CheckInput) -> Outcome:
    if data.parent is None:
        return Outcome(0, note="no parent")
    before, after = data.parent.files, data.content.files
    of = str(_param(spec, "of", "removed_or_modified"))
    bad = []
    if of in ("removed", "removed_or_modified"):
        bad += [(p, "removed") for p in before if p not in after]
    if of in ("modified", "removed_or_modified"):
        bad += [(p, "modified") for p, f in before.items() if p in after and after[p].sha256 != f.sha256]
    total = len(before)
    return Outcome(100.0 * len(bad) / total if total else 0.0, tuple(sorted(bad)))


# --- command --------------------------------------------------------------------------------------------------


def command_input(data: CheckInput) -> dict[str, Any]:
    """What a command reads on stdin (documented in README.md)."""
    return {"format_version": COMMAND_FORMAT_VERSION, "version": str(data.version),
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256, "local": f.local}
                      for f in data.content.files.values()],
            "links": [{"path": lnk.path, "url": lnk.url} for lnk in data.content.links.values()]}


def rule_command(spec: CheckSpec, data: CheckInput) -> Outcome:
    argv = [str(a) for a in _param(spec, "run", [])]
    timeout = float(_param(spec, "timeout", COMMAND_TIMEOUT))
    cwd = _param(spec, "cwd")
    payload = json.dumps(command_input(data)).encode()
    try:  # an argument list, never a shell: the manifest's strings are not interpreted
        proc = subprocess.run(argv, input=payload, capture_output=True, timeout=timeout, cwd=cwd, check=False,
                              env={**os.environ, "RECONCILE_VERSION": str(data.version)})
    except subprocess.TimeoutExpired:
        return Outcome(1, problem=f"{argv[0]} did not answer within {timeout:g}s (stopped)")
    except OSError as err:
        return Outcome(1, problem=f"cannot run {argv[0]}: {err.strerror or err}")
    out = proc.stdout[:_MAX_COMMAND_OUTPUT].decode(errors="replace").strip()
    err_tail = proc.stderr[-2000:].decode(errors="replace").strip()
    try:
        answer = json.loads(out) if out else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("status") not in ("pass", "fail"):
        if proc.returncode != 0:
            return Outcome(1, problem=f"{argv[0]} exited {proc.returncode}"
                           + (f": {err_tail.splitlines()[-1]}" if err_tail else ""))
        return Outcome(1, problem=f"{argv[0]} did not answer with JSON {{\"status\": \"pass\"|\"fail\", "
                                  "\"message\": ...} on stdout")
    message = str(answer.get("message") or "")
    if answer["status"] == "pass" and proc.returncode == 0:
        return Outcome(0, note=message)
    offending = answer.get("offending") or []
    pairs = tuple((str(p), message) for p in offending if isinstance(p, str))
    return Outcome(max(1, len(pairs)), pairs, note=message or f"{argv[0]} answered fail",
                   count=max(1, len(pairs)))


RULE_FUNCTIONS: Mapping[str, Rule] = {
    "files": rule_files, "bytes": rule_bytes, "largest_file": rule_largest_file, "empty_files": rule_empty_files,
    "extensions": rule_extensions, "class_samples": rule_class_samples, "class_imbalance": rule_class_imbalance,
    "images": rule_images, "duplicates": rule_duplicates, "leakage": rule_leakage,
    "annotations": rule_annotations, "change": rule_change, "command": rule_command,
}
BYTE_RULES = frozenset({"images", "annotations", "command"})  # rules that read the files' bytes
