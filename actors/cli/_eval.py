"""``interlock eval PROMPTS.jsonl --candidates m1,m2``: compare models on your own prompts.

Every prompt runs on every candidate through the door (budgets, leases and breakers apply; rows
in the ledger as caller ``eval``), judged by each prompt's ``expected`` / ``schema`` and by the
``--verify`` verifiers given, else by the job's own; then the candidates are printed side by side
with the recommended one and the TOML change that moves the job to it. A re-run resumes from the
eval cache in the state store (``interlock.actors._evaluate``). ``--json`` prints the
``EvalReport`` instead. A live progress bar goes to stderr when it is a terminal (never with
``--json``). Bad input — a malformed prompt line, an unknown model or job, a bad ``--verify`` — is
one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections import Counter
from pathlib import Path

import anyio
import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from interlock._errors import RequestError
from interlock.actors._door import open as open_door
from interlock.actors.cli._ledger_file import check_ledger_path
from interlock.actors.cli._main import exit_on_bad_input, fail
from interlock.adapters._config_file import default_config, load_config
from interlock.adapters.report._eval import eval_json, render_eval
from interlock.policies._config import Config
from interlock.policies._eval import EvalCall, EvalPrompt, EvalReport
from interlock.policies._eval_input import EvalInputError, parse_prompts
from interlock.policies._verify import VerifierSpec

_decode_spec = msgspec.json.Decoder(VerifierSpec).decode


def main(argv: list[str] | None = None) -> int:
    """``interlock eval PROMPTS --candidates a,b [--task T] [--verify SPEC]... [--repeat K] [--json] ...``."""
    parser = argparse.ArgumentParser(prog="interlock eval", description=__doc__.splitlines()[0])
    parser.add_argument("prompts", help="a JSONL file: one {prompt | messages, id?, expected?, schema?} per line")
    parser.add_argument("--candidates", required=True, help="config model names, comma-separated")
    parser.add_argument("--task", default=None, help="the job to judge and move (default: the job named default)")
    parser.add_argument(
        "--verify", action="append", default=None, metavar="SPEC",
        help='a verifier as a TOML inline table or JSON, e.g. \'{ kind = "reviewer", model_class = "flagship" }\'; '
        "repeatable; replaces the job's verifiers",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="calls per prompt and candidate (default 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="calls at once (default 8)")
    parser.add_argument("--config", default=None, help="a TOML config; default: the embedded simulated fleet")
    parser.add_argument("--ledger", default=None, help="the SQLite ledger (and state) file; default: the config's")
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--caller", default="eval")
    parser.add_argument("--fresh", action="store_true", help="measure every call again instead of resuming")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    return exit_on_bad_input("eval", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    try:
        text = Path(args.prompts).read_text(encoding="utf-8")
        prompts = parse_prompts(text, args.prompts)
        verify = None if args.verify is None else tuple(parse_verifier(spec) for spec in args.verify)
    except (EvalInputError, RequestError) as exc:
        return fail("eval", str(exc))
    except UnicodeDecodeError as exc:
        return fail("eval", f"{args.prompts}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    config = load_config(args.config) if args.config else default_config()
    if args.ledger is not None:
        check_ledger_path(args.ledger)
    candidates = [name.strip() for name in args.candidates.split(",") if name.strip()]
    err = Console(stderr=True)
    live = err.is_terminal and not args.json
    try:
        report = anyio.run(lambda: _evaluate(config, args, prompts, verify, candidates, err if live else None))
    except RequestError as exc:
        return fail("eval", str(exc))
    if args.json:
        sys.stdout.write(eval_json(report).decode() + "\n")
    else:
        render_eval(report, Console())
    return 0


async def _evaluate(
    config: Config, args: argparse.Namespace, prompts: tuple[EvalPrompt, ...], verify: tuple[VerifierSpec, ...] | None,
    candidates: list[str], console: Console | None,
) -> EvalReport:  # fmt: skip
    async with open_door(config, ledger_path=args.ledger) as door:
        if console is None:
            return await door.evaluate(
                prompts, candidates=candidates, task=args.task, verify=verify, repeat=args.repeat,
                concurrency=args.concurrency, tenant=args.tenant, caller=args.caller, fresh=args.fresh,
            )  # fmt: skip
        columns = (TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[status]}"))  # fmt: skip
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("eval", total=None, status="")
            seen: Counter[str] = Counter()

            def advance(done: int, total: int, call: EvalCall) -> None:
                seen[call.outcome] += 1
                status = " ".join(f"{k}={v}" for k, v in sorted(seen.items()))
                bar.update(task, completed=done, total=total, status=status)

            return await door.evaluate(
                prompts, candidates=candidates, task=args.task, verify=verify, repeat=args.repeat,
                concurrency=args.concurrency, tenant=args.tenant, caller=args.caller, fresh=args.fresh,
                progress=advance,
            )  # fmt: skip


def parse_verifier(text: str) -> VerifierSpec:
    """One ``--verify`` spec: a JSON object, or a TOML inline table (as a job's ``verify`` lists it)."""
    stripped = text.strip()
    try:
        try:
            return _decode_spec(stripped)
        except msgspec.ValidationError:
            raise
        except msgspec.DecodeError:  # not JSON: a TOML inline table, then
            spec: VerifierSpec = msgspec.convert(tomllib.loads(f"spec = {stripped}")["spec"], VerifierSpec)
            return spec
    except (msgspec.ValidationError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise RequestError("--verify", f"{stripped!r}: {exc}") from None
