"""The embedded server's web host: every page link the clearml SDK prints against it opens a real page (the
`show` HTML of a dataset version, or a task's page naming the versions it read), checked in real Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from reconciler.localserver import LocalServer
from reconciler.webpages import attach_pages

from .browser import colours, dom, screenshot

pytestmark = pytest.mark.embedded_only

SCRIPT = """
    import pathlib
    from clearml import Dataset, Task
    pathlib.Path('a').mkdir()
    pathlib.Path('a/one.txt').write_text('one')
    base = Dataset.create(dataset_project='web', dataset_name='Pages', dataset_version='1.0.0')
    base.add_files('a'); base.upload(); base.finalize()
    pathlib.Path('b').mkdir()
    pathlib.Path('b/two.txt').write_text('two')
    child = Dataset.create(dataset_project='web', dataset_name='Pages', dataset_version='1.1.0',
                           parent_datasets=[base.id])
    child.add_files('b'); child.upload(); child.finalize()
    task = Task.init(project_name='web', task_name='train', auto_connect_frameworks=False,
                     auto_resource_monitoring=False, auto_connect_arg_parser=False)
    Dataset.get(dataset_id=child.id)
    task.close()
    print('@@IDS', base.id, child.id, task.id)
"""


def test_every_page_link_the_sdk_prints_opens_a_real_page(local_server: LocalServer, tmp_path: Path) -> None:
    attach_pages(local_server, cache_root=tmp_path / "cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env.update(local_server.client_env(), HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    base, child, task = re.search(r"@@IDS (\w+) (\w+) (\w+)", out).groups()  # type: ignore[union-attr]
    web = re.escape(local_server.web_url)
    links = sorted(set(re.findall(rf"{web}/\S+", out)))
    dataset_links = [u for u in links if "/datasets/simple/" in u]
    task_links = [u for u in links if "/datasets/simple/" not in u]
    assert {u.rsplit("/", 1)[-1] for u in dataset_links} == {base, child}, links
    is_task = re.compile(rf"/(experiments|tasks)/{task}/").search
    assert any(is_task(u) for u in task_links), links
    for n, url in enumerate(links):
        shot = tmp_path / f"page{n}.png"
        screenshot(url, shot)
        page = dom(url)
        if is_task(url):  # the training task: the version it read, linked to its page
            assert "<h1>Task: train</h1>" in page
            assert f'href="/datasets/simple/*/experiments/{child}"' in page and "web/Pages@1.1.0" in page
            continue
        assert "<h1>Datasets: web/Pages</h1>" in page and 'class="lineage"' in page
        assert len(re.findall(r'<g class="node state-final', page)) == 2 and page.count('class="edge"') == 1
        assert (0xDD, 0xF4, 0xFF) in colours(shot)  # the final versions' nodes are drawn
        if url.rstrip("/").endswith(child) or f"/experiments/{child}/" in url:
            assert f'href="/projects/*/experiments/{task}/output/log"' in page  # the task that read it


def test_pages_answer_404_for_unknown_ids_and_json_404_elsewhere(local_server: LocalServer, tmp_path: Path
                                                                 ) -> None:
    attach_pages(local_server, cache_root=tmp_path / "cache")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{local_server.web_url}/projects/*/experiments/{'f' * 32}/output/log", timeout=30)
    assert err.value.code == 404 and "No such task" in err.value.read().decode()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{local_server.web_url}/no/such/page", timeout=30)
    assert err.value.code == 404 and err.value.headers["Content-Type"] == "application/json"
