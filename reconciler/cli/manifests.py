"""Commands on the manifests themselves: ``validate``, ``check`` (no server needed), ``init`` and
``import`` (manifests written from what a server holds)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import escape
from ..diagnostics import Diagnostic, ReconcileError
from . import EXIT_ERROR, _color, _connect, _counted, _is_tty, _target_option, _workers, cli


@cli.command(global_options=("--debug",))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(paths: tuple[Path, ...], fmt: str) -> None:
    """Check manifests: YAML, schema and semantics. Every problem in every file is reported."""
    import json

    from ..manifest import load_manifests

    try:
        state = load_manifests(paths)
    except ReconcileError as err:
        if fmt == "json":
            click.echo(json.dumps({"valid": False, "diagnostics": [d.to_json() for d in err.diagnostics]},
                                  indent=2))
            sys.exit(EXIT_ERROR)
        raise
    n_versions = len(state.all_versions())
    if fmt == "json":
        click.echo(json.dumps({"valid": True, "datasets": len(state.datasets), "versions": n_versions,
                               "diagnostics": []}, indent=2))
    else:
        from ..wording import counted

        click.echo(f"ok: {counted(len(state.datasets), 'dataset')}, {counted(n_versions, 'version')}")


@cli.command(global_options=("--debug",))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@_target_option
@_workers("Parallel workers reading and hashing the local files (no server is needed).")
def check(paths: tuple[Path, ...], fmt: str, targets: tuple[str, ...], workers: int) -> None:
    """Run the manifests' checks on the files of every version (no server needed).

    Exit 0 when no error-level check fails (warnings are shown), 1 otherwise. The pre-commit hook
    'reconcile-check' calls it.
    """
    import json

    from ..checks.results import checks_to_json, summary
    from ..engine import check_offline
    from ..manifest import load_manifests
    from ..render.checks import render_checks_markdown, render_checks_text

    state = load_manifests(paths)
    results, skipped = check_offline(state, targets, workers=workers, progress=_is_tty(sys.stderr))
    passed, warned, failed = summary(results)
    if fmt == "json":
        click.echo(json.dumps({"format_version": 1, "versions": [checks_to_json(c) for c in results],
                               "skipped": [str(k) for k in skipped],
                               "summary": {"passed": passed, "warned": warned, "failed": failed}}, indent=2))
    elif fmt == "markdown":
        click.echo(render_checks_markdown(results, skipped))
    else:
        click.echo(render_checks_text(results, skipped, color=_color(sys.stdout)), nl=False)
    if failed:
        raise ReconcileError([Diagnostic(f"check {r.name!r} ({r.rule}) of {c.version} failed", r.span)
                              for c in results for r in c.failed])


@cli.command(global_options=("--debug",))
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--project", default="datasets", show_default=True, help="ClearML project of the dataset.")
@click.option("--name", default="my_dataset", show_default=True, help="Dataset name (the file is NAME.yaml).")
def init(directory: Path, project: str, name: str) -> None:
    """Write a starter manifest into DIRECTORY, with the schema beside it for editors. Overwrites nothing."""
    from ..scaffold import InitOptions, init_manifests

    for line in init_manifests(InitOptions(directory=directory, project=project, name=name)).lines():
        click.echo(line)


@cli.command("import")
@click.argument("targets", nargs=-1, required=True, metavar="PROJECT[/NAME]|ID...")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("manifests"),
              show_default=True, help="Folder to write the manifests into (one file per dataset).")
@click.option("--dry-run", is_flag=True, help="Print the manifests instead of writing them.")
@click.option("--update", is_flag=True,
              help="Add the versions an existing manifest lacks to it (its comments stay); write the others.")
@click.pass_context
def import_(ctx: click.Context, targets: tuple[str, ...], out_dir: Path, dry_run: bool, update: bool) -> None:
    """Write manifests for datasets already on the server: each version adopted as it is (pinned by id).

    'reconcile plan' right after shows no changes; new versions declared on top upload only their delta.
    """
    from ..importer import gather, manifest_files, resolve_targets, write_manifests
    from ..sources import default_cache_dir

    with _connect(ctx) as conn:
        reader = conn.backend.reader
        items = gather(reader, resolve_targets(reader, targets), default_cache_dir())
        source = reader.api_host
    for item in items:
        for note in item.notes():
            click.echo(escape.text(f"note: {note}"), err=True)
    items = [i for i in items if i.versions]
    if not items:
        raise ReconcileError("nothing to import: no dataset named has a finalized live version (see the notes "
                             "above)")
    files = manifest_files(items, out_dir, source, update=update)
    if dry_run:
        click.echo("\n---\n".join(f"# file: {path}\n{text}" for path, text in files.texts.items()), nl=False)
        return
    for path in write_manifests(files):
        click.echo(f"{'updated' if path in files.added else 'wrote'} {path}"
                   + (f": added {', '.join(files.added[path])}" if files.added.get(path) else ""))
    if update and not files.texts:
        click.echo(f"The manifests in {out_dir} already hold every finalized version.")
        return
    versions = sum(len(i.versions) for i in items)
    click.echo(f"Imported {_counted(len(items), 'dataset')}, {_counted(versions, 'version')}; "
               f"'reconcile plan {out_dir}' should show no changes.")
