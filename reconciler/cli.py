"""The ``reconcile`` command line: parse -> build -> call -> render -> exit code.

The only module that writes to stdout. Exit codes are a contract (see :data:`EXIT_CODES_HELP`): 0 success or
nothing to change, 1 any error (usage errors included), 2 only "changes present" (``plan --detailed-exitcode``)
or "different" (``diff``). :class:`ReconcileError` and click's usage errors are printed as one line each;
``--debug`` shows tracebacks. Everything printed from user data is escaped (:mod:`reconciler.escape`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__, escape
from .diagnostics import Diagnostic, ReconcileError

if TYPE_CHECKING:
    from .plan.actions import Plan

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
    timeout: float = 120.0


def _fail(err: ReconcileError, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(err, file=sys.stderr)
    click.echo(str(err), err=True)
    sys.exit(EXIT_ERROR)


EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


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
    ("--timeout", {"type": click.FloatRange(1, None), "default": 120.0, "show_default": True,
                   "envvar": "RECONCILE_TIMEOUT",
                   "help": "Longest wait, in seconds, for a server that does not answer, retries included."}),
)


def _global_options(*, after_command: bool) -> list[click.Parameter]:
    """The options every command accepts before its name and, as users type them, after it too."""
    if after_command:  # no defaults or environment here: only what is typed after the name may override
        return [click.Option([decl], expose_value=False, callback=_set_global,
                             **{k: v for k, v in attrs.items() if k not in ("default", "show_default", "envvar")})
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

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as err:  # some parser errors carry no context: the hint needs the command's
            if err.ctx is None:
                err.ctx = click.Context(self, info_name=info_name, parent=parent)
            raise


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
        from .clearml_backend import Interrupted

        try:
            return super().invoke(ctx)
        except Interrupted as err:
            _stopped(f"stopped: {'; '.join(d.message for d in err.diagnostics)}; the lock is released and the "
                     "next apply resumes",
                     EXIT_SIGNAL.get(err.signal_name, 130))
        except ReconcileError as err:
            opts = ctx.find_object(GlobalOptions)
            _fail(err, bool(opts and opts.debug))
        except UsageFailure:
            raise
        except click.ClickException as err:
            raise UsageFailure(err) from err
        except KeyboardInterrupt:
            _stopped("interrupted", 130)


def _stopped(message: str, code: int) -> None:
    """Exit now: worker threads still waiting on the network must not hold the process open."""
    import os

    click.echo(message, err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.group(cls=ReconcileGroup, context_settings={"help_option_names": ["-h", "--help"]},
             params=_global_options(after_command=False), epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="reconcile")
@click.pass_context
def cli(ctx: click.Context, local: bool, data_dir: Path | None, debug: bool, timeout: float) -> None:
    """Declarative reconciler for ClearML Datasets.

    The global options (--local, --data-dir, --debug, --timeout) may also follow the command name.
    """
    ctx.obj = GlobalOptions(local=local, debug=debug, data_dir=data_dir, timeout=timeout)


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
    from .localserver import LocalServer

    srv = LocalServer(data_dir, host=host, port=port, files_port=files_port, access_key=access_key,
                      secret_key=secret_key)
    try:
        srv.start()
    except (OSError, ValueError) as err:
        raise ReconcileError(f"cannot start the server: {err}") from err
    import signal

    from .cachedir import default_cache_dir
    from .webpages import attach_pages

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


@cli.command(global_options=("--debug",))
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
        from .wording import counted

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
    from .clearml_backend import Cancel
    from .connection import ConnectOptions, connect

    opts = ctx.find_object(GlobalOptions)
    assert opts is not None
    cancel = Cancel()
    _stop_on_signals(cancel)
    return connect(ConnectOptions(local=opts.local, data_dir=opts.data_dir, policy=_wait_policy(opts.timeout),
                                  cancel=cancel),
                   lambda m: click.echo(escape.text(m), err=True))


def _wait_policy(timeout: float):  # type: ignore[no-untyped-def]
    """How long to wait for a server (``--timeout``): the whole wait, one read, one connection."""
    from .clearml_backend import WaitPolicy

    return WaitPolicy(deadline=timeout, read_timeout=min(60.0, timeout), connect_timeout=min(10.0, timeout))


def _stop_on_signals(cancel: object) -> None:
    """SIGINT and SIGTERM stop the run: waits and uploads end, the lock is released, exit 130/143.

    The first signal cancels and unwinds the main thread; a second one while stopping is ignored (no traceback).
    """
    import signal

    from .clearml_backend import Cancel, Interrupted

    assert isinstance(cancel, Cancel)

    def handler(signum: int, _frame: object) -> None:
        if cancel.is_set:
            return
        name = signal.Signals(signum).name
        cancel.set(name)
        raise Interrupted(name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


_target_option = click.option(
    "--target", "targets", multiple=True, metavar="PROJECT/NAME[@VERSION]",
    help="Only these datasets or versions (and the parents they need). Repeatable.",
)
_prune_option = click.option(
    "--prune", is_flag=True,
    help="Archive versions this tool created that no manifest names, in the manifests' projects only.",
)
_prune_scope_option = click.option(
    "--prune-scope", "prune_scope", multiple=True, metavar="PROJECT",
    help="Also observe (and with --prune, prune) this project, though no manifest names it. Repeatable.",
)
_queue_option = click.option(
    "--queue", default=None, metavar="NAME",
    help="Build the versions on ClearML agents listening on this queue (see the README: apply on agents).",
)
_mount_option = click.option(
    "--shared-mount", "shared_mounts", multiple=True, metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --queue: a folder the agents see at the same path, for path: sources outside the repository. "
         "Repeatable.",
)
_agent_wait_option = click.option(
    "--agent-wait", type=click.FloatRange(0, None), default=None, metavar="SECONDS",
    help="With --queue: the queue's agents are started on demand (an autoscaler): do not require a listening "
         "agent up front; a step no agent takes within SECONDS fails (taken off the queue).",
)


def _workers(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--workers", type=click.IntRange(1, 64), default=_workers_default,
                        show_default="2 x cores, 2..8", help=help_text)


_workers_option = _workers("Parallel hashing and upload workers.")
_reading_workers_option = _workers("Parallel workers hashing local files and reading the server (nothing is "
                                   "uploaded).")


def _print_plan(plan, fmt: str, out: Path | None, show_files: str) -> None:  # type: ignore[no-untyped-def]
    from .plancodec import write_plan_json
    from .render import render_human, render_markdown

    def save(path: Path) -> None:  # written as it is produced: a plan of a million files is never held whole
        with open(path, "w", encoding="utf-8") as f:
            write_plan_json(plan, f.write)

    limit = None if show_files == "all" else int(show_files)
    if out is not None:
        save(out)
    if fmt == "none":
        return
    if fmt == "json":
        write_plan_json(plan, sys.stdout.write)
        sys.stdout.flush()
    elif fmt == "markdown":
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
@click.option("--check-storage", "check_storage", flag_value="presence",
              help="Also check that every data chunk of the finalized versions is still in storage (one HEAD request "
                   "per chunk).")
@click.option("--check-storage-content", "check_storage", flag_value="content",
              help="Also check that every data chunk of the finalized versions hashes to the sha256 recorded with it "
                   "(downloads every chunk once: as many bytes as the versions store).")
@click.option("--drift-only", is_flag=True,
              help="Report only what changed on the server since the last apply (tags or description edited, "
                   "versions archived, URL sources changed); with --detailed-exitcode, exit 2 when there is drift.")
@_target_option
@_prune_option
@_prune_scope_option
@_queue_option
@_mount_option
@_agent_wait_option
@_reading_workers_option
@click.pass_context
def plan(ctx: click.Context, paths: tuple[Path, ...], out: Path | None, fmt: str, detailed_exitcode: bool,
         show_files: str, check_storage: str | None, drift_only: bool, targets: tuple[str, ...], prune: bool,
         prune_scope: tuple[str, ...], queue: str | None, shared_mounts: tuple[Path, ...], agent_wait: float | None,
         workers: int) -> None:
    """Show what apply would change (a dry run).

    \b
    Exit codes: 0 success (changes or not), 1 error or conflicts;
    with --detailed-exitcode: 0 no changes, 2 changes present, 1 error.
    With --drift-only --detailed-exitcode: 0 no drift, 2 drift present, 1 error.
    """
    from .engine import Run
    from .engine import plan as plan_use_case
    from .manifest import load_manifests
    from .plan.actions import PlanOptions
    from .wording import counted

    if show_files != "all" and not show_files.isdigit():
        raise click.BadParameter("expected a number or 'all'", param_hint="--show-files")
    if (shared_mounts or agent_wait is not None) and not queue:
        raise click.BadParameter("only with --queue", param_hint="--shared-mount/--agent-wait")
    state = load_manifests(paths)  # manifest errors come before any connection
    with _connect(ctx) as conn:
        run = Run(conn.backend.reader, state, PlanOptions(prune=prune, targets=targets, prune_scope=prune_scope),
                  workers=workers, progress=_is_tty(sys.stderr), check_storage=check_storage or "")
        the_plan = plan_use_case(run, conn.backend,
                                 queue=_queue_options(queue, shared_mounts, None, agent_wait=agent_wait))
    if drift_only:
        from .render.drift import render_drift

        if out is not None:
            _print_plan(the_plan, "none", out, show_files)
        click.echo(render_drift(the_plan, fmt), nl=False)
        if detailed_exitcode and the_plan.drift:
            sys.exit(EXIT_CHANGES)
        return
    _print_plan(the_plan, fmt, out, show_files)
    if the_plan.conflicts:
        raise ReconcileError(f"{counted(len(the_plan.conflicts), 'conflict')}: see the plan above")
    _raise_held(the_plan)
    if detailed_exitcode and the_plan.has_changes:
        sys.exit(EXIT_CHANGES)


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

    from .checks.results import checks_to_json, summary
    from .engine import check_offline
    from .manifest import load_manifests
    from .render.checks import render_checks_markdown, render_checks_text

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


def _raise_held(the_plan: Plan) -> None:
    """Exit 1 naming each failed check (file:line:col, first offending files) when versions are held."""
    if not the_plan.held:
        return
    diags = [Diagnostic(f"check {r.name!r} ({r.rule}) of {c.version} failed: {r.message}"
                        + (f"; offending: {', '.join(r.offending[:5])}" if r.offending else "")
                        + (f" and {r.offending_count - 5} more" if r.offending_count > 5 else ""), r.span)
             for c in the_plan.checks for r in c.failed]
    diags.append(Diagnostic(f"{_counted(len(the_plan.held), 'version')} held by failing checks (not created, "
                            f"finalized, published nor aliased): {', '.join(str(h.version) for h in the_plan.held)}"))
    raise ReconcileError(diags)


def _confirm(auto_approve: bool, what: str = "apply") -> None:
    """Ask on a terminal before ``what`` (a live apply, a discard); unattended, only --auto-approve lets it go on."""
    if auto_approve:
        return
    if not (_is_tty(sys.stdin) and _is_tty(sys.stdout)):
        raise ReconcileError(f"refusing to {what} without confirmation: not a terminal; pass --auto-approve")
    # Written to stdout and read with readline: input() would put the prompt on stderr.
    click.echo("Do you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n"
               "  Enter a value: ", nl=False)
    answer = sys.stdin.readline()
    if answer.strip() != "yes":
        raise ReconcileError(f"{what} cancelled")


def _counted(n: int, noun: str) -> str:
    from .wording import counted

    return counted(n, noun)


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
@click.option("--lock-ttl", type=click.FloatRange(3, None), default=120.0, show_default=True,
              help="Lease of the server lock: renewed while this run lives; a crashed run's lock expires after it.")
@click.option("--show-files", default="20", show_default=True, metavar="N|all",
              help="Files listed per version in the plan shown before applying.")
@_target_option
@_prune_option
@_prune_scope_option
@_queue_option
@_mount_option
@click.option("--agent-image", default=None, metavar="IMAGE",
              help="With --queue: the docker image agents in docker mode run the steps in (it must have reconcile).")
@_agent_wait_option
@click.option("--step-timeout", type=click.FloatRange(10, None), default=None, metavar="SECONDS",
              help="With --queue: a running step whose task and agent show no sign of life for this long fails "
                   "(the agent died), naming the step and the agent; the lock is released.  [default: 300]")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one JSON event per line on stdout (README: Apply events as JSON); needs --auto-approve "
                   "or a saved plan.")
@_workers_option
@click.pass_context
def apply(ctx: click.Context, target: tuple[Path, ...], auto_approve: bool, lock_timeout: float, lock_ttl: float,
          show_files: str, targets: tuple[str, ...], prune: bool, prune_scope: tuple[str, ...], queue: str | None,
          shared_mounts: tuple[Path, ...], agent_image: str | None, agent_wait: float | None,
          step_timeout: float | None, fmt: str, workers: int) -> None:
    """Make the server match the manifests (or execute a plan saved with 'plan --out').

    Applying manifests asks for confirmation on a terminal and needs --auto-approve when unattended. A saved
    plan was the review: it is applied without asking, and refused if the server changed since it was made.
    Exit 0: applied or nothing to do; 1: error, conflicts or not confirmed; 130/143: stopped by SIGINT/SIGTERM
    (the lock is released; the next apply resumes).
    """

    from .apply import ApplyOptions
    from .engine import Run
    from .engine import apply as apply_use_case
    from .events import ApplyComplete, Error, Notice, PlanReady
    from .manifest import load_manifests
    from .plan.actions import PlanOptions
    from .plancodec import read_plan
    from .render import render_human
    from .render.events import ConsoleView, JsonView
    from .sources import forget_hashes

    if (shared_mounts or agent_image) and not queue:
        raise click.BadParameter("only with --queue", param_hint="--shared-mount/--agent-image")
    if (agent_wait is not None or step_timeout is not None) and not queue:
        raise click.BadParameter("only with --queue", param_hint="--agent-wait/--step-timeout")
    saved = None
    state = None
    if len(target) == 1 and target[0].suffix == ".json" and target[0].is_file():
        saved = read_plan(target[0])
        if targets or prune or prune_scope:
            raise ReconcileError("--target, --prune and --prune-scope belong to 'plan' when applying a saved plan")
    else:
        state = load_manifests(target)
    if fmt == "json" and saved is None and not auto_approve:
        raise ReconcileError("apply --format json cannot ask for confirmation: pass --auto-approve (or a saved plan)")
    real_stdout = sys.stdout
    shown: list[Plan] = []
    limit = None if show_files == "all" else int(show_files)
    from . import __version__

    view = JsonView(real_stdout, tool_version=__version__) if fmt == "json" else ConsoleView(
        real_stdout, sys.stderr, tty=_is_tty(sys.stderr))

    def show(p: Plan) -> None:
        shown.append(p)
        if fmt == "json":
            s = p.summary()
            view(PlanReady(render_human(p, color=False, file_limit=limit), len(p.actions), s.create, s.update,
                           s.archive, s.delete, s.restore, s.freed_bytes))
        else:
            _print_plan(p, "text", None, show_files)

    try:
        with _connect(ctx) as conn:
            run = None if state is None else Run(
                conn.backend.reader, state, PlanOptions(prune=prune, targets=targets, prune_scope=prune_scope),
                workers=workers, progress=_is_tty(sys.stderr))
            result = apply_use_case(
                conn.backend, run=run, saved=saved,
                options=ApplyOptions(workers=workers, forget_hashes=forget_hashes),
                lock_owner=_lock_owner(), lock_wait=lock_timeout, lock_ttl=lock_ttl,
                show=show,
                confirm=lambda _p: None if saved is not None else _confirm(auto_approve),
                emit=view,
                notice=lambda line: view(Notice(line)),
                queue=_queue_options(queue, shared_mounts, agent_image, agent_wait=agent_wait,
                                     step_timeout=step_timeout),
            )
        if result is None:
            view(ApplyComplete(False, 0, 0, 0, 0, 0.0))
        else:
            view(ApplyComplete(True, result.actions, len(result.created), result.uploaded_files,
                               result.uploaded_bytes, result.seconds))
        if shown:
            _raise_held(shown[-1])
    except ReconcileError as err:
        if fmt == "json":
            for d in err.diagnostics:
                view(Error(str(d)))
        raise


def _queue_options(queue: str | None, mounts: tuple[Path, ...], image: str | None, *,  # type: ignore[no-untyped-def]
                   agent_wait: float | None = None, step_timeout: float | None = None):
    if not queue:
        return None
    from .dispatch import QueueOptions

    return QueueOptions(queue=queue, mounts=tuple(m.resolve() for m in mounts),
                        image=image, agent_wait=agent_wait,
                        **({"step_timeout": step_timeout} if step_timeout is not None else {}))


@cli.command("agent-step", hidden=True, global_options=("--debug", "--timeout"))
@click.option("--task", "task_id", envvar="CLEARML_TASK_ID", required=True,
              help="The version's task (the agent sets CLEARML_TASK_ID).")
@_workers_option
@click.pass_context
def agent_step(ctx: click.Context, task_id: str, workers: int) -> None:
    """Build one version of an 'apply --queue' (run by a ClearML agent, as the version's own task)."""
    from .agentstep import connect_here, read_step, run_step
    from .apply import ApplyFailed
    from .clearml_backend import Cancel
    from .events import StepDone, StepError
    from .render.events import AgentStepView
    from .sources import forget_hashes

    opts = ctx.find_object(GlobalOptions)
    assert opts is not None
    cancel = Cancel()
    _stop_on_signals(cancel)
    view = AgentStepView(sys.stdout, sys.stderr, tty=False)
    try:
        backend = connect_here(policy=_wait_policy(opts.timeout), cancel=cancel)
        step = read_step(backend, task_id)
        result = run_step(backend, task_id, step, workers=workers, forget_hashes=forget_hashes, emit=view)
    except ApplyFailed as err:
        view(StepError(err.diagnostics[0].message))
        sys.exit(EXIT_ERROR)
    except ReconcileError as err:
        if opts.debug:
            import traceback

            traceback.print_exception(err, file=sys.stderr)
        view(StepError("; ".join(d.message for d in err.diagnostics)))
        sys.exit(EXIT_ERROR)
    view(StepDone(step.version, result.uploaded_files, result.seconds))


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--project", "projects", multiple=True, metavar="PROJECT",
              help="Break the lock of this project (repeatable). Default: the manifests' projects, or every lock.")
@click.pass_context
def unlock(ctx: click.Context, paths: tuple[Path, ...], projects: tuple[str, ...]) -> None:
    """Break the apply locks a crashed run left (of the manifests' projects; of every project without PATHS)."""
    import time

    from .clearml_backend import break_locks
    from .manifest import load_manifests

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
    from .engine import discard_drafts, managed_drafts
    from .manifest import load_manifests

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


@cli.command(global_options=("--debug",))
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--project", default="datasets", show_default=True, help="ClearML project of the dataset.")
@click.option("--name", default="my_dataset", show_default=True, help="Dataset name (the file is NAME.yaml).")
def init(directory: Path, project: str, name: str) -> None:
    """Write a starter manifest into DIRECTORY, with the schema beside it for editors. Overwrites nothing."""
    from .scaffold import InitOptions, init_manifests

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
    from .importer import gather, manifest_files, resolve_targets, write_manifests
    from .sources import default_cache_dir

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
    from .pulling import PullOptions, Selection
    from .pulling import pull as pull_version

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
    from .engine import Run, diff_manifests, diff_versions
    from .manifest import load_manifests
    from .plan.actions import PlanOptions
    from .render import render_report
    from .report import split_arguments

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
    from .cachedir import default_cache_dir
    from .manifest import load_manifests
    from .show import parse_targets, show

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
    from .render.show import render_show

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
    from .lineage import collapse_chains, trim_transitive
    from .render.graph import render_graph
    from .show import combined_lineage

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
    from .engine import storage_usage
    from .manifest import load_manifests
    from .render.usage import render_usage

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

    from .cachedir import default_cache_dir
    from .export import version_export
    from .render.croissant import croissant_jsonld

    with _connect(ctx) as conn:
        data = version_export(conn.backend.reader, ref, cache_root=default_cache_dir())
    _write(json.dumps(croissant_jsonld(data), indent=2, ensure_ascii=False) + "\n", out)


def main() -> None:
    cli(prog_name="reconcile")


if __name__ == "__main__":
    main()
