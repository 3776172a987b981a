"""PII detection: what the scan of an unmarked prompt costs per kilobyte, beside baselines run alike.

Run: ``python benchmarks/pii.py``. Three kinds of prompt, each built to ``--kb`` kilobytes:

- ``prose``: words and punctuation, no digit and no ``@`` (most chat traffic): the cheap gates pass
  it over;
- ``numbers``: business text dense with dates, amounts, times, order and version numbers, and
  nothing personal: every detector runs to the end, and the phone matcher sees every long digit
  run. The worst case;
- ``pii``: the same text with an e-mail address and a phone number at its end: the scan runs until
  both fire.

Each is timed as the router runs it (``policies._pii.detect`` over ``request_texts``, every detector,
region US) and, in the same run, two baselines over the same text: ``len(text.encode())`` (one
pass over the bytes in C) and one regex pass (``re.findall(r"\\w+")``, what a word tokenizer
costs). Figures are microseconds per kilobyte, best of ``--repeat`` rounds; the ratio is the
scan over the regex pass. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Callable

from interlock import ChatRequest, Message
from interlock.policies._pii import DETECTORS, detect, request_texts

_WORDS = [
    "the", "quarterly", "review", "covers", "revenue", "margin", "churn", "and", "hiring", "plans", "for", "each",
    "region", "while", "board", "asks", "a", "short", "summary", "of", "risks", "open", "questions", "next", "steps",
]  # fmt: skip
_WORD = re.compile(r"\w+")


def _prose(rng: random.Random, size: int) -> str:
    out: list[str] = []
    length = 0
    while length < size:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 18))).capitalize() + ". "
        out.append(sentence)
        length += len(sentence)
    return "".join(out)[:size]


def _numbers(rng: random.Random, size: int) -> str:
    out: list[str] = []
    length = 0
    while length < size:
        sentence = (
            f"On 2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} at {rng.randint(0, 23):02d}:"
            f"{rng.randint(0, 59):02d} order {rng.randint(10_000_000, 99_999_999)} shipped "
            f"{rng.randint(1, 9_999):,} units for ${rng.randint(100, 999_999):,}.{rng.randint(0, 99):02d} "
            f"(build {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}, ticket #{rng.randint(1, 99_999)}). "
        )
        out.append(sentence)
        length += len(sentence)
    return "".join(out)[:size]


def _best_us(run: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` timed rounds, in microseconds; each round runs ``run`` enough times."""
    loops = 1
    while True:  # enough loops that a round takes at least 20 ms
        start = time.perf_counter()
        for _ in range(loops):
            run()
        if time.perf_counter() - start >= 0.02:
            break
        loops *= 2
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            run()
        best = min(best, (time.perf_counter() - start) / loops)
    return best * 1e6


def measure(kind: str, text: str, repeat: int) -> dict[str, float | str]:
    """One prompt's figures: the scan and each baseline, in microseconds per kilobyte, and the ratios."""
    request = ChatRequest(messages=(Message.text("user", text),))
    kb = len(text.encode()) / 1024

    def scan() -> tuple[str, ...]:
        return detect(request_texts(request), DETECTORS, ("US",))

    figures = {
        "scan": _best_us(scan, repeat) / kb,
        "encode": _best_us(lambda: len(text.encode()), repeat) / kb,
        "regex": _best_us(lambda: _WORD.findall(text), repeat) / kb,
    }
    return {
        "kind": kind,
        "found": ",".join(scan()),
        "scan_us_per_kb": figures["scan"],
        "encode_us_per_kb": figures["encode"],
        "regex_us_per_kb": figures["regex"],
        "scan_over_regex": figures["scan"] / figures["regex"],
    }


def main() -> None:
    """Build the prompts, time them, print a table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kb", type=int, default=16, help="size of each prompt in kilobytes (default 16)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per figure; the best is kept (default 5)")
    args = parser.parse_args()
    rng = random.Random(17)
    size = args.kb * 1024
    numbers = _numbers(rng, size)
    prompts = {
        "prose": _prose(rng, size),
        "numbers": numbers,
        "pii": numbers[: size - 60] + " write to jane.doe@example.com or call (415) 555-2671",
    }
    detect(["warm up +1 415 555 2671"])  # the phone library's import and metadata load are not per request
    rows = [measure(kind, text, args.repeat) for kind, text in prompts.items()]
    print(f"PII scan, {args.kb} KB prompts, microseconds per KB (best of {args.repeat})")
    print(f"{'prompt':<8} {'scan':>9} {'encode':>8} {'regex':>8} {'scan/regex':>11}  found")
    for row in rows:
        print(
            f"{row['kind']:<8} {row['scan_us_per_kb']:>9.1f} {row['encode_us_per_kb']:>8.2f} "
            f"{row['regex_us_per_kb']:>8.1f} {row['scan_over_regex']:>10.1f}x  {row['found'] or '-'}"
        )
    summary: dict[str, float | int] = {"kb": args.kb}
    for row in rows:
        for key in ("scan_us_per_kb", "encode_us_per_kb", "regex_us_per_kb", "scan_over_regex"):
            summary[f"{row['kind']}_{key}"] = round(float(row[key]), 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
