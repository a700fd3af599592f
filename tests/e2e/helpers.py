"""Drive the real `reconcile` CLI and the real clearml SDK in subprocesses against an embedded server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from reconciler.localserver import LocalServer


@dataclass
class Env:
    server: LocalServer
    home: Path
    work: Path

    def vars(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
        env.pop("CI", None)
        env.update(self.server.client_env())
        env.update(HOME=str(self.home), XDG_CACHE_HOME=str(self.home / ".cache"), NO_COLOR="1",
                   PYTHONUNBUFFERED="1")
        return env

    def reconcile(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess[str]:
        """Run the CLI; every run also checks that no output shows the server's secret key."""
        proc = subprocess.run([sys.executable, "-m", "reconciler.cli", *args], cwd=self.work,
                              env=env if env is not None else self.vars(), capture_output=True, text=True,
                              timeout=timeout)
        secret = self.server.secret_key
        assert secret not in proc.stdout and secret not in proc.stderr, "the secret key was printed"
        return proc

    def sdk(self, code: str, timeout: float = 300, env: dict[str, str] | None = None) -> object:
        """Run ``code`` with the SDK; it must assign ``result``, which comes back through JSON."""
        script = "import json\nfrom clearml import Dataset\n" + textwrap.dedent(code) + \
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
