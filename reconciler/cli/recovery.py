"""What an interrupted apply leaves behind: ``unlock`` (its lock) and ``drafts`` (its unfinished versions)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import escape
from . import _confirm, _connect, _counted, _lock_owner, cli


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--project", "projects", multiple=True, metavar="PROJECT",
              help="Break the lock of this project (repeatable). Default: the manifests' projects, or every lock.")
@click.pass_context
def unlock(ctx: click.Context, paths: tuple[Path, ...], projects: tuple[str, ...]) -> None:
    """Break the apply locks a crashed run left (of the manifests' projects; of every project without PATHS)."""
    import time

    from ..clearml_backend import break_locks
    from ..manifest import load_manifests

    scope = set(projects) | ({ds.key.project for ds in load_manifests(paths).datasets} if paths else set())
    with _connect(ctx) as conn:
        broken = break_locks(conn.backend.api, sorted(scope) if scope else None)
    if not broken:
        click.echo("No lock is held.")
    for info in broken:
        click.echo(escape.text(f"Released the {info.describe(time.time())}."))


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--project", "projects", multiple=True, metavar="PROJECT",
              help="Look in this project (repeatable); default: the manifests' projects, or everywhere.")
@click.option("--discard", is_flag=True, help="Delete the drafts found (and the chunks they uploaded).")
@click.option("--auto-approve", is_flag=True, help="Do not ask before discarding.")
@click.option("--lock-timeout", type=float, default=0.0, show_default=True,
              help="Seconds to wait for a running apply to release the server lock.")
@click.pass_context
def drafts(ctx: click.Context, paths: tuple[Path, ...], projects: tuple[str, ...], discard: bool,
           auto_approve: bool, lock_timeout: float) -> None:
    """List the drafts this tool left on the server (interrupted applies); --discard deletes them.

    The next apply resumes a draft of a version the manifests still name; discard the ones you no longer want.
    """
    from ..engine import discard_drafts, managed_drafts
    from ..manifest import load_manifests

    scope = set(projects)
    if paths:
        scope |= {ds.key.project for ds in load_manifests(paths).datasets}
    with _connect(ctx) as conn:
        found = managed_drafts(conn.backend.reader, tuple(sorted(scope)))
        if not found:
            click.echo("No drafts left by this tool" + (f" in {', '.join(sorted(scope))}." if scope else "."))
            return
        for d in found:
            click.echo(f"  {d.key}  id {d.id}  status {d.status}  last update {d.last_update or '?'}")
        if not discard:
            click.echo(f"{_counted(len(found), 'draft')}; 'reconcile apply' resumes them, "
                       "'reconcile drafts --discard' deletes them.")
            return
        _confirm(auto_approve, f"discard {_counted(len(found), 'draft')}")
        n = discard_drafts(conn.backend, found, lock_owner=_lock_owner(), lock_wait=lock_timeout,
                           report=click.echo, notice=lambda m: click.echo(m, err=True))
        click.echo(f"Discarded {_counted(n, 'draft')}.")
