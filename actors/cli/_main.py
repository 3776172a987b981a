"""The ``interlock`` command: one entry point, one subcommand per job, each imported lazily.

Bad input is one line on stderr and exit code 2, never a traceback: ``exit_on_bad_input`` runs a
command and turns a config error, a ledger or state file the stores refuse, or an OS or SQLite
error into ``interlock <command>: <what> <path>: <problem>``. The dispatcher wraps every command
in it; a command run on its own (``python -m interlock.actors.cli._serve``) wraps itself.
"""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from interlock._errors import ConfigError
from interlock.adapters.stores._ledger_schema import LedgerStoreError
from interlock.adapters.stores._state_schema import StateStoreError

BAD_INPUT: Final = 2
_UNOPENABLE: Final = "unable to open database file"  # SQLite's word for any path it cannot open

# subcommand -> (module, function, help); each function takes the remaining argv and returns an exit code
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "batch": ("interlock.actors.cli._batch", "main", "submit, watch, collect or cancel a provider batch"),
    "check": ("interlock.actors.cli._check", "main", "validate a config (every error at once) and summarize it"),
    "dashboard": ("interlock.actors.cli._dashboard", "main", "serve the read-only dashboard over a ledger file"),
    "demo": ("interlock.actors.cli._demo", "main", "run a mixed workload on the simulated fleet and print the report"),
    "eval": ("interlock.actors.cli._eval", "main", "compare candidate models on your own prompts (JSONL)"),
    "explain": ("interlock.actors.cli._explain", "main", "show where a request would go and why, calling no model"),
    "report": ("interlock.actors.cli._report", "main", "print the rollup of a ledger"),
    "serve": ("interlock.actors.cli._serve", "main", "serve the OpenAI-compatible gateway"),
    "simulate": ("interlock.adapters.simulator._server", "main", "run the loopback provider simulator"),
    "version": ("interlock.actors.cli._main", "version", "print the installed version"),
}


def version(argv: Sequence[str]) -> int:
    """Print the installed version of interlock."""
    from importlib.metadata import version as dist_version

    print(dist_version("interlock"))
    return 0


def fail(command: str, problem: str) -> int:
    """Print ``interlock <command>: <problem>`` to stderr as one line; return ``BAD_INPUT`` (2)."""
    print(f"interlock {command}: {' '.join(problem.split())}", file=sys.stderr, flush=True)
    return BAD_INPUT


def exit_on_bad_input(command: str, run: Callable[[], int]) -> int:
    """``run()``'s exit code, or ``fail``'s when it raises on bad input (config, ledger or state file, OS)."""
    try:
        return run()
    except BaseExceptionGroup as group:
        leaf = _only_leaf(group)
        if not isinstance(leaf, ConfigError | LedgerStoreError | StateStoreError | sqlite3.Error | OSError):
            raise
        return fail(command, _describe(leaf))
    except (ConfigError, LedgerStoreError, StateStoreError, sqlite3.Error, OSError) as exc:
        return fail(command, _describe(exc))


def _only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a chain of single-member task-group errors holds (the group itself otherwise)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """One line for ``exc``; a store's "cannot open" is re-read to say which part of the path is wrong."""
    from interlock.actors.cli._ledger_file import check_ledger_path, path_problem

    try:
        if isinstance(exc, LedgerStoreError) and exc.problem.startswith("cannot open"):
            check_ledger_path(exc.path)
        if isinstance(exc, StateStoreError) and _UNOPENABLE in exc.problem:
            why = path_problem(Path(exc.path))
            if why is not None:
                return f"state store {exc.path}: {why}"
    except LedgerStoreError as found:
        return str(found)
    except OSError:
        pass  # the path cannot even be looked at: the store's own words, then
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {(exc.strerror or str(exc)).lower()}"
    if isinstance(exc, sqlite3.Error):
        return f"SQLite: {exc}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``interlock <command> [args...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="interlock", description="One door for every LLM call.")
    summary = "; ".join(f"{name}: {entry[2]}" for name, entry in _COMMANDS.items())
    parser.add_argument("command", choices=sorted(_COMMANDS), help=summary)
    if not args or args[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if args else 2
    ns = parser.parse_args(args[:1])
    module, func, _ = _COMMANDS[ns.command]
    run: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return exit_on_bad_input(ns.command, lambda: run(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
