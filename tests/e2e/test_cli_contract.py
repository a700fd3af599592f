"""The command line as CI sees it: exit codes are a contract (0 ok / no changes, 1 any error including usage
errors, 2 only "changes present" with plan --detailed-exitcode or "different" from diff), usage errors are one
line, global options work after the command name, a saved plan applies without a prompt, and hostile file names
are printed escaped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import EXIT_CODES_HELP

from .helpers import Env, dataset_tasks, manifest, write_tree

REPO = Path(__file__).resolve().parents[2]
ONE_VERSION = """\
- version: 1.0.0
  sources:
    - path: ../data
"""


def project(env: Env, name: str = "contract") -> Path:
    write_tree(env.work / "data", {"a.txt": "a"})
    (env.work / "manifests").mkdir(exist_ok=True)
    m = env.work / "manifests" / "ds.yaml"
    m.write_text(manifest(env.project, name, ONE_VERSION))
    return m


def run(env: Env, *args: str, vars_: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a CI job runs it: stdin is not a terminal (nothing to type into)."""
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli", *args], cwd=env.work, stdin=subprocess.DEVNULL,
                          env=vars_ if vars_ is not None else env.vars(), capture_output=True, text=True,
                          timeout=300)
    assert env.server.secret_key not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr or "--debug" in args, proc.stderr
    return proc


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


USAGE_ERRORS = [
    (["--bogus", "plan", "manifests"], "No such option '--bogus'", "reconcile --help"),
    (["plan", "--bogus", "manifests"], "No such option '--bogus'", "reconcile plan --help"),
    (["plan"], "Missing argument 'PATHS...'", "reconcile plan --help"),
    (["plan", "--format", "xml", "manifests"], "'xml' is not one of", "reconcile plan --help"),
    (["plan", "--show-files", "many", "manifests"], "expected a number or 'all'", "reconcile plan --help"),
    (["apply"], "Missing argument", "reconcile apply --help"),
    (["apply", "--workers", "0", "manifests"], "--workers", "reconcile apply --help"),
    (["validate"], "Missing argument 'PATHS...'", "reconcile validate --help"),
    (["validate", "--format", "yaml", "manifests"], "'yaml' is not one of", "reconcile validate --help"),
    (["diff"], "Missing argument", "reconcile diff --help"),
    (["diff", "--format", "pdf", "manifests"], "'pdf' is not one of", "reconcile diff --help"),
    (["unlock", "--project"], "Option '--project' requires an argument", "reconcile unlock --help"),
    (["import"], "Missing argument", "reconcile import --help"),
    (["drafts", "--nope"], "No such option '--nope'", "reconcile drafts --help"),
    (["server", "--port", "eighty"], "'eighty' is not a valid integer", "reconcile server --help"),
    (["server", "--local"], "No such option '--local'", "reconcile server --help"),
    (["nosuch"], "No such command 'nosuch'", "reconcile --help"),
    (["plan", "--bogus\x1b[2J\nerror: fake", "manifests"], "No such option '--bogus\\x1b[2J\\nerror: fake'",
     "reconcile plan --help"),
]


@pytest.mark.parametrize("args,message,hint", USAGE_ERRORS, ids=[" ".join(a)[:40] for a, _, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_and_exit_1(tmp_path: Path, args: list[str], message: str, hint: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli", *args], cwd=tmp_path, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    line = one_line(proc)
    assert line.startswith("error: ") and message in line and f"Try '{hint}'." in line, line


def test_bare_reconcile_prints_the_help_and_exits_1(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert proc.returncode == 1 and "Usage: reconcile" in proc.stderr and "Exit codes" in proc.stderr


def test_global_options_may_follow_the_command(env: Env, unused_port: int) -> None:
    project(env)
    no_config = {k: v for k, v in env.vars().items() if not k.startswith("CLEARML_")}
    before = run(env, "--local", "plan", "--detailed-exitcode", "manifests", vars_=no_config)
    after = run(env, "plan", "--detailed-exitcode", "manifests", "--local", vars_=no_config)
    assert before.returncode == after.returncode == 2 and before.stdout == after.stdout
    assert "using the embedded server" not in after.stderr  # --local was taken, not the fallback
    moved = env.work / "elsewhere"
    applied = run(env, "apply", "--auto-approve", "--data-dir", str(moved), "manifests", "--local", vars_=no_config)
    assert applied.returncode == 0 and (moved / "credentials.json").is_file(), applied.stderr
    assert run(env, "plan", "--detailed-exitcode", "--local", "--data-dir", str(moved), "manifests",
               vars_=no_config).returncode == 0
    unreachable = {**env.vars(), "CLEARML_API_HOST": f"http://127.0.0.1:{unused_port}"}
    quiet = run(env, "plan", "manifests", vars_=unreachable)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    debug = run(env, "plan", "manifests", "--debug", vars_=unreachable)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_a_saved_plan_applies_without_a_prompt_and_a_live_apply_still_needs_approval(env: Env) -> None:
    project(env, "saved")
    refused = run(env, "apply", "manifests")
    assert refused.returncode == 1 and "--auto-approve" in one_line(refused)
    assert dataset_tasks(env, env.project, "saved") == []
    planned = run(env, "plan", "--detailed-exitcode", "--out", "plan.json", "manifests")
    assert planned.returncode == 2
    applied = run(env, "apply", "plan.json")
    assert applied.returncode == 0, applied.stderr
    assert "Enter a value" not in applied.stdout and "Apply complete! " in applied.stdout
    assert "1 version created, 1 file uploaded" in applied.stdout
    assert [t["version"] for t in dataset_tasks(env, env.project, "saved")] == ["1.0.0"]
    stale = run(env, "apply", "plan.json")
    assert stale.returncode == 1 and "stale" in one_line(stale)


def test_exit_codes_of_every_command(env: Env) -> None:
    m = project(env, "codes")
    (env.work / "bad.yaml").write_text("apiVersion: reconciler/v1\nkind: Dataset\n")
    expect = [
        (0, ["--help"]), (0, ["--version"]), (1, []), (1, ["nosuch"]),
        (0, ["validate", "manifests"]), (1, ["validate", "bad.yaml"]), (1, ["validate", "--bogus", "manifests"]),
        (0, ["plan", "manifests"]),  # changes present, but no --detailed-exitcode
        (2, ["plan", "--detailed-exitcode", "manifests"]), (1, ["plan", "bad.yaml"]),
        (1, ["plan", "--detailed-exitcode", "bad.yaml"]), (1, ["plan", "--detailed-exitcode", "--nope", "manifests"]),
        (1, ["plan", "--detailed-exitcode", "--format", "nope", "manifests"]),
        (2, ["diff", "manifests"]), (1, ["diff", "bad.yaml"]), (1, ["diff", "--nope", "manifests"]),
        (1, ["apply", "manifests"]),  # not a terminal and no --auto-approve
        (1, ["apply", "--auto-approve", "bad.yaml"]), (1, ["apply", "--nope", "manifests"]),
        (0, ["plan", "--out", "plan.json", "manifests"]),
        (0, ["apply", "--auto-approve", "manifests"]),
        (1, ["apply", "plan.json"]),  # stale: the server changed since
        (0, ["apply", "--auto-approve", "manifests"]),  # nothing to do
        (0, ["plan", "--detailed-exitcode", "manifests"]), (0, ["diff", "manifests"]),
        (0, ["diff", f"{env.project}/codes@1.0.0", f"{env.project}/codes@1.0.0"]),
        (1, ["diff", f"{env.project}/codes@1.0.0", f"{env.project}/codes@9.9.9"]),
        (0, ["unlock", "manifests"]), (1, ["unlock", "--nope"]),  # this project's lock only: the server is shared
        (0, ["server", "--help"]), (1, ["server", "--port", "x"]),
    ]
    seen = []
    for _code, args in expect:
        proc = run(env, *args)
        seen.append((proc.returncode, args))
        if proc.returncode == 1:
            assert proc.stdout.strip() == "" or args[0] in ("plan", "apply") or not args, (args, proc.stdout)
    assert seen == expect
    (env.work / "data" / "a.txt").write_text("changed")  # finalized content differs: a conflict
    conflict = run(env, "plan", "--detailed-exitcode", "manifests")
    assert conflict.returncode == 1 and one_line(conflict) == "error: 1 conflict: see the plan above"
    assert "Plan: 0 to create, 0 to update, 0 to archive, 1 conflict." in conflict.stdout
    assert run(env, "diff", "manifests").returncode == 2
    assert run(env, "apply", "--auto-approve", "manifests").returncode == 1
    m.write_text(manifest(env.project, "codes", ONE_VERSION.replace("../data", "../missing")))
    assert run(env, "diff", "manifests").returncode == 1


def test_the_exit_code_table_is_in_the_help_and_the_readme(tmp_path: Path) -> None:
    def call(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "reconciler.cli", *args], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60, check=True).stdout

    rows = [ln.strip() for ln in EXIT_CODES_HELP.splitlines()[2:]]
    assert [r[0] for r in rows] == ["0", "1", "2"]
    top = call("--help")
    for row in rows:
        assert re.sub(r"\s+", " ", row) in re.sub(r"\s+", " ", top)
    readme = (REPO / "README.md").read_text()
    table = re.search(r"\n## Exit codes\n(.*?)\n## ", readme, re.S)
    assert table, "README.md lost its exit code table"
    readme_rows = [ln for ln in table.group(1).splitlines() if re.match(r"\| `[0-9]` \|", ln)]
    assert [r[3] for r in readme_rows] == ["0", "1", "2"]
    plan_help = re.sub(r"\s+", " ", call("plan", "--help"))
    assert "Exit codes: 0 success (changes or not), 1 error or conflicts; with --detailed-exitcode: 0 no changes, " \
           "2 changes present, 1 error." in plan_help
    assert "in text and markdown output" in plan_help


def test_validate_and_markdown_speak_in_the_right_number(env: Env) -> None:
    project(env, "numbers")
    assert run(env, "validate", "manifests").stdout == "ok: 1 dataset, 1 version\n"
    md = run(env, "plan", "--format", "markdown", "manifests").stdout
    assert "0 to archive, 0 conflicts.** Upload: 1 file," in md and "total 1 file, " in md


def test_markdown_honours_show_files(env: Env) -> None:
    write_tree(env.work / "data", {f"f{i:02d}.txt": str(i) for i in range(30)})
    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "ds.yaml").write_text(manifest(env.project, "many", ONE_VERSION))
    listed = {}
    for show in ("3", "20", "all"):
        md = run(env, "plan", "--format", "markdown", "--show-files", show, "manifests").stdout
        listed[show] = len(re.findall(r"^\+\s+f\d\d\.txt", md, re.M))
        if show != "all":
            assert f"... and {30 - int(show)} more (use --show-files all)" in md
    assert listed == {"3": 3, "20": 20, "all": 30}


HOSTILE_FILES = {
    "evil\nPlan: 0 to create, 0 to update, 0 to archive, 0 conflicts.txt": "1",
    "pipe|cell`tick`.txt": "2",
    "<script>alert(1)<\\script>.txt": "3",
    "[click](javascript:alert(1)).txt": "4",
    "\x1b[31mred\x1b[0m.txt": "5",
    "rtl\u202egpj.exe\u2028.txt": "6",
    "```\n<\\details>\n# Heading.txt": "7",
}


def test_hostile_file_names_are_printed_escaped(env: Env) -> None:
    write_tree(env.work / "data", HOSTILE_FILES)
    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "ds.yaml").write_text(manifest(env.project, "hostile", ONE_VERSION))
    text = run(env, "plan", "--show-files", "all", "manifests")
    assert text.returncode == 0, text.stderr
    unsafe = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]")
    assert not unsafe.search(text.stdout + text.stderr)
    assert [ln for ln in text.stdout.splitlines() if ln.startswith("Plan: ")] == [
        "Plan: 1 to create, 0 to update, 0 to archive, 0 conflicts."]
    assert "+ evil\\nPlan: 0 to create, 0 to update, 0 to archive, 0 conflicts.txt (1 B)" in text.stdout
    assert "+ \\x1b[31mred\\x1b[0m.txt (1 B)" in text.stdout and "rtl\\u202egpj.exe\\u2028.txt" in text.stdout
    md = run(env, "plan", "--format", "markdown", "--show-files", "all", "manifests").stdout
    assert not unsafe.search(md)
    fence = md.split("```diff\n", 1)[1].split("\n```\n", 1)[0]
    assert all(line[0] in "+-! " for line in fence.splitlines())
    assert len([line for line in fence.splitlines() if line.endswith(".txt (1 B)")]) == len(HOSTILE_FILES)
    html_report = run(env, "diff", "--format", "html", "manifests").stdout
    assert "<script>" not in html_report and "&lt;script&gt;alert(1)&lt;\\script&gt;.txt" in html_report
    assert "\\x1b[31mred\\x1b[0m.txt" in html_report
    applied = run(env, "apply", "--auto-approve", "manifests")
    assert applied.returncode == 0, applied.stderr
    assert not unsafe.search(applied.stdout)
    diff = run(env, "diff", "--format", "json", "manifests")
    assert diff.returncode == 0 and json.loads(diff.stdout)["identical"]


def test_a_damaged_hash_cache_is_a_miss_or_one_line(env: Env) -> None:
    write_tree(env.work / "data", {f"d{i % 7}/f{i:04d}.txt": f"file {i}" for i in range(2000)})
    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "ds.yaml").write_text(manifest(env.project, "cached", ONE_VERSION))
    first = run(env, "plan", "manifests")
    assert first.returncode == 0
    (db,) = (env.home / ".cache").rglob("hashes.sqlite3")
    with open(db, "r+b") as f:
        size = f.seek(0, 2)
        for page in range(1, size // 4096, 3):
            f.seek(page * 4096)
            f.write(os.urandom(4096))
    again = run(env, "plan", "manifests")
    if again.returncode == 0:
        assert again.stdout == first.stdout
    else:
        assert again.returncode == 1 and "safe to delete" in one_line(again) and str(db) in one_line(again)
