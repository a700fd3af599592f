"""What the CLI's help and messages say: only options that do something, in the right words."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.wording import counted


def _help(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["validate", "init", "check"])
def test_offline_commands_list_no_server_options(command: str) -> None:
    text = _help(command)
    assert "--debug" in text
    assert not any(opt in text for opt in ("--local", "--data-dir", "--timeout"))


@pytest.mark.parametrize("command", ["plan", "diff", "show", "graph", "pull", "check"])
def test_workers_of_commands_that_upload_nothing_are_not_upload_workers(command: str) -> None:
    line = next(ln for ln in _help(command).splitlines() if "--workers" in ln)
    assert "upload" not in line.replace("nothing is uploaded", "")


def test_every_option_of_apply_has_help() -> None:
    line = next(ln for ln in _help("apply").splitlines() if "--show-files" in ln)
    assert "Files listed per version" in line


@pytest.mark.parametrize("n,text", [(0, "0 files"), (1, "1 file"), (2, "2 files")])
def test_counts_agree_with_their_noun(n: int, text: str) -> None:
    assert counted(n, "file") == text
