"""The ``reconcile`` command line: parse -> build -> call -> render -> exit code.

The only module that writes to stdout. Exit codes are a contract (see :data:`EXIT_CODES_HELP`): 0 success or
nothing to change, 1 any error (usage errors included), 2 only "changes present" (``plan --detailed-exitcode``)
or "different" (``diff``). :class:`ReconcileError` and click's usage errors are printed as one line each;
``--debug`` shows tracebacks. Everything printed from user data is escaped (:mod:`reconciler.escape`).

This module holds the group, the options the commands share and the error handling; the commands live in
:mod:`.planning` (plan, apply, agent-step), :mod:`.manifests` (validate, check, init, import), :mod:`.reading`
(pull, diff, show, graph, usage, export), :mod:`.recovery` (unlock, drafts) and :mod:`.server`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from .. import __version__, escape
from ..diagnostics import ReconcileError

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
        from ..clearml_backend import Interrupted

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
    from ..clearml_backend import Cancel
    from ..connection import ConnectOptions, connect

    opts = ctx.find_object(GlobalOptions)
    assert opts is not None
    cancel = Cancel()
    _stop_on_signals(cancel)
    return connect(ConnectOptions(local=opts.local, data_dir=opts.data_dir, policy=_wait_policy(opts.timeout),
                                  cancel=cancel),
                   lambda m: click.echo(escape.text(m), err=True))


def _wait_policy(timeout: float):  # type: ignore[no-untyped-def]
    """How long to wait for a server (``--timeout``): the whole wait, one read, one connection."""
    from ..clearml_backend import WaitPolicy

    return WaitPolicy(deadline=timeout, read_timeout=min(60.0, timeout), connect_timeout=min(10.0, timeout))


def _stop_on_signals(cancel: object) -> None:
    """SIGINT and SIGTERM stop the run: waits and uploads end, the lock is released, exit 130/143.

    The first signal cancels and unwinds the main thread; a second one while stopping is ignored (no traceback).
    """
    import signal

    from ..clearml_backend import Cancel, Interrupted

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
    from ..wording import counted

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


# the other command groups join the group when the package is imported
from . import manifests, planning, reading, recovery, server  # noqa: E402,F401


def main() -> None:
    cli(prog_name="reconcile")
