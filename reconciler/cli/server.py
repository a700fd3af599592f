"""``reconcile server``: the embedded ClearML-compatible server, in the foreground."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import escape
from ..diagnostics import ReconcileError
from . import cli


@cli.command(global_options=("--debug",))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".reconcile"),
              show_default=True, help="Where the server keeps its database and files.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8008, show_default=True, help="API port (0: a free port).")
@click.option("--files-port", type=int, default=None,
              help="File server port (default: the API port + 1; a free port when --port is 0).")
@click.option("--access-key", envvar="RECONCILE_SERVER_ACCESS_KEY", default=None, help="Fixed access key.")
@click.option("--secret-key", envvar="RECONCILE_SERVER_SECRET_KEY", default=None, help="Fixed secret key.")
def server(data_dir: Path, host: str, port: int, files_port: int | None, access_key: str | None,
           secret_key: str | None) -> None:
    """Run the embedded ClearML-compatible server in the foreground; Ctrl-C or SIGTERM stops it (exit 0)."""
    from ..localserver import LocalServer

    srv = LocalServer(data_dir, host=host, port=port, files_port=files_port, access_key=access_key,
                      secret_key=secret_key)
    try:
        srv.start()
    except (OSError, ValueError) as err:
        raise ReconcileError(f"cannot start the server: {err}") from err
    import signal

    from ..cachedir import default_cache_dir
    from ..webpages import attach_pages

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM (kill, CI runners, containers) stops it as Ctrl-C does, from before the exports are printed (a
    # caller may signal as soon as it has read them); a SIGINT the parent ignores (a background job) stays ignored
    signal.signal(signal.SIGTERM, stop)
    try:
        attach_pages(srv, cache_root=default_cache_dir())
        click.echo(escape.text(f"# ClearML-compatible server on {srv.api_url}, files on {srv.files_url} "
                               f"(data in {data_dir.resolve()})"), err=True)
        click.echo("# paste these lines to point any ClearML code at it:", err=True)
        for name, value in srv.client_env().items():
            click.echo(f"export {name}={value}")
        sys.stdout.flush()
        srv.wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
