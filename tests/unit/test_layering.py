"""The import graph keeps the architecture: pure core at the bottom, one module that touches the clearml SDK.

Every import counts, including the ones inside functions (lazy imports are still dependencies).
Layers, top to bottom: cli -> engine / dispatch / agentstep -> apply / observe / report / render -> steps ->
plan / properties -> model -> diagnostics. Sources and manifests sit beside the core and never talk to a server.
The embedded server imports nothing of the rest.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2] / "reconciler"

# module (or package prefix) -> reconciler modules it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "reconciler.escape": ("reconciler.",),
    "reconciler.diagnostics": ("reconciler.model", "reconciler.plan", "reconciler.apply", "reconciler.observe",
                               "reconciler.engine", "reconciler.cli", "reconciler.clearml_backend",
                               "reconciler.render", "reconciler.report", "reconciler.sources",
                               "reconciler.manifest", "reconciler.localserver"),
    "reconciler.model": ("reconciler.plan", "reconciler.apply", "reconciler.observe", "reconciler.engine",
                         "reconciler.cli", "reconciler.clearml_backend", "reconciler.render", "reconciler.report",
                         "reconciler.sources", "reconciler.manifest", "reconciler.localserver"),
    "reconciler.plan": ("reconciler.apply", "reconciler.observe", "reconciler.engine", "reconciler.cli",
                        "reconciler.clearml_backend", "reconciler.render", "reconciler.report",
                        "reconciler.sources", "reconciler.manifest", "reconciler.localserver",
                        "reconciler.connection"),
    "reconciler.usage": ("reconciler.engine", "reconciler.cli", "reconciler.apply", "reconciler.render",
                         "reconciler.localserver"),
    "reconciler.retention": ("reconciler.plan", "reconciler.apply", "reconciler.observe", "reconciler.engine",
                             "reconciler.cli", "reconciler.clearml_backend", "reconciler.render", "reconciler.report",
                             "reconciler.sources", "reconciler.manifest", "reconciler.localserver",
                             "reconciler.connection"),
    "reconciler.properties": ("reconciler.plan", "reconciler.apply", "reconciler.engine", "reconciler.cli",
                              "reconciler.clearml_backend", "reconciler.render", "reconciler.report"),
    "reconciler.render": ("reconciler.apply", "reconciler.observe", "reconciler.engine", "reconciler.cli",
                          "reconciler.clearml_backend", "reconciler.localserver", "reconciler.connection"),
    "reconciler.apply": ("reconciler.engine", "reconciler.cli", "reconciler.render", "reconciler.report",
                         "reconciler.localserver", "reconciler.connection"),
    "reconciler.observe": ("reconciler.engine", "reconciler.cli", "reconciler.apply", "reconciler.render",
                           "reconciler.report", "reconciler.localserver"),
    "reconciler.report": ("reconciler.engine", "reconciler.cli", "reconciler.apply", "reconciler.render",
                          "reconciler.localserver"),
    "reconciler.engine": ("reconciler.cli", "reconciler.render", "reconciler.localserver"),
    "reconciler.clearml_backend": ("reconciler.plan", "reconciler.apply", "reconciler.observe",
                                   "reconciler.engine", "reconciler.cli", "reconciler.render", "reconciler.report",
                                   "reconciler.sources", "reconciler.manifest", "reconciler.localserver"),
    "reconciler.sources": ("reconciler.plan", "reconciler.apply", "reconciler.observe", "reconciler.engine",
                           "reconciler.cli", "reconciler.clearml_backend", "reconciler.localserver"),
    "reconciler.manifest": ("reconciler.plan", "reconciler.apply", "reconciler.observe", "reconciler.engine",
                            "reconciler.cli", "reconciler.clearml_backend", "reconciler.localserver",
                            "reconciler.sources"),
    "reconciler.localserver": ("reconciler.",),
    "reconciler.checks": ("reconciler.plan", "reconciler.apply", "reconciler.observe", "reconciler.engine",
                          "reconciler.cli", "reconciler.clearml_backend", "reconciler.render", "reconciler.report",
                          "reconciler.sources", "reconciler.manifest", "reconciler.localserver",
                          "reconciler.connection", "reconciler.dispatch", "reconciler.agentstep"),
    "reconciler.lineage": ("reconciler.",),
    # what apply tells: plain values over the model; views of them live in render/
    "reconciler.events": ("reconciler.plan", "reconciler.apply", "reconciler.observe", "reconciler.engine",
                          "reconciler.cli", "reconciler.clearml_backend", "reconciler.render", "reconciler.report",
                          "reconciler.sources", "reconciler.manifest", "reconciler.localserver",
                          "reconciler.connection", "reconciler.dispatch", "reconciler.agentstep"),
    "reconciler.export": ("reconciler.engine", "reconciler.cli", "reconciler.apply", "reconciler.render",
                          "reconciler.localserver", "reconciler.manifest", "reconciler.sources"),
    "reconciler.webpages": ("reconciler.cli", "reconciler.engine", "reconciler.apply", "reconciler.manifest",
                            "reconciler.sources", "reconciler.report"),
    "reconciler.show": ("reconciler.engine", "reconciler.cli", "reconciler.apply", "reconciler.render",
                        "reconciler.report", "reconciler.localserver", "reconciler.manifest", "reconciler.sources"),
    "reconciler.steps": ("reconciler.apply", "reconciler.observe", "reconciler.engine", "reconciler.cli",
                         "reconciler.clearml_backend", "reconciler.render", "reconciler.report",
                         "reconciler.sources", "reconciler.manifest", "reconciler.localserver",
                         "reconciler.connection", "reconciler.dispatch", "reconciler.agentstep",
                         "reconciler.checkout"),
    "reconciler.checkout": ("reconciler.apply", "reconciler.engine", "reconciler.cli", "reconciler.clearml_backend",
                            "reconciler.render", "reconciler.localserver", "reconciler.dispatch",
                            "reconciler.agentstep"),
    "reconciler.pulling": ("reconciler.cli", "reconciler.render", "reconciler.localserver", "reconciler.engine",
                           "reconciler.apply", "reconciler.dispatch", "reconciler.agentstep",
                           "reconciler.manifest"),
    "reconciler.dispatch": ("reconciler.cli", "reconciler.render", "reconciler.localserver",
                            "reconciler.agentstep"),
    "reconciler.agentstep": ("reconciler.cli", "reconciler.render", "reconciler.localserver",
                             "reconciler.dispatch"),
}
ONLY_SDK_USER = "reconciler.clearml_backend.storage"
NO_THIRD_PARTY = {  # the pure core: standard library, typing helpers and these packages only
    "reconciler.plan": {"typing_extensions"},
    "reconciler.retention": set(),
    "reconciler.model": set(),
    "reconciler.diagnostics": set(),
    "reconciler.steps": set(),
    "reconciler.lineage": set(),
    "reconciler.events": set(),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, including function-level and relative imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base)
                module = f"{prefix}.{node.module}" if node.module else prefix
                out.add(module)
                out.update(f"{module}.{alias.name}" for alias in node.names)
            elif node.module:
                out.add(node.module)
    return out


MODULES = {_module_name(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def _owner(module: str) -> str | None:
    matches = [m for m in FORBIDDEN if module == m or module.startswith(m + ".")]
    return max(matches, key=len) if matches else None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_are_respected(module: str) -> None:
    owner = _owner(module)
    if owner is None:
        return
    bad = sorted(
        imp for imp in MODULES[module]
        if imp.startswith("reconciler.") and not imp.startswith(owner)
        and any(imp == f or imp.startswith(f) for f in FORBIDDEN[owner])
    )
    assert not bad, f"{module} imports {bad}"


def test_only_one_module_imports_the_clearml_sdk() -> None:
    users = sorted(m for m, imps in MODULES.items() if any(i == "clearml" or i.startswith("clearml.") for i in imps))
    assert users == [ONLY_SDK_USER]


@pytest.mark.parametrize("module", sorted(NO_THIRD_PARTY))
def test_the_pure_core_uses_only_the_standard_library(module: str) -> None:
    import sys

    third = {i.split(".")[0] for i in MODULES[module] if not i.startswith("reconciler")}
    allowed = set(sys.stdlib_module_names) | NO_THIRD_PARTY[module] | {"__future__"}
    assert third <= allowed, f"{module} imports {sorted(third - allowed)}"
