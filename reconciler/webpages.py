"""The pages of the embedded server's web host: what the links the clearml SDK prints open.

The SDK prints ``<web>/projects/<project id>/experiments/<task id>/output/log`` ("ClearML results page", for any
task, dataset versions included) and ``<web>/datasets/simple/<project id>/experiments/<version id>`` ("ClearML
dataset page"). A dataset version's page is the `show` HTML of its dataset with that version selected; another
task's page names it and links the dataset versions it read. The pages read the server through the ordinary
reader, with the server's own key pair, like any client.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .clearml_backend import Backend, ServerConfig, ServerReader
from .diagnostics import ReconcileError
from .observe import version_summaries
from .render.show_html import render_not_found_html, render_show_html, render_task_html
from .show import Target, show

if TYPE_CHECKING:
    from .localserver import LocalServer

_TASK_PAGE = re.compile(r"^projects/[^/]+/(?:experiments|tasks)/(?P<id>[0-9A-Za-z_-]{1,64})(?:/.*)?$")
_DATASET_PAGE = re.compile(r"^datasets/simple/[^/]+/experiments/(?P<id>[0-9A-Za-z_-]{1,64})(?:/.*)?$")


def dataset_page(version_id: str) -> str:
    """The path of a version's page (the SDK's shape; the project segment is not needed: ``*``)."""
    return f"/datasets/simple/*/experiments/{version_id}"


def task_page(task_id: str) -> str:
    return f"/projects/*/experiments/{task_id}/output/log"


class ShowPages:
    """``pages(path)`` -> ``(status, html)`` for the SDK's page paths, None for any other path.

    ``connect`` gives the server's address and key pair once it is listening; the reader is made on first use.
    """

    def __init__(self, connect: Callable[[], ServerConfig], *, cache_root: Path | None = None) -> None:
        self._connect = connect
        self._cache_root = cache_root
        self._reader: ServerReader | None = None
        self._lock = threading.Lock()

    def _get_reader(self) -> ServerReader:
        with self._lock:
            if self._reader is None:
                self._reader = Backend.connect(self._connect()).reader
            return self._reader

    def __call__(self, path: str) -> tuple[int, str] | None:
        match = _DATASET_PAGE.match(path) or _TASK_PAGE.match(path)
        if match is None:
            return None
        task_id = match.group("id")
        try:
            return self._page(task_id)
        except ReconcileError as err:
            return 502, render_not_found_html("The server could not be read", str(err))

    def _page(self, task_id: str) -> tuple[int, str]:
        reader = self._get_reader()
        version = version_summaries(reader, [task_id]).get(task_id)
        if version is not None:
            report = show(reader, [Target(version.key.dataset, version.id)], cache_root=self._cache_root)
            return 200, render_show_html(report, task_link=task_page, version_link=dataset_page)
        found = reader.task_reads(task_id)
        if found is None:
            return 404, render_not_found_html("No such task", f"The server has no task with the id {task_id}.")
        use, read = found
        versions = version_summaries(reader, read)
        labels = [(vid, str(versions[vid].key) if vid in versions else vid) for vid in read]
        return 200, render_task_html(use, labels, version_link=dataset_page)


def attach_pages(srv: LocalServer, *, cache_root: Path | None = None) -> None:
    """Serve the pages on a started embedded server's web host (its API address)."""
    srv.pages = ShowPages(lambda: ServerConfig(srv.api_url, srv.files_url, srv.access_key, srv.secret_key,
                                               web_host=srv.web_url, source="the embedded server"),
                          cache_root=cache_root)
