"""Commands that read a server and change nothing: ``pull``, ``diff``, ``show``, ``graph``, ``usage`` and
``export``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .. import escape
from ..diagnostics import ReconcileError
from . import EXIT_CHANGES, EXIT_OK, _connect, _is_tty, _reading_workers_option, _workers, _workers_option, cli

# --- pull ----------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("ref", metavar="PROJECT/NAME@VERSION|ALIAS")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", default=None, metavar="NAME", help="Only the files of this split (declared by `splits:`).")
@click.option("--include", "include", multiple=True, metavar="GLOB",
              help="Only the files matching this glob (repeatable: any of them; with --split: within the split).")
@click.option("--delete", is_flag=True, help="Delete files in DEST that the selection does not hold.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="The summary as a line of text or a JSON object.")
@_workers("Parallel download workers.")
@click.pass_context
def pull(ctx: click.Context, ref: str, dest: Path, split: str | None, include: tuple[str, ...], delete: bool,
         fmt: str, workers: int) -> None:
    """Download a version's files (or a split, or some globs) into DEST, verified against their sha256.

    Only the chunks holding missing files are downloaded; files already in DEST are kept (recognised by their
    stat, else by their hash). Safe to interrupt and run again. REF may also be a dataset id.
    """
    from ..pulling import PullOptions, Selection
    from ..pulling import pull as pull_version

    options = PullOptions(Selection(split, include), delete=delete, workers=workers, progress=True)
    with _connect(ctx) as conn:
        result = pull_version(conn.backend.reader, ref, dest, options)
    if fmt == "json":
        import json

        click.echo(json.dumps(result.to_json(), sort_keys=True))
    else:
        click.echo(escape.text(result.summary()))


# --- diff ----------------------------------------------------------------------------------------------------


def _report_options(f: Any) -> Any:
    """``--format text|json|markdown|html`` and ``--out FILE``: the options of every report command."""
    f = click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Write the report to this file instead of stdout (the usual place for html).")(f)
    return click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "html"]), default="text",
                        show_default=True)(f)


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="PATH... | VERSION VERSION")
@_report_options
@_reading_workers_option
@click.pass_context
def diff(ctx: click.Context, args: tuple[str, ...], fmt: str, out: Path | None, workers: int) -> None:
    """Compare the manifests with the server, or two live versions (PROJECT/NAME@VERSION or dataset ids).

    Exit 0: identical, 2: differences, 1: error.
    """
    from ..engine import Run, diff_manifests, diff_versions
    from ..manifest import load_manifests
    from ..plan.actions import PlanOptions
    from ..render import render_report
    from ..report import split_arguments

    refs = split_arguments(args)
    state = None if refs else load_manifests([Path(a) for a in args])
    with _connect(ctx) as conn:
        if refs:
            report = diff_versions(conn.backend.reader, refs[0], refs[1], workers=workers)
        else:
            assert state is not None
            report = diff_manifests(Run(conn.backend.reader, state, PlanOptions(), workers=workers,
                                        progress=_is_tty(sys.stderr)))
    _write(render_report(report, fmt), out)
    sys.exit(EXIT_OK if report.identical else EXIT_CHANGES)


def _show_report(ctx: click.Context, args: tuple[str, ...], workers: int):  # type: ignore[no-untyped-def]
    from ..cachedir import default_cache_dir
    from ..manifest import load_manifests
    from ..show import parse_targets, show

    targets = parse_targets(args, load_manifests)
    with _connect(ctx) as conn:
        return show(conn.backend.reader, targets, cache_root=default_cache_dir(), workers=workers)


def _write(text: str, out: Path | None) -> None:
    if out is not None:
        out.write_text(text)
        click.echo(escape.text(f"wrote {out}"), err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="PROJECT/NAME[@VERSION|ALIAS]... | PATH...")
@_report_options
@_reading_workers_option
@click.pass_context
def show(ctx: click.Context, args: tuple[str, ...], fmt: str, out: Path | None, workers: int) -> None:
    """Show datasets as the server holds them: versions, lineage, aliases, states, files, statistics, checks
    and the tasks that used each version.

    Give datasets (PROJECT/NAME, or PROJECT/NAME@VERSION or @ALIAS for one version) or manifest paths (their
    datasets, with the aliases the manifests give them).
    """
    from ..render.show import render_show

    _write(render_show(_show_report(ctx, args, workers), fmt), out)


@cli.command()
@click.argument("args", nargs=-1, metavar="[PATH|PROJECT/NAME]...")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "json"]), default="mermaid",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of stdout.")
@click.option("--full", is_flag=True, help="Keep every version and edge (no collapsed chains, no trimmed edges).")
@_reading_workers_option
@click.pass_context
def graph(ctx: click.Context, args: tuple[str, ...], fmt: str, out: Path | None, full: bool, workers: int) -> None:
    """The version DAG of datasets (default: the manifests under ./manifests): long linear chains of versions
    collapsed, edges that another path implies trimmed."""
    from ..lineage import collapse_chains, trim_transitive
    from ..render.graph import render_graph
    from ..show import combined_lineage

    if not args:
        if not Path("manifests").is_dir():
            raise ReconcileError("graph: give manifest paths or PROJECT/NAME (there is no ./manifests folder)")
        args = ("manifests",)
    lineage = combined_lineage(_show_report(ctx, args, workers))
    if not full:
        lineage = collapse_chains(trim_transitive(lineage))
    _write(render_graph(lineage, fmt), out)


@cli.command()
@click.argument("args", nargs=-1, metavar="[PATH|PROJECT]...")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report to this file instead of stdout.")
@_workers_option
@click.pass_context
def usage(ctx: click.Context, args: tuple[str, ...], fmt: str, out: Path | None, workers: int) -> None:
    """Storage per dataset and version: bytes stored (own chunks, file list, artifacts), file bytes owned and
    inherited, archived bytes, and what the manifests' retention policies would free.

    Give manifest paths (their datasets' projects, and their policies) or projects (default: ./manifests).
    """
    from ..engine import storage_usage
    from ..manifest import load_manifests
    from ..render.usage import render_usage

    if not args:
        if not Path("manifests").is_dir():
            raise ReconcileError("usage: give manifest paths or projects (there is no ./manifests folder)")
        args = ("manifests",)
    paths = [Path(a) for a in args if Path(a).exists()]
    projects = [a for a in args if not Path(a).exists()]
    state = load_manifests(paths) if paths else None
    with _connect(ctx) as conn:
        report = storage_usage(conn.backend.reader, state, projects, workers=workers, progress=_is_tty(sys.stderr))
    _write(render_usage(report, fmt), out)


@cli.command()
@click.argument("ref", metavar="PROJECT/NAME@VERSION|ID")
@click.option("--croissant", is_flag=True, required=True,
              help="Croissant 1.0 JSON-LD (MLCommons), with the card's Responsible-AI fields.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of stdout.")
@click.pass_context
def export(ctx: click.Context, ref: str, croissant: bool, out: Path | None) -> None:
    """Describe a live version in another format: its files (sha256, the chunk holding each), splits, classes,
    licence and Responsible-AI fields from its card."""
    import json

    from ..cachedir import default_cache_dir
    from ..export import version_export
    from ..render.croissant import croissant_jsonld

    with _connect(ctx) as conn:
        data = version_export(conn.backend.reader, ref, cache_root=default_cache_dir())
    _write(json.dumps(croissant_jsonld(data), indent=2, ensure_ascii=False) + "\n", out)
