"""``reconcile init``: a commented starter manifest, with the schema beside it so editors complete and check fields.

What :func:`init_manifests` puts in the directory:

* ``<name>.yaml``: the starter manifest. Its first line, ``# yaml-language-server: $schema=./manifest.v1.schema.json``,
  points every editor that runs yaml-language-server (VS Code's YAML extension, Neovim, Helix, Zed, JetBrains'
  modelines) at
* ``manifest.v1.schema.json``: a copy of the schema this version of the tool validates with;
* ``data/<name>/``: the (empty) folder the starter's source names, so ``reconcile validate`` passes at once.

Why a copy beside the manifests rather than a URL or the installed package's file: a relative path works offline,
in every clone and in CI alike, and changes only when someone re-runs ``init`` in a reviewed commit; a path into
site-packages is different on every machine and dangles when the virtualenv is rebuilt, and a URL needs a network
and a published location. The schema uses only keywords that draft-07 validators (what most editors ship) also
understand, so the editors' checks agree with ``reconcile validate`` on the shape of a document.

Nothing is overwritten: an existing manifest is refused, and so is an existing schema copy that differs from this
version's (an identical one is kept). Everything is checked before anything is written.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from .diagnostics import ReconcileError
from .manifest import check_manifests, schema_text

SCHEMA_FILE = "manifest.v1.schema.json"
MODELINE = f"# yaml-language-server: $schema=./{SCHEMA_FILE}"


@dataclass(frozen=True, slots=True)
class InitOptions:
    directory: Path
    project: str = "datasets"
    name: str = "my_dataset"


@dataclass(frozen=True, slots=True)
class InitResult:
    manifest: Path
    schema: Path
    schema_written: bool
    data: Path

    def lines(self) -> list[str]:
        """What was done, and what to do next, for the terminal."""
        folder = self.manifest.parent
        schema = "wrote" if self.schema_written else "kept (identical)"
        return [
            f"wrote {self.manifest}",
            f"{schema} {self.schema} (editors with yaml-language-server check the manifest against it)",
            f"created {self.data}/ (put the dataset's files there)",
            f"next: reconcile validate {folder} && reconcile plan {folder}",
        ]


def file_stem(name: str) -> str:
    """A dataset name as a file name: lower case, runs of other characters as one '-'."""
    stem = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.")
    return stem or "dataset"


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when YAML reads it back unchanged, else double-quoted."""
    try:
        plain_ok = yaml.safe_load(f"k: {value}") == {"k": value}
    except yaml.YAMLError:
        plain_ok = False
    if plain_ok and "#" not in value:
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def starter_manifest(project: str, name: str, data: str) -> str:
    """The starter manifest's text; ``data`` is the source folder, relative to the manifest."""
    return f"""{MODELINE}
#
# A ClearML dataset for `reconcile` (format reconciler/v1). Check it, preview, apply:
#   reconcile validate <this folder>      every problem, as file:line:col
#   reconcile plan <this folder>          what apply would change on the server (a dry run)
#   reconcile apply <this folder>         make the server match; applying twice changes nothing
# Every field is described in the schema beside this file (editors complete and check fields from it through the
# first line) and in schemas/README.md of clearml-dataset-reconciler.
apiVersion: reconciler/v1
kind: Dataset

# Where the dataset lives on the server: a ClearML project ('/' separates subprojects) and a name unique in it.
project: {_scalar(project)}
name: {_scalar(name)}

# Set on every version and editable at any time: apply updates them in place.
description: What the dataset holds, where it comes from, how it was labelled
tags: [draft]
metadata:
  owner: your-team
  license: unknown

# statistics: true                   # per version: file counts and sizes; for images, classes and mean/std
# storage: s3://bucket/datasets     # where files are uploaded (default: the server's file server)

versions:
  # A version is immutable once applied. To change the content, add a version on top of it (below).
  - version: 1.0.0
    sources:
      # A folder relative to this file: every file below it, at the same relative path in the dataset.
      - path: {_scalar(data)}
        # include: ["**/*.png"]        # only these files (globs; '*' also matches '/')
        # exclude: ["**/.DS_Store"]    # minus these
        # dest: images                 # a folder inside the dataset (default: its root)
      # Other kinds of source:
      # - {{torchvision: MNIST, split: train, download: true}}   # pip install 'clearml-dataset-reconciler[torchvision]'
      # - {{url: "s3://bucket/raw/"}}                             # registered as links; copy: true uploads the bytes
    # publish: true                      # publish once finalized (a published version cannot be deleted)

  # The next version starts from its parent's files; only the difference is uploaded.
  # - version: 1.1.0
  #   parent: 1.0.0
  #   sources:
  #     - path: {data}-more
  #   remove: ["old/*"]                  # parent's files to drop (globs over dataset paths)
"""


def _check_starter(text: str, data: str) -> None:
    """The starter as ``reconcile validate`` sees it; a wrong --project or --name is reported as such."""
    with tempfile.TemporaryDirectory(prefix="reconcile-init-") as tmp:
        path = Path(tmp) / "starter.yaml"
        path.write_text(text, encoding="utf-8")
        (Path(tmp) / data).mkdir(parents=True)
        _state, diags = check_manifests([path])
    if diags:
        raise ReconcileError("; ".join(f"--project/--name: {d.message}" for d in diags))


def init_manifests(options: InitOptions) -> InitResult:
    directory = options.directory
    stem = file_stem(options.name)
    data = f"data/{stem}"
    text = starter_manifest(options.project, options.name, data)
    _check_starter(text, data)

    manifest = directory / f"{stem}.yaml"
    schema = directory / SCHEMA_FILE
    if directory.exists() and not directory.is_dir():
        raise ReconcileError(f"{directory}: not a directory")
    if manifest.exists():
        raise ReconcileError(f"{manifest} already exists: not overwritten (use --name for another dataset)")
    schema_written = not schema.exists()
    if not schema_written and schema.read_text(encoding="utf-8") != schema_text():
        raise ReconcileError(
            f"{schema} differs from the schema of this version of reconcile: not overwritten "
            "(delete it and run init again to take this version's)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    if schema_written:
        schema.write_text(schema_text(), encoding="utf-8")
    (directory / data).mkdir(parents=True, exist_ok=True)
    with manifest.open("x", encoding="utf-8") as f:  # exclusive: never replaces a file made meanwhile
        f.write(text)
    return InitResult(manifest, schema, schema_written, directory / data)
