"""The ``reconcile`` command line: parse -> build -> call -> render -> exit code.

The only module that writes to stdout. Exit codes: 0 success / no changes, 1 error, 2 changes present.
Only :class:`ReconcileError` is caught and printed as one line per diagnostic; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click

from . import __version__
from .diagnostics import ReconcileError

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    local: bool
    debug: bool
    data_dir: Path | None


def _fail(err: ReconcileError, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(err, file=sys.stderr)
    click.echo(str(err), err=True)
    sys.exit(EXIT_ERROR)


class ReconcileGroup(click.Group):
    """Turns the project's own errors into one-line messages and exit code 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ReconcileError as err:
            opts = ctx.find_object(GlobalOptions)
            _fail(err, bool(opts and opts.debug))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=ReconcileGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--local", is_flag=True, help="Run against an embedded ClearML-compatible server in ./.reconcile/.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory of the embedded server (default: ./.reconcile).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="reconcile")
@click.pass_context
def cli(ctx: click.Context, local: bool, data_dir: Path | None, debug: bool) -> None:
    """Declarative reconciler for ClearML Datasets."""
    ctx.obj = GlobalOptions(local=local, debug=debug, data_dir=data_dir)


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".reconcile"),
              show_default=True, help="Where the server keeps its database and files.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8008, show_default=True, help="API port (0: a free port).")
@click.option("--files-port", type=int, default=None, help="File server port (default: same server, /files).")
@click.option("--access-key", envvar="RECONCILE_SERVER_ACCESS_KEY", default=None, help="Fixed access key.")
@click.option("--secret-key", envvar="RECONCILE_SERVER_SECRET_KEY", default=None, help="Fixed secret key.")
def server(data_dir: Path, host: str, port: int, files_port: int | None, access_key: str | None,
           secret_key: str | None) -> None:
    """Run the embedded ClearML-compatible server in the foreground."""
    from .localserver import LocalServer

    srv = LocalServer(data_dir, host=host, port=port, access_key=access_key, secret_key=secret_key)
    srv.start()
    click.echo(f"# ClearML-compatible server on {srv.api_url} (data in {data_dir.resolve()})", err=True)
    click.echo("# paste these lines to point any ClearML code at it:", err=True)
    for name, value in srv.client_env().items():
        click.echo(f"export {name}={value}")
    sys.stdout.flush()
    try:
        srv.wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(paths: tuple[Path, ...], fmt: str) -> None:
    """Check manifests: YAML, schema and semantics. Every problem in every file is reported."""
    import json

    from .manifest import load_manifests

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
        click.echo(f"ok: {len(state.datasets)} datasets, {n_versions} versions")


def main() -> None:
    cli(prog_name="reconcile")


if __name__ == "__main__":
    main()
