"""The ``interlock`` command: one entry point, one subcommand per job, each imported lazily."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, function, help); each function takes the remaining argv and returns an exit code
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("interlock.actors.cli._demo", "main", "run a mixed workload on the simulated fleet and print the report"),
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
    return run(args[1:])


if __name__ == "__main__":
    sys.exit(main())
