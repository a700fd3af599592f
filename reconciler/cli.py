"""The ``reconcile`` command line: parse -> build -> call -> render -> exit code.

The only module that writes to stdout. Exit codes are a contract (see :data:`EXIT_CODES_HELP`): 0 success or
nothing to change, 1 any error (usage errors included), 2 only "changes present" (``plan --detailed-exitcode``)
or "different" (``diff``). :class:`ReconcileError` and click's usage errors are printed as one line each;
``--debug`` shows tracebacks. Everything printed from user data is escaped (:mod:`reconciler.escape`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from . import __version__, escape
from .diagnostics import ReconcileError

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2

EXIT_CODES_HELP = """\b
Exit codes (every command):
  0  success: nothing to change, or the changes were applied
  1  any error: usage, manifests, server, conflicts, apply not confirmed
  2  only "changes present" (plan --detailed-exitcode) or "different" (diff)"""


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


class UsageFailure(click.ClickException):
    """A usage error (unknown option, missing argument, bad value): one line, exit 1 (2 means "changes")."""

    exit_code = EXIT_ERROR

    def __init__(self, err: click.ClickException) -> None:
        super().__init__(err.format_message())
        self.ctx: click.Context | None = getattr(err, "ctx", None)
        self.help_only = type(err).__name__ == "NoArgsIsHelpError"  # bare 'reconcile': the help, then exit 1

    def show(self, file: Any = None) -> None:
        if self.help_only:
            click.echo(self.message, err=True)
            return
        message = self.message.rstrip()
        if not message.endswith((".", "?", "!")):
            message += "."
        hint = f" Try '{self.ctx.command_path} --help'." if self.ctx is not None else ""
        click.echo(escape.text(f"error: {message}{hint}"), err=True)


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A global option given after the command name: it counts as if it had been given before it."""
    opts = ctx.find_object(GlobalOptions)
    if opts is None or value is None or value is False or param.name is None:
        return value
    new = replace(opts, **{param.name: value})
    here: click.Context | None = ctx
    while here is not None:
        if here.obj is opts:
            here.obj = new
        here = here.parent
    return value


_GLOBAL_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--local", {"is_flag": True,
                 "help": "Run against an embedded ClearML-compatible server in ./.reconcile/."}),
    ("--data-dir", {"type": click.Path(file_okay=False, path_type=Path), "default": None,
                    "help": "Data directory of the embedded server (default: ./.reconcile)."}),
    ("--debug", {"is_flag": True, "help": "Show tracebacks."}),
)


def _global_options(*, after_command: bool) -> list[click.Parameter]:
    """The options every command accepts before its name and, as users type them, after it too."""
    if after_command:
        return [click.Option([decl], expose_value=False, callback=_set_global, **attrs)
                for decl, attrs in _GLOBAL_OPTIONS]
    return [click.Option([decl], **attrs) for decl, attrs in _GLOBAL_OPTIONS]


class ReconcileCommand(click.Command):
    """A subcommand: also accepts the global options, all of them or those named by ``global_options``, except
    where it has an option of the same name."""

    def __init__(self, *args: Any, global_options: tuple[str, ...] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        taken = {opt for p in self.params for opt in p.opts}
        self.params += [p for p in _global_options(after_command=True)
                        if not taken & set(p.opts) and (global_options is None or p.opts[0] in global_options)]


class ReconcileGroup(click.Group):
    """Turns the project's own errors into one-line messages and exit code 1, usage errors included."""

    command_class = ReconcileCommand

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageFailure:
            raise
        except click.ClickException as err:
            raise UsageFailure(err) from err

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ReconcileError as err:
            opts = ctx.find_object(GlobalOptions)
            _fail(err, bool(opts and opts.debug))
        except UsageFailure:
            raise
        except click.ClickException as err:
            raise UsageFailure(err) from err
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=ReconcileGroup, context_settings={"help_option_names": ["-h", "--help"]},
             params=_global_options(after_command=False), epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="reconcile")
@click.pass_context
def cli(ctx: click.Context, local: bool, data_dir: Path | None, debug: bool) -> None:
    """Declarative reconciler for ClearML Datasets.

    The global options (--local, --data-dir, --debug) may also follow the command name.
    """
    ctx.obj = GlobalOptions(local=local, debug=debug, data_dir=data_dir)


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
    """Run the embedded ClearML-compatible server in the foreground."""
    from .localserver import LocalServer

    srv = LocalServer(data_dir, host=host, port=port, files_port=files_port, access_key=access_key,
                      secret_key=secret_key)
    try:
        srv.start()
    except (OSError, ValueError) as err:
        raise ReconcileError(f"cannot start the server: {err}") from err
    click.echo(escape.text(f"# ClearML-compatible server on {srv.api_url}, files on {srv.files_url} "
                           f"(data in {data_dir.resolve()})"), err=True)
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
        from .render.common import counted

        click.echo(f"ok: {counted(len(state.datasets), 'dataset')}, {counted(n_versions, 'version')}")


def _workers_default() -> int:
    import os

    return max(2, min(8, (os.cpu_count() or 2) * 2))


def _is_tty(stream: object) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def _color(stream: object) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    import os

    return _is_tty(stream) and "NO_COLOR" not in os.environ


def _connect(ctx: click.Context):  # type: ignore[no-untyped-def]
    from .connection import ConnectOptions, connect

    opts = ctx.find_object(GlobalOptions)
    assert opts is not None
    return connect(ConnectOptions(local=opts.local, data_dir=opts.data_dir),
                   lambda m: click.echo(escape.text(m), err=True))


_target_option = click.option(
    "--target", "targets", multiple=True, metavar="PROJECT/NAME[@VERSION]",
    help="Only these datasets or versions (and the parents they need). Repeatable.",
)
_prune_option = click.option(
    "--prune", is_flag=True, help="Archive versions this tool created that no manifest names."
)
_workers_option = click.option(
    "--workers", type=click.IntRange(1, 64), default=_workers_default, show_default="2 x cores, 2..8",
    help="Parallel hashing and upload workers.",
)


def _print_plan(plan, fmt: str, out: Path | None, show_files: str) -> None:  # type: ignore[no-untyped-def]
    import json

    from .render import plan_to_json, render_human, render_markdown
    from .render.markdown import MAX_COMMENT_CHARS

    limit = None if show_files == "all" else int(show_files)
    if out is not None:
        out.write_text(json.dumps(plan_to_json(plan), indent=2, sort_keys=True) + "\n")
    if fmt == "json":
        click.echo(json.dumps(plan_to_json(plan), indent=2, sort_keys=True))
    elif fmt == "markdown":
        full = render_markdown(plan, max_chars=10**12, file_limit=limit)
        if len(full) > MAX_COMMENT_CHARS and out is None:
            out = Path("reconcile-plan.json")
            out.write_text(json.dumps(plan_to_json(plan), indent=2, sort_keys=True) + "\n")
        click.echo(render_markdown(plan, full_plan_path=str(out) if out else None, file_limit=limit))
    else:
        click.echo(render_human(plan, color=_color(sys.stdout), file_limit=limit), nl=False)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also save the plan as JSON, for 'reconcile apply PLAN.json'.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes, 0 when there are none (without it: 0 either way).")
@click.option("--show-files", default="20", show_default=True, metavar="N|all",
              help="Files listed per version in text and markdown output.")
@_target_option
@_prune_option
@_workers_option
@click.pass_context
def plan(ctx: click.Context, paths: tuple[Path, ...], out: Path | None, fmt: str, detailed_exitcode: bool,
         show_files: str, targets: tuple[str, ...], prune: bool, workers: int) -> None:
    """Show what apply would change (a dry run).

    \b
    Exit codes: 0 success (changes or not), 1 error or conflicts;
    with --detailed-exitcode: 0 no changes, 2 changes present, 1 error.
    """
    from .engine import plan_manifests
    from .manifest import load_manifests
    from .plan import PlanOptions
    from .render.common import counted

    if show_files != "all" and not show_files.isdigit():
        raise click.BadParameter("expected a number or 'all'", param_hint="--show-files")
    state = load_manifests(paths)  # manifest errors come before any connection
    with _connect(ctx) as conn:
        _desired, _observed, the_plan = plan_manifests(conn.backend, state, PlanOptions(prune=prune, targets=targets),
                                                       workers=workers, progress=_is_tty(sys.stderr))
    _print_plan(the_plan, fmt, out, show_files)
    if the_plan.conflicts:
        raise ReconcileError(f"{counted(len(the_plan.conflicts), 'conflict')}: see the plan above")
    if detailed_exitcode and the_plan.has_changes:
        sys.exit(EXIT_CHANGES)


def _confirm(auto_approve: bool) -> None:
    """Ask on a terminal before a live apply; unattended, only --auto-approve lets it go on."""
    if auto_approve:
        return
    if not (_is_tty(sys.stdin) and _is_tty(sys.stdout)):
        raise ReconcileError("refusing to apply without confirmation: not a terminal; pass --auto-approve")
    # Written to stdout and read with readline: input() would put the prompt on stderr.
    click.echo("Do you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n"
               "  Enter a value: ", nl=False)
    answer = sys.stdin.readline()
    if answer.strip() != "yes":
        raise ReconcileError("apply cancelled")


def _lock_owner() -> str:
    import getpass
    import os
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001  (no user name in some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


@cli.command()
@click.argument("target", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--auto-approve", is_flag=True,
              help="Do not ask for confirmation (required when unattended; a saved plan never asks).")
@click.option("--lock-timeout", type=float, default=0.0, show_default=True,
              help="Seconds to wait for another apply to release the server lock.")
@click.option("--show-files", default="20", show_default=True, metavar="N|all")
@_target_option
@_prune_option
@_workers_option
@click.pass_context
def apply(ctx: click.Context, target: tuple[Path, ...], auto_approve: bool, lock_timeout: float, show_files: str,
          targets: tuple[str, ...], prune: bool, workers: int) -> None:
    """Make the server match the manifests (or execute a plan saved with 'plan --out').

    Applying manifests asks for confirmation on a terminal and needs --auto-approve when unattended. A saved
    plan was the review: it is applied without asking, and refused if the server changed since it was made.
    Exit 0: applied or nothing to do; 1: error, conflicts or not confirmed.
    """
    import contextlib
    import json

    from .apply import ApplyOptions, apply_plan, check_fresh
    from .clearml_backend import LockLease
    from .engine import observe_and_plan, resolve_desired
    from .observe import observe
    from .plan import PlanOptions, human_size
    from .render import plan_from_json
    from .render.common import counted
    from .sources import default_cache_dir

    saved = None
    desired = None
    if len(target) == 1 and target[0].suffix == ".json" and target[0].is_file():
        try:
            saved = plan_from_json(json.loads(target[0].read_text()), source=str(target[0]))
        except ValueError as err:
            raise ReconcileError(f"{target[0]}: not valid JSON ({err})") from None
        if targets or prune:
            raise ReconcileError("--target and --prune belong to 'plan' when applying a saved plan")
    else:
        desired = resolve_desired(target, workers=workers, progress=_is_tty(sys.stderr))
    with _connect(ctx) as conn, LockLease(conn.backend, _lock_owner(), wait=lock_timeout):
        backend = conn.backend
        if saved is not None:
            observed = observe(backend, saved.projects, {}, cache_root=default_cache_dir(),
                               include_managed=saved.prune)
            check_fresh(saved, observed)
            the_plan = saved
        else:
            assert desired is not None
            observed, the_plan = observe_and_plan(backend, desired, PlanOptions(prune=prune, targets=targets))
        _print_plan(the_plan, "text", None, show_files)
        if the_plan.conflicts:
            raise ReconcileError(f"{counted(len(the_plan.conflicts), 'conflict')}: nothing was applied")
        if not the_plan.has_changes:
            return
        if saved is None:
            _confirm(auto_approve)
        real_stdout = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):  # the SDK prints; stdout carries only our report
            result = apply_plan(the_plan, backend, observed,
                                ApplyOptions(workers=workers, show_progress=_is_tty(sys.stderr)),
                                report=lambda line: click.echo(escape.text(line), file=real_stdout))
    click.echo(
        f"Apply complete! {counted(result.actions, 'action')}, {counted(len(result.created), 'version')} created, "
        f"{counted(result.uploaded_files, 'file')} uploaded ({human_size(result.uploaded_bytes)}) in "
        f"{result.seconds:.1f}s."
    )


@cli.command()
@click.pass_context
def unlock(ctx: click.Context) -> None:
    """Break the apply lock left on the server by a crashed run."""
    with _connect(ctx) as conn:
        info = conn.backend.lock_info()
        if info is None:
            click.echo("No lock is held.")
            return
        conn.backend.release_lock(info["id"])
        click.echo(escape.text(f"Released the lock held by {info['owner']}."))


# --- diff ----------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("args", nargs=-1, required=True, metavar="PATH... | VERSION VERSION")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "html"]), default="text",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report to this file instead of stdout (the usual place for html).")
@_workers_option
@click.pass_context
def diff(ctx: click.Context, args: tuple[str, ...], fmt: str, out: Path | None, workers: int) -> None:
    """Compare the manifests with the server, or two live versions (PROJECT/NAME@VERSION or dataset ids).

    Exit 0: identical, 2: differences, 1: error.
    """
    import contextlib

    from .engine import desired_diff, live_diff, resolve_desired
    from .render import render_report
    from .report import split_arguments

    refs = split_arguments(args)
    desired = None if refs else resolve_desired([Path(a) for a in args], workers=workers,
                                                progress=_is_tty(sys.stderr))
    with _connect(ctx) as conn, contextlib.redirect_stdout(sys.stderr):  # the SDK prints; stdout is the report
        if refs:
            report = live_diff(conn.backend, refs[0], refs[1], workers=workers)
        else:
            assert desired is not None
            report = desired_diff(conn.backend, desired, workers=workers)
    text = render_report(report, fmt)
    if out is not None:
        out.write_text(text)
        click.echo(escape.text(f"wrote {out}"), err=True)
    else:
        click.echo(text, nl=False)
    sys.exit(EXIT_OK if report.identical else EXIT_CHANGES)


def main() -> None:
    cli(prog_name="reconcile")


if __name__ == "__main__":
    main()
