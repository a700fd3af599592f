"""What agents can see of a build's sources, checked before anything is queued.

An agent runs on another machine. A ``path:`` source (and a torchvision ``root:``) is visible there only when it
is either

* inside the git repository the command runs in, committed and pushed: the agent checks out that commit from
  the repository's remote (its path is sent relative to the repository), or
* under a shared mount (``--shared-mount DIR``): a folder with the same path on the agents (NFS, a bucket
  mount); its path is sent as it is.

``url:`` sources are fetched by the agent itself (``file://`` ones only under a shared mount, since the link
keeps the path). Each source that breaks these rules is one error line, before anything is written.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .diagnostics import Diagnostic, ReconcileError
from .model import PathSource, Source, TorchvisionSource, UrlSource, VersionKey
from .plan.actions import Build

GIT_TIMEOUT_S = 60


@dataclass(frozen=True, slots=True)
class Checkout:
    """The repository agents check out: ``remote`` at ``commit`` (``branch`` for display)."""

    root: Path
    remote: str
    commit: str
    branch: str = ""
    pushed: bool = True


@dataclass(frozen=True, slots=True)
class AgentSources:
    """Every build's sources as agents see them, and the repository agents check out (None: none, or one whose
    commit is not pushed while no source needs it)."""

    sources: Mapping[VersionKey, tuple[Source, ...]]
    checkout: Checkout | None = None


def _git(root: Path, *args: str) -> str | None:
    """The output of ``git -C root args``, or None when git is missing or the command fails."""
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def find_checkout(cwd: Path) -> Checkout | None:
    """The git repository ``cwd`` is in, with a remote to clone it from; None otherwise."""
    top = _git(cwd, "rev-parse", "--show-toplevel")
    commit = _git(cwd, "rev-parse", "HEAD")
    if not top or not commit:
        return None
    root = Path(top.strip())
    remotes = (_git(root, "remote") or "").split()
    if not remotes:
        return None
    name = "origin" if "origin" in remotes else remotes[0]
    url = (_git(root, "remote", "get-url", name) or "").strip()
    if not url:
        return None
    branch = (_git(root, "rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    unpushed = _git(root, "rev-list", "-n", "1", "HEAD", "--not", "--remotes")
    return Checkout(root, url, commit.strip(), "" if branch == "HEAD" else branch, unpushed == "")


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _unclean(checkout: Checkout, rel: str) -> tuple[str, str] | None:
    """The first file under ``rel`` that the commit lacks or holds otherwise, and why; None when all is clean."""
    out = _git(checkout.root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching",
               "--", rel or ".")
    if out is None:
        return ("?", "unreadable by git")
    for item in out.split("\0"):
        if len(item) < 4:
            continue
        code, name = item[:2], item[3:]
        why = {"??": "not committed", "!!": "ignored by git"}.get(code, "changed since the last commit")
        return (name, why)
    return None


class _Checker:
    def __init__(self, queue: str, mounts: Sequence[Path], checkout: Checkout | None):
        self.queue, self.checkout = queue, checkout
        self.mounts = [_real(m) for m in mounts]
        self.problems: list[Diagnostic] = []
        self.uses_checkout = False

    def where(self) -> str:
        if self.checkout is None:
            return "the command does not run in a git repository with a remote, and "
        return f"it is outside the repository {self.checkout.root} and "

    def local_path(self, path: Path, what: str, source: Source) -> Path | None:
        """``path`` as agents see it (relative: inside the checkout), or None after reporting a problem."""
        real = _real(path)
        if any(_under(real, m) for m in self.mounts):
            return path
        if self.checkout is not None and _under(real, _real(self.checkout.root)):
            rel = real.relative_to(_real(self.checkout.root)).as_posix()
            bad = _unclean(self.checkout, rel)
            if bad is not None:
                self.fail(source, f"{what} {path}: {bad[0]} is {bad[1]}, so agents on queue {self.queue!r}, which "
                          f"check out {self.checkout.commit[:12]}, would not get it; commit it, or use --shared-mount")
                return None
            self.uses_checkout = True
            return Path(rel or ".")
        self.fail(source, f"{what} {path}: agents on queue {self.queue!r} cannot see it: {self.where()}no "
                  "--shared-mount covers it; move it into the repository, pass --shared-mount DIR for a folder "
                  "the agents have at the same path, or use a url: source")
        return None

    def fail(self, source: Source, message: str) -> None:
        self.problems.append(Diagnostic(message, source.span))

    def source(self, source: Source) -> Source | None:
        match source:
            case PathSource():
                found = self.local_path(source.path, "path source", source)
                return None if found is None else replace(source, path=found)
            case TorchvisionSource():
                if source.root is None:
                    return source  # the agent's own cache (download: true fetches it there)
                found = self.local_path(source.root, "torchvision root", source)
                return None if found is None else replace(source, root=found)
            case UrlSource():
                if source.url.lower().startswith("file:") and not any(
                        _under(_real(Path(_file_path(source.url))), m) for m in self.mounts):
                    self.fail(source, f"url source {source.url}: agents on queue {self.queue!r} read file:// URLs "
                              "only under a --shared-mount (the link keeps its path)")
                    return None
                return source
        return source


def _file_path(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path)


def agent_sources(builds: Sequence[Build], *, queue: str, mounts: Sequence[Path], cwd: Path) -> AgentSources:
    """Every build's sources as agents see them; a :class:`ReconcileError` with one line per source they cannot
    see (or one for an unpushed commit)."""
    checker = _Checker(queue, mounts, find_checkout(cwd))
    out: dict[VersionKey, tuple[Source, ...]] = {}
    for build in builds:
        seen = [checker.source(s) for s in build.sources]
        out[build.version] = tuple(s for s in seen if s is not None)
    found = checker.checkout  # sent whenever it is usable: venv agents install its requirements.txt
    checkout = found if found is not None and (checker.uses_checkout or found.pushed) else None
    if checkout is not None and not checkout.pushed:
        checker.problems.append(Diagnostic(
            f"commit {checkout.commit[:12]} of {checkout.root} is not on its remote {checkout.remote}: agents check "
            "out that commit; push it first"))
    if checker.problems:
        raise ReconcileError(checker.problems)
    return AgentSources(out, checkout)
