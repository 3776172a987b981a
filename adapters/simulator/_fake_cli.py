"""A fake model CLI: a testing aid that stands in for a model's command line (``claude --print`` ...).

It ships with interlock so that a ``kind = "command"`` provider can be tested without the real
tool, its login or its bill: the routing config, the command adapter's streaming, its usage
parsing, exit-code and stderr rules, timeouts and kill behaviour. Point the provider's ``argv`` at
it (``FAKE_CLI`` is that argv, for the running interpreter) and pick its behaviour by flags::

    from interlock.adapters.simulator._fake_cli import FAKE_CLI
    from interlock.policies._command_spec import CommandSpec

    spec = CommandSpec(argv=(*FAKE_CLI, "--model", "{model}", "--jsonl"), output="jsonl",
                       text_field="delta.text", input_tokens_field="usage.input_tokens",
                       output_tokens_field="usage.output_tokens")

or, in a config file, ``argv = ["python", "-m", "interlock.adapters.simulator._fake_cli", "--jsonl"]``.
Run by hand: ``echo hi | python -m interlock.adapters.simulator._fake_cli --model m``.

The answer is ``--text``, else ``--prompt``, else the prompt read from stdin (an echo); with
``--model M`` it is prefixed ``M: ``, and ``--print-env NAME`` answers with a variable's value.
It is written in pieces of ``--chunk`` characters (bytes with ``--byte-chunks``, splitting
UTF-8 characters) with ``--delay`` seconds between pieces, as plain text or, with ``--jsonl``,
as lines ``{"type": "delta", "delta": {"text": ...}}`` ended by a usage line
``{"type": "result", "usage": {"input_tokens": N, "output_tokens": M}}`` (``--no-usage`` drops it).

With ``--cat`` it copies stdin to stdout as it reads, like ``cat``.

Faults: ``--malformed-line N`` breaks the Nth jsonl line; ``--stderr MSG`` (plus the value of
``--stderr-env NAME``) goes to stderr and ``--exit CODE`` ends the run, after any answer
written so far; ``--hang`` sleeps forever after the answer; ``--wait-for PATH`` holds after the
first piece until PATH exists; ``--ignore-term`` ignores SIGTERM. ``--spawn-grandchild`` starts
a process that ignores SIGTERM and would outlive this one; ``--pid-file PATH`` receives this
process's pid and, on a second line, the grandchild's.

It needs only the standard library, and its waits are plain ``time.sleep``: it runs as its own
process, outside the runtime and its injected clock.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

FAKE_CLI: tuple[str, ...] = (sys.executable, "-m", "interlock.adapters.simulator._fake_cli")
"""The argv that runs this fake with the current interpreter; append flags to it."""

_GRANDCHILD = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n"
_WAIT_LIMIT_S = 60.0  # a forgotten --wait-for gate must not leave the fake running for ever
_POLL_S = 0.005


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fake_cli", description="A fake model CLI.")
    p.add_argument("--cat", action="store_true", help="copy stdin to stdout as it arrives")
    p.add_argument("--text", help="answer with this text")
    p.add_argument("--prompt", help="the prompt, instead of stdin")
    p.add_argument("--model", help="prefix the answer with 'MODEL: '")
    p.add_argument("--print-env", metavar="NAME", help="answer with this environment variable's value")
    p.add_argument("--chunk", type=int, default=4, help="characters (or bytes) per piece")
    p.add_argument("--byte-chunks", action="store_true", help="cut pieces by bytes of UTF-8")
    p.add_argument("--delay", type=float, default=0.0, help="seconds between pieces")
    p.add_argument("--jsonl", action="store_true", help="write JSON lines")
    p.add_argument("--no-usage", action="store_true", help="jsonl: no usage line")
    p.add_argument("--input-tokens", type=int, default=11)
    p.add_argument("--output-tokens", type=int, default=7)
    p.add_argument("--malformed-line", type=int, metavar="N", help="jsonl: break line N (1-based)")
    p.add_argument("--stderr", default="", help="write this to stderr before exiting")
    p.add_argument("--stderr-env", metavar="NAME", help="append this variable's value to stderr")
    p.add_argument("--exit", type=int, default=0, dest="exit_code", help="exit status")
    p.add_argument("--hang", action="store_true", help="sleep forever after the answer")
    p.add_argument("--wait-for", type=Path, metavar="PATH", help="after the first piece, wait until PATH exists")
    p.add_argument("--ignore-term", action="store_true", help="ignore SIGTERM")
    p.add_argument("--spawn-grandchild", action="store_true", help="start a process that outlives this one")
    p.add_argument("--pid-file", type=Path, metavar="PATH", help="write pids here")
    return p


def _answer(args: argparse.Namespace) -> str:
    if args.cat:
        return ""
    if args.print_env:
        text = os.environ.get(args.print_env, "")
    elif args.text is not None:
        text = args.text
    elif args.prompt is not None:
        text = args.prompt
    else:
        text = sys.stdin.buffer.read().decode("utf-8")
    return f"{args.model}: {text}" if args.model else text


def _pieces(text: str, size: int, by_bytes: bool) -> Iterator[bytes]:
    data: bytes | str = text.encode() if by_bytes else text
    for start in range(0, len(data), max(1, size)):
        piece = data[start : start + size]
        yield piece if isinstance(piece, bytes) else piece.encode()


def _lines(args: argparse.Namespace, pieces: Iterator[bytes]) -> Iterator[bytes]:
    if not args.jsonl:
        yield from pieces
        return
    lines = [json.dumps({"type": "delta", "delta": {"text": p.decode()}}) for p in pieces]
    if not args.no_usage:
        usage = {"input_tokens": args.input_tokens, "output_tokens": args.output_tokens}
        lines.append(json.dumps({"type": "result", "usage": usage}))
    for number, line in enumerate(lines, start=1):
        yield (('{"type": "delta", "delta": ' if number == args.malformed_line else line) + "\n").encode()


def _write_pids(path: Path, grandchild: subprocess.Popen[bytes] | None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n{grandchild.pid if grandchild else ''}\n")
    tmp.replace(path)  # atomic: a test polling the file never reads half of it


def _wait_for(path: Path) -> None:
    waited = 0.0
    while not path.exists() and waited < _WAIT_LIMIT_S:
        time.sleep(_POLL_S)
        waited += _POLL_S


def main(argv: list[str] | None = None) -> int:
    """Run the fake CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = None
    if args.spawn_grandchild:
        grandchild = subprocess.Popen(
            [sys.executable, "-c", _GRANDCHILD],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    if args.pid_file:
        _write_pids(args.pid_file, grandchild)
    out = sys.stdout.buffer
    while args.cat and (chunk := os.read(sys.stdin.fileno(), 65536)):
        out.write(chunk)
        out.flush()
    pieces = _pieces(_answer(args), args.chunk, args.byte_chunks and not args.jsonl)
    for index, line in enumerate(_lines(args, pieces)):
        if index and args.delay:
            time.sleep(args.delay)
        out.write(line)
        out.flush()
        if index == 0 and args.wait_for:
            _wait_for(args.wait_for)
    message = args.stderr + (os.environ.get(args.stderr_env, "") if args.stderr_env else "")
    if message:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    while args.hang:
        time.sleep(3600)
    return int(args.exit_code)


if __name__ == "__main__":
    sys.exit(main())
