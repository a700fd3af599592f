"""Real ``clearml-agent`` daemons (the PyPI package) for the tests and the agents benchmark.

An agent runs in daemon mode on a queue of the test's server, with its own HOME, temporary folder and worker id,
and reuses this Python environment instead of building one per task (``CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL``),
with ``PYTHONPATH`` pointing at the checkout under test, so the ``reconcile agent-step`` it runs is this code.
No import of the rest of the test suite: the benchmark imports this file by path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.clearml_backend import load_server_config
from reconciler.clearml_backend.api import ApiClient

START_TIMEOUT_S = 90.0


@dataclass
class AgentProcess:
    worker_id: str
    queue: str
    home: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the daemon (it unregisters its worker), then anything it left in its process group."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the task processes it may have left


def agent_env(server_env: dict[str, str], home: Path, worker_id: str) -> dict[str, str]:
    repo = str(Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env.pop("CI", None)
    env.update(server_env)
    env.update(
        HOME=str(home), TMPDIR=str(home / "tmp"), XDG_CACHE_HOME=str(home / ".cache"),
        CLEARML_WORKER_ID=worker_id,
        CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL="1",  # run steps in this environment: no venv built per task
        CLEARML_AGENT_QUEUE_POLL_FREQ_SEC="1",
        PYTHONPATH=os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p),
        PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore", NO_COLOR="1",
    )
    return env


def _listening(api: ApiClient, worker_id: str, queue: str) -> bool:
    rows = api.call("workers.get_all").get("workers") or []
    return any(w.get("id") == worker_id and any(q.get("name") == queue for q in w.get("queues") or [])
               for w in rows)


def start_agent(server_env: dict[str, str], queue: str, worker_id: str, home: Path) -> AgentProcess:
    """A daemon listening on ``queue`` (created if missing), returned once the server lists it."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    log = home / "agent.log"
    exe = Path(sys.executable).with_name("clearml-agent")
    command = [str(exe), "daemon", "--queue", queue, "--create-queue", "--foreground", "--cpu-only"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=agent_env(server_env, home, worker_id), cwd=home, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    agent = AgentProcess(worker_id, queue, home, log, proc)
    cfg = load_server_config(server_env)
    assert cfg is not None
    api = ApiClient(cfg)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"clearml-agent exited with {proc.returncode}:\n{agent.log_tail()}")
            if _listening(api, worker_id, queue):
                return agent
            time.sleep(0.5)
        raise RuntimeError(f"clearml-agent did not listen on {queue} within {START_TIMEOUT_S:.0f}s:\n"
                           f"{agent.log_tail()}")
    except BaseException:
        agent.stop()
        raise
