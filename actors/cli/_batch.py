"""``interlock batch submit|status|collect|cancel``: provider batches from the command line.

::

    interlock batch submit PROMPTS.jsonl [--task T] [--model M] [--tenant X]   # prints the batch id
    interlock batch status BATCH_ID                                             # its counts
    interlock batch collect BATCH_ID [--out results.jsonl] [--no-wait]          # results as JSONL
    interlock batch cancel BATCH_ID

Every command takes ``--config FILE`` (default: the embedded simulated fleet) and ``--ledger
FILE`` (default: the config's ``ledger.path``): the batch's handle lives in the state store beside
the ledger, so the commands of one batch name the same ledger. A prompts line is a JSON string,
or an object with ``prompt`` (a string) or ``messages`` (``[{"role", "content"}]``). A results
line is ``{"index", "request_id", "ok": true, "content", "finish_reason", "model", "cost_cents",
"usage"}`` or ``{"index", "request_id", "ok": false, "error": {"kind", "message"}}``.

Bad input (a missing or malformed file, an unknown batch id, a config error) is one line on stderr
and exit 2; ``collect --no-wait`` on a batch still running exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec

from interlock._errors import InterlockError
from interlock._types import ChatResponse, Message, Role
from interlock.actors._batch import BatchNotEnded, BatchProgress, BatchRun
from interlock.actors.cli._ledger_file import check_ledger_path
from interlock.actors.cli._main import BAD_INPUT, exit_on_bad_input, fail
from interlock.adapters._config_file import default_config, load_config
from interlock.policies._config import Config

__all__ = ["main", "read_prompts"]

_STILL_RUNNING = 1


class _Turn(msgspec.Struct, frozen=True):
    role: Role
    content: str


class _Line(msgspec.Struct, frozen=True):
    prompt: str | None = None
    messages: list[_Turn] | None = None


_ANY = msgspec.json.Decoder()
_LINE = msgspec.json.Decoder(_Line)
_ENC = msgspec.json.Encoder()


def read_prompts(path: Path) -> list[str | list[Message]]:
    """The prompts of a JSONL file; a bad line is a ``ValueError`` naming the file and its line."""
    prompts: list[str | list[Message]] = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = _ANY.decode(raw)
            if isinstance(value, str):
                prompts.append(value)
                continue
            line = _LINE.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"{path}:{number}: not a prompt line ({exc})") from None
        if line.prompt is not None:
            prompts.append(line.prompt)
        elif line.messages:
            prompts.append([Message.text(t.role, t.content) for t in line.messages])
        else:
            raise ValueError(f"{path}:{number}: a prompt line needs a string, prompt or messages")
    if not prompts:
        raise ValueError(f"{path}: holds no prompts")
    return prompts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interlock batch", description="Provider batches at their discount.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="the interlock TOML config (default: the embedded simulated fleet)")
    common.add_argument("--ledger", help="the SQLite ledger file (default: the config's ledger.path)")
    steps = parser.add_subparsers(dest="step", required=True)
    submit = steps.add_parser("submit", parents=[common], help="submit a JSONL file of prompts; prints the id")
    submit.add_argument("prompts", type=Path, help="JSONL: one prompt a line")
    submit.add_argument("--task", help="the job (default: the config's default job)")
    submit.add_argument("--model", help="pin a model (config name)")
    submit.add_argument("--tenant", default="default", help="the tenant (default: default)")
    for name, text in (("status", "show a batch's counts"), ("cancel", "cancel a batch")):
        steps.add_parser(name, parents=[common], help=text).add_argument("batch_id")
    collect = steps.add_parser("collect", parents=[common], help="wait for a batch and write its results")
    collect.add_argument("batch_id")
    collect.add_argument("--out", type=Path, help="write the results JSONL here (default: stdout)")
    collect.add_argument("--no-wait", action="store_true", help="exit 1 at once if the batch has not ended")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one step of ``interlock batch``."""
    ns = _parser().parse_args(argv)
    return exit_on_bad_input("batch", lambda: _run(ns))


def _run(ns: argparse.Namespace) -> int:
    config: Config = load_config(ns.config) if ns.config else default_config()
    check_ledger_path(ns.ledger or config.ledger.path)
    prompts: list[str | list[Message]] = []
    if ns.step == "submit":
        try:
            prompts = read_prompts(ns.prompts)
        except ValueError as exc:
            return fail("batch", str(exc))
    try:
        return anyio.run(_step, ns, config, prompts)
    except BatchNotEnded as exc:
        print(f"interlock batch: {exc}", file=sys.stderr)
        return _STILL_RUNNING
    except InterlockError as exc:
        return fail("batch", str(exc))


async def _step(ns: argparse.Namespace, config: Config, prompts: list[str | list[Message]]) -> int:
    import interlock

    async with interlock.open(config, ledger_path=ns.ledger) as door:
        if ns.step == "submit":
            options: dict[str, Any] = {"tenant": ns.tenant}
            if ns.task:
                options["task"] = ns.task
            if ns.model:
                options["model"] = ns.model
            run = door.batch(prompts, **options)
            batch_id = await run.submit()
            if not batch_id:
                await run.collect()
                print("interlock batch: no item could be sent; every one was refused", file=sys.stderr)
                return BAD_INPUT
            print(batch_id)
            return 0
        run = door.batch(batch_id=ns.batch_id)
        if ns.step == "status":
            print(describe(await run.status()))
        elif ns.step == "cancel":
            print(describe(await run.cancel()))
        else:
            _write(run, await run.collect(wait=not ns.no_wait), ns.out)
    return 0


def describe(progress: BatchProgress) -> str:
    """One line of a batch's progress: its id, model, status and counts."""
    c = progress.counts
    parts = [f"{c.succeeded} succeeded", f"{c.errored} errored", f"{c.cancelled} cancelled", f"{c.expired} expired"]
    if c.processing:
        parts.insert(0, f"{c.processing} processing")
    if progress.refused:
        parts.append(f"{progress.refused} refused before sending")
    where = f"{progress.provider}/{progress.model}" if progress.model else "no model"
    return f"{progress.batch_id} ({where}): {progress.status}, {progress.total} items: {', '.join(parts)}"


def _write(run: BatchRun, results: list[ChatResponse | InterlockError], out: Path | None) -> None:
    handle = run.handle
    ids = {i.index: i.request_id for i in handle.items} if handle else {}
    ids |= {r.index: r.request_id for r in handle.refused} if handle else {}
    lines = [_ENC.encode(_result_line(index, ids.get(index, ""), r)) for index, r in enumerate(results)]
    body = b"".join(line + b"\n" for line in lines)
    if out is None:
        sys.stdout.write(body.decode())
    else:
        out.write_bytes(body)
        print(f"wrote {len(results)} results to {out}", file=sys.stderr)


def _result_line(index: int, request_id: str, result: ChatResponse | InterlockError) -> dict[str, Any]:
    if isinstance(result, InterlockError):
        return {"index": index, "request_id": request_id, "ok": False,
                "error": {"kind": str(result.kind), "message": str(result)}}  # fmt: skip
    route = result.route
    return {
        "index": index, "request_id": request_id, "ok": True, "content": result.content,
        "finish_reason": result.finish_reason, "model": route.model if route else "",
        "cost_cents": route.cost_cents if route else 0.0, "usage": result.usage,
    }  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
