"""The import graph keeps the architecture: an allow-list, for every module of the package, of the package's
modules it may import. A module without a rule fails, and so does a rule for a module that is gone.

Every import counts, including the ones inside functions (lazy imports are still dependencies). Layers, top to
bottom: cli -> engine -> use cases (apply, dispatch, agentstep, observe, report, show, usage, import, pull) ->
plan -> model -> diagnostics; sources and manifests sit beside the core and never talk to a server; renderers
read the model and the reports, never a server. Only the backend (``clearml_backend/``) reads the stored format
(its ``codec``) and only its ``storage`` module imports the clearml SDK; the embedded server imports nothing of
the rest.

Rules name modules without the ``reconciler.`` prefix; ``pkg.*`` stands for the package ``pkg`` and every module
in it. Importing a package's ``__init__`` (``from .clearml_backend import Backend``) is not importing its other
modules (``from .clearml_backend import codec`` is).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2] / "reconciler"
CODEC = "clearml_backend.codec"


def _set(*names: str | Iterable[str]) -> frozenset[str]:
    return frozenset(n for group in names for n in ([group] if isinstance(group, str) else group))


# --- layers (building blocks of the rules) ------------------------------------------------------------------------
# PURE: modules that import nothing of the rest but each other
PURE = _set("_compat", "diagnostics", "escape", "gcpause", "globs", "wording")
MODEL = _set(PURE, "model", "properties", "retention", "lineage")
CHECKS = _set("checks", "checks.catalog", "checks.results", "checks.rules", "checks.evaluate")
PLAN = _set(MODEL, "checks.results", "plan", "plan.actions", "plan.contents", "plan.observed", "plan.planner")
BACKEND = _set("clearml_backend")  # the boundary's front door: Backend, ServerReader, errors, ... (never the codec)
READING = _set(MODEL, BACKEND, "plan.observed", "plan.contents", "observe", "cachedir")  # use cases over the reader
RENDER = _set(PLAN, "plancodec", "report", "show", "usage", "export", "statistics", "render", "render.*")
SERVER = _set("localserver.*")  # the embedded server: only itself

RULES: dict[str, frozenset[str]] = {
    "": _set("pulling"),  # reconciler/__init__.py: the library's pull()
    # the pure core
    "_compat": _set(),
    "escape": _set(),
    "gcpause": _set(),
    "globs": _set(),
    "wording": _set(),
    "lineage": _set(),
    "events": _set(PURE, "model"),  # what apply tells: plain values; their views live in render.events
    "cachedir": _set(),
    "diagnostics": _set("escape"),
    "model": _set(PURE),
    "properties": _set(PURE, "model"),
    "retention": _set(PURE, "model"),
    "checks": _set(),
    "checks.catalog": _set(PURE, "model"),
    "checks.results": _set(PURE, "model"),
    "checks.rules": _set(PURE, "model", "statistics"),
    "checks.evaluate": _set(MODEL, CHECKS),
    "plan": _set(),
    "plan.actions": _set(MODEL, "checks.results"),
    "plan.contents": _set(MODEL, "plan.actions"),
    "plan.observed": _set(MODEL),
    "plan.planner": _set(PLAN),
    "describe": _set(MODEL, "plan.actions"),
    "plancodec": _set(MODEL, "checks.results", "plan.actions"),
    "steps": _set(PLAN),
    "stepcodec": _set(MODEL, "plan.actions", "plancodec", "steps"),
    "checkout": _set(MODEL, "plan.actions"),
    # beside the core: manifests and sources (no server)
    "manifest": _set(PURE, "model", "manifest.*"),
    "manifest.build": _set(PURE, "model", "checks.catalog", "manifest.*"),
    "manifest.cache": _set(PURE, "", "cachedir", "manifest.*"),  # "": the package's __version__
    "manifest.card": _set(PURE, "model", "manifest.*"),
    "manifest.resolve": _set(PURE, "model", "manifest.*"),
    "manifest.schema": _set(PURE, "manifest.*"),
    "manifest.yamldoc": _set(PURE, "manifest.*"),
    "manifest.yamlparse": _set(PURE, "manifest.*"),
    "scaffold": _set(PURE, "manifest"),
    **{m: _set(PURE, "model", "cachedir", "sources.*") for m in (
        "sources", "sources.errors", "sources.hashcache", "sources.hashing", "sources.local", "sources.png",
        "sources.progress", "sources.remote", "sources.torchvision")},
    "statistics": _set(MODEL, "sources"),
    # the one boundary to a ClearML server
    **{m: _set(MODEL, "clearml_backend", "clearml_backend.*") for m in (
        "clearml_backend", "clearml_backend.agenttask", "clearml_backend.api", "clearml_backend.codec",
        "clearml_backend.config", "clearml_backend.draft", "clearml_backend.lock", "clearml_backend.queues",
        "clearml_backend.reader", "clearml_backend.rehome", "clearml_backend.storage", "clearml_backend.upload")},
    # the writer stores statistics and check results (as artifacts and the UI's plots): it takes them as they are
    "clearml_backend.writer": _set(MODEL, "clearml_backend", "clearml_backend.*", "statistics", "checks.results"),
    # use cases
    "observe": _set(READING),
    "report": _set(READING, PLAN, "statistics"),
    "show": _set(READING, "statistics"),
    "usage": _set(READING, "plan.actions"),
    "export": _set(READING),
    "importer": _set(READING, "manifest"),
    "destwalk": _set("sources.hashcache"),
    "unpack": _set(MODEL, BACKEND, "destwalk", "sources.hashcache"),  # a chunk into a staging tree, in helpers
    "pulling": _set(READING, "connection", "destwalk", "unpack", "sources.hashcache", "sources.progress"),
    "apply": _set(PLAN, CHECKS, BACKEND, "describe", "statistics", "events", "clearml_backend.draft",
                  "clearml_backend.upload"),
    "dispatch": _set(PLAN, BACKEND, "apply", "events", "checkout", "steps", "stepcodec", "clearml_backend.agenttask",
                     "clearml_backend.lock", "clearml_backend.queues"),
    "agentstep": _set(PLAN, BACKEND, "apply", "events", "engine", "steps", "stepcodec",
                      "clearml_backend.agenttask", "clearml_backend.lock", "clearml_backend.queues"),
    "engine": _set(READING, PLAN, CHECKS, "events", "manifest", "manifest.card", "sources", "statistics", "report",
                   "usage", "apply", "dispatch", "checkout", "clearml_backend.queues"),
    "connection": _set(PURE, BACKEND, "clearml_backend.config", "localserver"),
    "webpages": _set(READING, "show", "render.show_html", "localserver"),
    # renderers: the model and the reports in, text out
    **{m: RENDER for m in (
        "render", "render.checks", "render.common", "render.croissant", "render.drift", "render.graph",
        "render.human", "render.markdown", "render.report_common", "render.report_html", "render.report_json",
        "render.report_markdown", "render.report_text", "render.show", "render.show_html", "render.usage")},
    "render.events": _set(RENDER, "events"),  # views of what apply, dispatch and agent steps emit
    # the command line: parse, call, render (never the backend's insides)
    **{m: _set(RENDER, CHECKS, BACKEND, "", "cli.*", "events", "cachedir", "manifest", "sources", "connection",
               "engine", "apply", "dispatch", "agentstep", "importer", "pulling", "scaffold", "webpages", "localserver")
       for m in ("cli", "cli.manifests", "cli.planning", "cli.reading", "cli.recovery", "cli.server")},
    "cli.__main__": _set("cli"),
    # the GitHub Action's runner: runs the CLI and reads its events (the pure event values and their text)
    "ci": _set(),
    "ci.github": _set(PURE, "events", "render.events"),
    # the embedded ClearML-compatible server
    **{m: SERVER for m in (
        "localserver", "localserver.api", "localserver.auth", "localserver.errors", "localserver.files",
        "localserver.gate", "localserver.hooks", "localserver.query", "localserver.server", "localserver.store",
        "localserver.endpoints", "localserver.endpoints.common", "localserver.endpoints.events",
        "localserver.endpoints.misc", "localserver.endpoints.projects", "localserver.endpoints.queues",
        "localserver.endpoints.tasks", "localserver.endpoints.workers")},
}
ONLY_SDK_USER = "reconciler.clearml_backend.storage"
NO_THIRD_PARTY = {  # the pure core: standard library, typing helpers and these packages only
    "reconciler.plan.actions": set(),
    "reconciler.plan.contents": set(),
    "reconciler.plan.observed": set(),
    "reconciler.plan.planner": set(),
    "reconciler.wording": set(),
    "reconciler.describe": set(),
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


PATHS = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, including function-level and relative imports. ``from P import
    name`` counts as importing the module ``P.name`` when there is one, else ``P``."""
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
                module = ".".join(base) + (f".{node.module}" if node.module else "")
            else:
                module = node.module or ""
            for alias in node.names:
                out.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in PATHS else module)
    return out


MODULES = {m: _imports(p) for m, p in PATHS.items()}


def _short(module: str) -> str:
    return module.removeprefix("reconciler").removeprefix(".")


def _package_modules(module: str) -> set[str]:
    """The reconciler modules ``module`` imports (short names), itself left out."""
    return {_short(i) for i in MODULES[module] if (i == "reconciler" or i.startswith("reconciler.")) and i != module}


def _allowed(target: str, rule: frozenset[str]) -> bool:
    return target in rule or any(p.endswith(".*") and (target == p[:-2] or target.startswith(p[:-1]))
                                 for p in rule)


def _rule(module: str) -> frozenset[str]:
    short = _short(module)
    return RULES[short]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_only_what_its_rule_allows(module: str) -> None:
    assert _short(module) in RULES, f"{module} has no rule in {Path(__file__).name}: give it one (RULES)"
    bad = sorted(t or "reconciler" for t in _package_modules(module) if not _allowed(t, _rule(module)))
    assert not bad, f"{module} imports {', '.join(bad)}, which its rule does not allow"


def test_every_rule_is_for_a_module_that_exists() -> None:
    assert sorted(set(RULES) - {_short(m) for m in MODULES}) == []


def test_the_codec_is_private_to_the_backend() -> None:
    users = sorted(_short(m) for m in MODULES if CODEC in _package_modules(m) and not
                   _short(m).startswith("clearml_backend"))
    assert not users, (
        f"the codec is private to clearml_backend/, but {', '.join(users)} imports it: have the backend's reader "
        "and writer return and take the project's own types instead")


def test_only_one_module_imports_the_clearml_sdk() -> None:
    users = sorted(m for m, imps in MODULES.items() if any(i == "clearml" or i.startswith("clearml.") for i in imps))
    assert users == [ONLY_SDK_USER]


@pytest.mark.parametrize("module", sorted(NO_THIRD_PARTY))
def test_the_pure_core_uses_only_the_standard_library(module: str) -> None:
    third = {i.split(".")[0] for i in MODULES[module] if not i.startswith("reconciler")}
    allowed = set(sys.stdlib_module_names) | NO_THIRD_PARTY[module] | {"__future__"}
    assert third <= allowed, f"{module} imports {sorted(third - allowed)}"
