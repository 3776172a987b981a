"""``interlock batch submit|status|collect|cancel``, each step its own process, on the embedded fleet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from interlock.actors.cli._batch import main

COMMAND = [sys.executable, "-m", "interlock.actors.cli._main", "batch"]


def _run(*args: str, cwd: Path, delay_s: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERLOCK_SIM_BATCH_DIR": str(cwd / "sim"), "INTERLOCK_SIM_BATCH_DELAY_S": delay_s}
    return subprocess.run(
        [*COMMAND, *args, "--ledger", str(cwd / "ledger.sqlite")],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A prompts file with each accepted line shape."""
    path = tmp_path / "prompts.jsonl"
    lines = ['"a plain string"', '{"prompt": "an object"}', '{"messages": [{"role": "user", "content": "turns"}]}']
    path.write_text("\n".join(lines) + "\n")
    return path


def test_submit_status_collect_in_separate_processes(tmp_path: Path, prompts: Path) -> None:
    """Submit prints the id; a later process shows its counts; another writes one result line per prompt."""
    submitted = _run("submit", str(prompts), "--task", "cheap_bulk", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()
    assert batch_id.startswith("batch_sim")
    status = _run("status", batch_id, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"{batch_id} (sim_openai/mini): completed, 3 items: 3 succeeded" in status.stdout
    out = tmp_path / "results.jsonl"
    collected = _run("collect", batch_id, "--out", str(out), cwd=tmp_path)
    assert collected.returncode == 0, collected.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert all(r["ok"] and r["content"] and r["model"] == "mini" and r["cost_cents"] > 0 for r in results)
    assert len({r["request_id"] for r in results}) == 3


def test_collect_without_waiting_on_a_running_batch_exits_1_then_cancel_cancels(tmp_path: Path, prompts: Path) -> None:
    """A batch still running: ``collect --no-wait`` says so (exit 1); ``cancel`` stops it, collect shows why."""
    batch_id = _run("submit", str(prompts), cwd=tmp_path, delay_s="3600").stdout.strip()
    early = _run("collect", batch_id, "--no-wait", cwd=tmp_path, delay_s="3600")
    assert early.returncode == 1
    assert early.stderr.strip() == f"interlock batch: batch {batch_id} has not ended yet (status in_progress)"
    cancelled = _run("cancel", batch_id, cwd=tmp_path)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"{batch_id} (sim_openai/mini): cancelling" in cancelled.stdout
    collected = _run("collect", batch_id, cwd=tmp_path)
    assert collected.returncode == 0, collected.stderr
    results = [json.loads(line) for line in collected.stdout.splitlines()]
    assert [r["error"]["kind"] for r in results] == ["cancelled"] * 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("submit", "missing.jsonl"), "interlock batch: missing.jsonl: no such file or directory"),
        (("status", "batch_nope"), "interlock batch: request field batch_id: no batch batch_nope in the state store"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    """A missing prompts file, or a batch id the state store does not hold: one line on stderr, exit code 2."""
    done = _run(*args, cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]\n", "bad.jsonl:1: not a prompt line"),
        ('"fine"\n{}\n', "bad.jsonl:2: a prompt line needs a string, prompt or messages"),
        ('{"messages": [{"role": "robot", "content": "x"}]}\n', "bad.jsonl:1: not a prompt line"),
        ("\n\n", "bad.jsonl: holds no prompts"),
    ],
)
def test_a_malformed_prompts_file_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    """A prompts line that is no prompt is refused before any door opens, naming the file and line."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    assert main(["submit", str(bad), "--ledger", str(tmp_path / "l.sqlite")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("interlock batch: ")
    assert message in line
