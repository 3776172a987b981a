"""``interlock explain``: the route a request would take, each model admitted or skipped and why.

::

    interlock explain --task T [--tenant X] [--caller C] [--sensitivity pii] [--model M]
                      [--max-tokens N] [--config F] [--ledger PATH] [--json] "prompt" | --file F

Opens a door on the config (the embedded fleet without ``--config``), asks it to ``explain`` the
prompt and prints the chain (``adapters.report._explain``), or with ``--json`` the
``Explanation`` as one JSON object. No model is called and nothing is recorded. The budgets
left are read from the config's state store when its ledger file exists (``--ledger`` names
another); a fresh one otherwise, where nothing is spent yet. Breakers and health are this new
door's (``door.explain`` in a running service shows that service's own), so a provider whose last
breaker transition in the ledger left it open or half-open gets a note saying so. A bad option,
an unknown job or model, or a config error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import msgspec

from interlock._clock import RealClock
from interlock._errors import RequestError
from interlock.actors.cli._main import exit_on_bad_input, fail

if TYPE_CHECKING:  # imported when a prompt is explained: a bad option is answered without loading the door
    from interlock._records import BreakerRecord
    from interlock.policies._config import Config
    from interlock.policies._explain import Explanation

COMMAND = "explain"
_BREAKER_ROWS = 500  # the latest breaker transitions read from the ledger


class _BadOption(Exception):
    """An option argparse refused; shown as one line, not argparse's usage block."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _BadOption(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="interlock explain", description="The route a request would take, without calling a model.")
    parser.add_argument("prompt", nargs="?", help="the prompt (or --file)")
    parser.add_argument("--file", default=None, help="read the prompt from this file ('-': standard input)")
    parser.add_argument("--task", default=None, help="the job (default: the config's 'default' job)")
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--caller", default="default")
    parser.add_argument("--sensitivity", choices=("public", "internal", "pii"), default=None,
                        help="mark the request (unmarked: scanned for personal data)")  # fmt: skip
    parser.add_argument("--model", default=None, help="pin a model by config name or id")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--config", default=None, help="the TOML config (default: the embedded fleet)")
    parser.add_argument("--ledger", default=None, help="the ledger (and state) file whose budgets count")
    parser.add_argument("--json", action="store_true", help="the explanation as one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the options, explain the prompt, print it; 2 with one line on stderr for bad input."""
    try:
        args = _parser().parse_args(argv)
        prompt = _prompt(args)
    except _BadOption as exc:
        return fail(COMMAND, str(exc))
    return exit_on_bad_input(COMMAND, lambda: _run(args, prompt))


def _prompt(args: argparse.Namespace) -> str:
    if (args.prompt is None) == (args.file is None):
        raise _BadOption("give the prompt as an argument or with --file, not both and not neither")
    if args.file is None:
        return str(args.prompt)
    if args.file == "-":
        return sys.stdin.read()
    try:
        return Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _BadOption(f"--file {args.file}: {getattr(exc, 'strerror', None) or exc}") from None


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"tenant": args.tenant, "caller": args.caller}
    for key in ("task", "model", "sensitivity"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    return options


def _run(args: argparse.Namespace, prompt: str) -> int:
    from rich.console import Console

    from interlock.adapters._config_file import default_config, load_config
    from interlock.adapters.report._explain import explanation_json, render_explanation

    if args.ledger is not None and not Path(args.ledger).exists():
        return fail(COMMAND, f"no ledger at {args.ledger}")
    config = default_config() if args.config is None else load_config(args.config)
    try:
        explanation = anyio.run(_explain, config, args.ledger, prompt, _options(args))
    except RequestError as exc:
        return fail(COMMAND, str(exc))
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if not isinstance(leaf, RequestError):
            raise
        return fail(COMMAND, str(leaf))
    if args.json:
        sys.stdout.write(explanation_json(explanation).decode() + "\n")
    else:
        render_explanation(explanation, Console())
    return 0


async def _explain(config: Config, ledger: str | None, prompt: str, options: dict[str, Any]) -> Explanation:
    """Open a door whose state store holds the budgets that count, and explain ``prompt`` on it."""
    from interlock.actors._door import open as open_door

    path = Path(ledger if ledger is not None else config.ledger.path)
    with tempfile.TemporaryDirectory(prefix="interlock-explain-") as scratch:
        kept = path.exists()  # noqa: ASYNC240 (one stat before the door opens; the loop runs nothing else yet)
        if not kept:
            path = Path(scratch) / "explain.sqlite"  # no ledger yet: nothing spent, and no file left behind
        async with open_door(config, ledger_path=path, gc_tuning=False) as door:
            explanation = await door.explain(prompt, **options)
        if not kept:
            return explanation
        return await _with_ledger_breakers(explanation, path, RealClock().wall())


async def _with_ledger_breakers(explanation: Explanation, path: Path, now: float) -> Explanation:
    """Notes on the breakers the ledger saw not closed last: this new door's own are all fresh.

    A service writes each breaker transition to the ledger; the latest one of each provider of the
    chain that left its breaker open or half-open is worth knowing before trusting "closed" here.
    """
    from interlock.adapters.stores._ledger_store import SqliteLedgerStore

    async with SqliteLedgerStore(path) as store:
        transitions = await store.breaker_transitions(limit=_BREAKER_ROWS)
    latest: dict[str, BreakerRecord] = {}
    for record in transitions:  # newest first
        latest.setdefault(record.provider, record)
    notes = list(explanation.notes)
    for provider in dict.fromkeys(c.provider for c in explanation.candidates):
        last = latest.get(provider)
        if last is not None and last.to_state != "closed":
            ago = max(0.0, now - last.ts)
            notes.append(f"ledger: {provider}'s breaker last went {last.to_state} {ago:,.0f} s ago ({last.cause})")
    return msgspec.structs.replace(explanation, notes=tuple(notes))


if __name__ == "__main__":
    sys.exit(main())
