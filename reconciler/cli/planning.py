"""Planning and applying: ``plan``, ``apply`` (here or, with ``--queue``, on agents) and ``agent-step``
(what an agent runs for one version)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..diagnostics import Diagnostic, ReconcileError
from . import (
    EXIT_CHANGES,
    EXIT_ERROR,
    GlobalOptions,
    _agent_wait_option,
    _color,
    _confirm,
    _connect,
    _counted,
    _is_tty,
    _lock_owner,
    _mount_option,
    _prune_option,
    _prune_scope_option,
    _queue_option,
    _reading_workers_option,
    _stop_on_signals,
    _target_option,
    _wait_policy,
    _workers_option,
    cli,
)

if TYPE_CHECKING:
    from ..plan.actions import Plan


def _print_plan(plan, fmt: str, out: Path | None, show_files: str) -> None:  # type: ignore[no-untyped-def]
    from ..plancodec import write_plan_json
    from ..render import render_human, render_markdown

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
    from ..engine import Run
    from ..engine import plan as plan_use_case
    from ..manifest import load_manifests
    from ..plan.actions import PlanOptions
    from ..wording import counted

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
        from ..render.drift import render_drift

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

    from ..apply import ApplyOptions
    from ..engine import Run
    from ..engine import apply as apply_use_case
    from ..events import ApplyComplete, Error, Notice, PlanReady
    from ..manifest import load_manifests
    from ..plan.actions import PlanOptions
    from ..plancodec import read_plan
    from ..render import render_human
    from ..render.events import ConsoleView, JsonView
    from ..sources import forget_hashes

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
    from .. import __version__

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
    from ..dispatch import QueueOptions

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
    from ..agentstep import connect_here, read_step, run_step
    from ..apply import ApplyFailed
    from ..clearml_backend import Cancel
    from ..events import StepDone, StepError
    from ..render.events import AgentStepView
    from ..sources import forget_hashes

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
