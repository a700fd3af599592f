"""The backend speaks the project's types: outside ``clearml_backend/`` no code asks the reader or writer for
tasks, artifact lists or file-list documents (the methods that hand them out serve the backend's own modules)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from reconciler.clearml_backend.reader import ServerReader
from reconciler.clearml_backend.writer import ServerWriter

ROOT = Path(__file__).parents[2] / "reconciler"


def _raw_methods() -> set[str]:
    """Public reader and writer methods that take or return ClearML's own documents (``dict[str, Any]``)."""
    out = set()
    for cls in (ServerReader, ServerWriter):
        for name, fn in inspect.getmembers(cls, inspect.isfunction):
            text = str(inspect.signature(fn))
            if not name.startswith("_") and ("dict[str, Any]" in text or "Mapping[str, Any]" in text):
                out.add(name)
    return out


def _calls_outside_the_backend(names: set[str], root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("clearml_backend", "localserver"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names:
                owner = ast.unparse(node.func.value)
                if owner.endswith(("reader", "writer")):
                    found.append(f"{rel}:{node.lineno} {owner}.{node.func.attr}()")
    return found


def test_the_methods_handing_out_clearml_documents_are_known() -> None:
    assert _raw_methods() == {"task", "tasks", "full_task", "read_state", "report_card", "report_plots",
                              "set_bookkeeping", "set_json_artifacts", "struct_lineage"}


def test_no_code_outside_the_backend_asks_for_clearml_documents() -> None:
    assert _calls_outside_the_backend(_raw_methods()) == []


def test_the_check_sees_a_call_outside_the_backend(tmp_path: Path) -> None:
    (tmp_path / "clearml_backend").mkdir()
    (tmp_path / "clearml_backend" / "reader.py").write_text("def f(self):\n    return self.reader.task('x')\n")
    (tmp_path / "report.py").write_text("def f(reader):\n    return reader.task('x') or reader.version('x')\n")
    assert _calls_outside_the_backend({"task"}, tmp_path) == ["report.py:2 reader.task()"]
