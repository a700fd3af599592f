"""Drive the real `reconcile` CLI and the real clearml SDK in subprocesses against the test's server (the embedded
one, or the reference server shared by the session: see tests/conftest.py)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import ServerHandle

LOCK_WAIT_S = "240"


def waiting_for_the_lock(args: Sequence[str]) -> tuple[str, ...]:
    """``args`` with ``--lock-timeout`` added to an ``apply`` that has none: the apply lock is server-wide, and on
    a shared server another test (or person) may hold it for a moment."""
    if "apply" not in args or any(a.startswith("--lock-timeout") for a in args):
        return tuple(args)
    at = list(args).index("apply") + 1
    return (*args[:at], "--lock-timeout", LOCK_WAIT_S, *args[at:])


@dataclass
class Env:
    """The test's server, its own HOME and working folder, and ``project``: the project name the test owns
    (unique, so that it never meets another test's datasets on a shared server)."""

    server: ServerHandle
    home: Path
    work: Path
    project: str

    def vars(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
        env.pop("CI", None)
        env.update(self.server.client_env())
        env.update(HOME=str(self.home), XDG_CACHE_HOME=str(self.home / ".cache"), NO_COLOR="1",
                   PYTHONUNBUFFERED="1")
        return env

    def reconcile(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess[str]:
        """Run the CLI (an apply waits for the lock: see :func:`waiting_for_the_lock`); every run also checks
        that no output shows the server's secret key."""
        proc = subprocess.run([sys.executable, "-m", "reconciler.cli", *waiting_for_the_lock(args)], cwd=self.work,
                              env=env if env is not None else self.vars(), capture_output=True, text=True,
                              timeout=timeout)
        self.assert_no_secret(proc.stdout + proc.stderr)
        return proc

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        """The JSON a command prints (it must succeed: exit 0, or 2 for "changes present"); its stderr otherwise."""
        proc = self.reconcile(*args, env=env)
        assert proc.returncode in (0, 2), f"{' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
        return json.loads(proc.stdout)

    def assert_no_secret(self, output: str) -> None:
        assert self.server.secret_key not in output, "the secret key was printed"

    def sdk(self, code: str, timeout: float = 300, env: dict[str, str] | None = None) -> object:
        """Run ``code`` with the SDK, ``PROJECT`` set to the test's own project; it must assign ``result``, which
        comes back through JSON."""
        script = f"import json\nfrom clearml import Dataset\nPROJECT = {self.project!r}\n" + textwrap.dedent(code) + \
            "\nprint('@@RESULT@@' + json.dumps(result, sort_keys=True, default=str))\n"
        proc = subprocess.run([sys.executable, "-c", script], cwd=self.work,
                              env=env if env is not None else self.vars(), capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")][-1]
        return json.loads(line[len("@@RESULT@@"):])


def write_tree(root: Path, files: dict[str, bytes | str]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)


def manifest(project: str, name: str, versions: str, *, tags: str = "[a, b]", metadata: str = "{k: 1}",
             description: str = "test data") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: {project}
        name: {name}
        description: {description}
        tags: {tags}
        metadata: {metadata}
        versions:
        """) + textwrap.indent(textwrap.dedent(versions), "  ")


def dataset_tasks(env: Env, project: str, name: str) -> list[dict]:
    """Every version of a dataset as the server lists it (all statuses)."""
    return env.sdk(f"""
        from clearml.backend_api.session.client import APIClient
        c = APIClient()
        projects = c.projects.get_all(name='^{project}/\\\\.datasets/{name}$', search_hidden=True)
        ids = [p.id for p in projects]
        tasks = c.tasks.get_all(project=ids, search_hidden=True, only_fields=['id', 'status', 'runtime', 'tags',
                                'system_tags']) if ids else []
        result = [dict(id=t.id, status=str(t.status), version=(t.runtime or {{}}).get('version'),
                       tags=list(t.tags or []), system_tags=list(t.system_tags or [])) for t in tasks]
    """)  # type: ignore[return-value]


def copy_sample(env: Env) -> None:
    """The repository's sample manifests and files into ``env.work/manifests``, in the test's own project."""
    import shutil

    shutil.copytree(Path(__file__).parents[2] / "manifests" / "sample", env.work / "manifests")
    for copy in (env.work / "manifests").glob("*.yaml"):
        copy.write_text(copy.read_text().replace("project: clearml_datasets", f"project: {env.project}"))


def read_terminal(leader: int, proc: subprocess.Popen[bytes], *, timeout: float = 120,
                  respond: Callable[[bytes], bytes | None] | None = None) -> bytes:
    """Everything ``proc`` writes to the pseudo-terminal ``leader`` until it ends (``leader`` is closed then);
    ``respond(seen)`` may return bytes to type once (an answer to a prompt)."""
    seen, answered, deadline = b"", False, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if respond is not None and not answered:
            answer = respond(seen)
            if answer is not None:
                os.write(leader, answer)
                answered = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=60)
    os.close(leader)
    return seen
