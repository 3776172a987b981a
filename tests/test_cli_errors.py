"""Bad ledger paths and bad configs through the real `interlock` command: one line on stderr, exit 2, nothing lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from interlock.actors.cli._ledger_file import check_ledger_path
from interlock.actors.cli._main import exit_on_bad_input
from interlock.adapters.stores._ledger_schema import SCHEMA_VERSION, LedgerSchemaTooNew, LedgerStoreError
from interlock.adapters.stores._ledger_store import SqliteLedgerStore


def _directory(tmp: Path) -> Path:
    (tmp / "ledger.sqlite").mkdir()
    return tmp / "ledger.sqlite"


def _garbage(tmp: Path) -> Path:
    path = tmp / "ledger.sqlite"
    path.write_bytes(bytes(range(256)) * 16)  # 4 KiB that no SQLite header starts with
    return path


def _parent_is_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("not a directory\n")
    return tmp / "notes.txt" / "ledger.sqlite"


def _missing_parent(tmp: Path) -> Path:
    return tmp / "no" / "such" / "ledger.sqlite"


def _newer_schema(tmp: Path) -> Path:
    path = tmp / "ledger.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY, summary TEXT NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (?, 'from the future')", (SCHEMA_VERSION + 1,))
    return path


def _foreign_tables(tmp: Path) -> Path:
    path = tmp / "ledger.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    return path


# case -> (how to make the bad path, what the one line must say)
CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "directory": (_directory, "is a directory"),
    "garbage": (_garbage, "not a SQLite database"),
    "parent_is_file": (_parent_is_file, "notes.txt is a file, not a directory"),
    "missing_parent": (_missing_parent, "does not exist"),
    "newer_schema": (_newer_schema, f"schema version {SCHEMA_VERSION + 1} is newer than the supported"),
    "foreign_tables": (_foreign_tables, "not an interlock ledger: it holds other tables (customers)"),
}
COMMANDS = {"serve": ["--port", "0"], "demo": ["--requests", "1"], "report": []}


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Everything under ``root`` by name (files with their bytes), so a test can see that nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def _interlock(runs: list[list[str]], cwd: Path) -> list[tuple[int, str]]:
    """Run ``interlock <argv>`` for each argv at once (each its own process); (exit code, stderr) of each."""
    env = {**os.environ, "COLUMNS": "200"}
    command = [sys.executable, "-m", "interlock.actors.cli._main"]
    out = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    procs = [subprocess.Popen([*command, *argv], cwd=cwd, env=env, text=True, **out) for argv in runs]
    try:
        return [(p.wait(timeout=60), p.communicate()[1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:  # a command that did not refuse its path (serve would serve): stop it
                p.kill()
                p.wait()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_ledger_path_is_one_line_exit_2_and_leaves_the_file(tmp_path: Path, command: str) -> None:
    """Each of the six bad ledger paths makes the command print one stderr line naming it, exit 2, and touch nothing."""
    ledgers, before = {}, {}
    for case, (make, _) in CASES.items():
        (tmp_path / case).mkdir()
        ledgers[case] = make(tmp_path / case)
        before[case] = _snapshot(tmp_path / case)
    runs = [[command, "--ledger", str(ledgers[case]), *COMMANDS[command]] for case in CASES]
    for case, (code, stderr) in zip(CASES, _interlock(runs, tmp_path), strict=True):
        ledger, says = ledgers[case], CASES[case][1]
        lines = stderr.splitlines()
        assert code == 2, (case, stderr)
        assert "Traceback" not in stderr, case
        assert len(lines) == 1, (case, stderr)
        assert lines[0].startswith(f"interlock {command}: "), case
        assert str(ledger) in lines[0], case
        if command == "report" and not ledger.parent.is_dir():
            assert "no ledger at" in lines[0], case  # report never creates a ledger: an absent one is said so
        else:
            assert says in lines[0], case
        assert _snapshot(tmp_path / case) == before[case], case  # refused before a store opened (or demo deleted) it


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_bad_config_is_one_line_exit_2(tmp_path: Path, command: str) -> None:
    """A config that is missing or not TOML is one stderr line naming the file, exit 2, for serve and demo."""
    broken = tmp_path / "broken.toml"
    broken.write_text("[providers.x\n")
    configs = {tmp_path / "absent.toml": "cannot read the file", broken: "broken.toml"}
    runs = [[command, "--config", str(c), "--ledger", str(tmp_path / "l.sqlite")] for c in configs]
    for (config, says), (code, stderr) in zip(configs.items(), _interlock(runs, tmp_path), strict=True):
        assert code == 2, stderr
        assert "Traceback" not in stderr
        (line,) = stderr.splitlines()
        assert str(config) in line
        assert says in line
    assert not (tmp_path / "l.sqlite").exists()  # the config is read before any ledger is made


def test_good_paths_pass_the_check(tmp_path: Path) -> None:
    """An absent file in an existing directory, an empty file and a real ledger are all accepted."""
    check_ledger_path(tmp_path / "new.sqlite")
    (tmp_path / "empty.sqlite").write_bytes(b"")
    check_ledger_path(tmp_path / "empty.sqlite")
    assert not (tmp_path / "new.sqlite").exists()  # looking creates nothing


@pytest.mark.anyio
async def test_a_real_ledger_passes_the_check(tmp_path: Path) -> None:
    """A file the ledger store made (and migrated) is accepted as it is."""
    async with SqliteLedgerStore(tmp_path / "real.sqlite"):
        pass
    check_ledger_path(tmp_path / "real.sqlite")


def test_check_raises_the_stores_typed_errors(tmp_path: Path) -> None:
    """The check raises the ledger store's own types: LedgerSchemaTooNew for a newer file, LedgerStoreError else."""
    with pytest.raises(LedgerSchemaTooNew) as newer:
        check_ledger_path(_newer_schema(tmp_path))
    assert newer.value.found == SCHEMA_VERSION + 1
    with pytest.raises(LedgerStoreError) as missing:
        check_ledger_path(tmp_path / "no" / "ledger.sqlite")
    assert missing.value.path == str(tmp_path / "no" / "ledger.sqlite")
    assert missing.value.problem == f"directory {tmp_path / 'no'} does not exist"


def test_exit_on_bad_input_describes_a_store_that_cannot_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store's bare "unable to open database file" is re-read into which part of the path is wrong."""
    ledger = _parent_is_file(tmp_path)

    def run() -> int:
        raise ExceptionGroup("tree", [LedgerStoreError(str(ledger), "cannot open: unable to open database file")])

    assert exit_on_bad_input("report", run) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"interlock report: ledger {ledger}: {ledger.parent} is a file, not a directory"


def test_exit_on_bad_input_lets_other_errors_through() -> None:
    """Only bad input becomes a one-line exit: a programming error still raises with its traceback."""

    def run() -> int:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        exit_on_bad_input("serve", run)
