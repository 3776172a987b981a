"""Door overhead: the same streaming workload through the door and through a bare aiohttp client.

Run: ``python benchmarks/overhead.py``. The simulator runs in its own process (zero latency,
``--tokens`` output tokens, so every answer is that many SSE chunks plus the usage chunk). The
floor is a bare aiohttp client that POSTs OpenAI-format streaming requests and parses every
``data:`` line with ``json.loads``; the door is ``interlock.open`` on a config with one
``openai_compatible`` provider at the simulator (no hedging, no retries, ledger on a temp file).
A third column, ``adapter``, streams through interlock's ``HttpAdapter`` (httpx2 over aiohttp,
the OpenAI codec; its ``batches``, as the provider actor reads it) with no actors: it splits the
door's cost into transport+codec and the rest.

Figures per side: requests/s, p50/p99 latency (request start to end of stream) and CPU ms per
request (this process's own CPU, ``time.process_time``, all threads: the door's ledger thread
counts). The door's CPU window includes ``door.flush()``, so every ledger row it owes is paid
for. Target: door CPU per request <= 1.5x the floor. ``--profile FILE`` writes a cProfile of the
door's best round. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import msgspec
from _common import INSTANT_SIM_TOML, model_toml, percentile, provider_toml, simulator_process, temp_dir

import interlock
from interlock._clock import RealClock
from interlock._types import ChatRequest, Message, RouteEvent, TextDelta
from interlock.adapters.providers._http import HttpAdapter
from interlock.adapters.providers.openai._codec import OpenAICodec
from interlock.policies._config import Config, parse_config

MODEL_ID = "sim-bench-1"
PROMPT = "Summarize the benefits of structured concurrency in two sentences."


class Result(msgspec.Struct, frozen=True):
    """One measured run: wall time, CPU time (this process, all threads) and each request's latency."""

    wall_s: float
    cpu_s: float
    latencies: list[float]

    def figures(self) -> dict[str, float]:
        n = len(self.latencies)
        return {
            "rps": n / self.wall_s,
            "p50_ms": percentile(self.latencies, 50) * 1000,
            "p99_ms": percentile(self.latencies, 99) * 1000,
            "cpu_ms_per_req": self.cpu_s * 1000 / n,
        }


async def drive(n: int, concurrency: int, one: Callable[[], Awaitable[None]]) -> tuple[float, list[float]]:
    """Run ``one`` ``n`` times with ``concurrency`` workers; returns the wall time and latencies."""
    latencies: list[float] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return time.perf_counter() - start, latencies


# -- the floor: bare aiohttp ---------------------------------------------------------------------


async def floor_run(url: str, n: int, concurrency: int, tokens: int, warmup: int) -> Result:
    body = {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def one() -> None:
            chunks = 0
            async with session.post("/v1/chat/completions", json=body) as resp:
                resp.raise_for_status()
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        payload = line[6:].strip()
                        if payload != b"[DONE]":
                            json.loads(payload)
                            chunks += 1
            if chunks < tokens:
                raise RuntimeError(f"floor: {chunks} chunks, expected at least {tokens}")

        await drive(warmup, concurrency, one)
        cpu = time.process_time()
        wall, latencies = await drive(n, concurrency, one)
        return Result(wall, time.process_time() - cpu, latencies)


# -- the middle: interlock's HTTP adapter alone (httpx2 over aiohttp, the OpenAI codec) -----------


async def adapter_run(url: str, n: int, concurrency: int, tokens: int, warmup: int) -> Result:
    codec = OpenAICodec("sim", None, compatible=True)
    adapter = HttpAdapter("sim", url + "/v1", codec, max_connections=concurrency, clock=RealClock())
    request = ChatRequest(messages=(Message.text("user", PROMPT),))
    try:

        async def one() -> None:
            chunks = 0
            async for batch in adapter.batches(request, MODEL_ID):  # what the provider actor reads
                for event in batch:
                    if type(event) is TextDelta:
                        chunks += 1
            if chunks < tokens:
                raise RuntimeError(f"adapter: {chunks} text chunks, expected {tokens}")

        await drive(warmup, concurrency, one)
        cpu = time.process_time()
        wall, latencies = await drive(n, concurrency, one)
        return Result(wall, time.process_time() - cpu, latencies)
    finally:
        await adapter.aclose()


# -- the door --------------------------------------------------------------------------------------


def door_config(url: str, concurrency: int, ledger: Path) -> Config:
    text = "\n".join(
        [
            provider_toml("sim", url + "/v1", concurrency),
            model_toml("bench_model", "sim", MODEL_ID),
            '[jobs.bench]\nchain = ["bench_model"]\n',
            f"[ledger]\npath = {json.dumps(str(ledger))}\n",
        ]
    )
    return parse_config(text, source="overhead.py")


async def door_run(
    url: str, n: int, concurrency: int, tokens: int, warmup: int, workdir: Path, profile: cProfile.Profile | None
) -> Result:
    ledger = workdir / f"ledger-{time.perf_counter_ns()}.sqlite"
    config = door_config(url, concurrency, ledger)
    async with interlock.open(config, ledger_path=ledger, environ={}) as door:

        async def one() -> None:
            chunks = 0
            routed = False
            async for event in door.stream(PROMPT, task="bench"):
                if type(event) is TextDelta:
                    chunks += 1
                elif type(event) is RouteEvent:
                    routed = True
            if chunks < tokens or not routed:
                raise RuntimeError(f"door: {chunks} text chunks (expected {tokens}), route event: {routed}")

        await drive(warmup, concurrency, one)
        await door.flush()
        if profile is not None:
            profile.enable()
        cpu = time.process_time()
        wall, latencies = await drive(n, concurrency, one)
        await door.flush()
        cpu_s = time.process_time() - cpu
        if profile is not None:
            profile.disable()
        stats = door.ledger_statistics()
        if stats.pending or stats.written < 2 * (n + warmup):
            raise RuntimeError(f"door: ledger did not keep every record: {stats}")
        return Result(wall, cpu_s, latencies)


# -- the run ---------------------------------------------------------------------------------------

SIDES = ("door", "adapter", "floor")


async def one_round(
    args: argparse.Namespace, url: str, workdir: Path, profile: cProfile.Profile | None, reverse: bool
) -> dict[str, Result]:
    n, c, tokens, warm = args.requests, args.concurrency, args.tokens, args.warmup
    runs = {
        "floor": lambda: floor_run(url, n, c, tokens, warm),
        "adapter": lambda: adapter_run(url, n, c, tokens, warm),
        "door": lambda: door_run(url, n, c, tokens, warm, workdir, profile),
    }
    order = list(reversed(runs)) if reverse else list(runs)  # no side always goes first
    return {side: await runs[side]() for side in order}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    best: dict[str, Result] = {}
    best_profile: cProfile.Profile | None = None
    with temp_dir() as workdir, simulator_process(INSTANT_SIM_TOML.format(tokens=args.tokens), workdir) as url:
        for number in range(args.rounds):  # sides interleaved, so drift in the machine hits them alike
            profile = cProfile.Profile() if args.profile else None
            for side, result in (await one_round(args, url, workdir, profile, number % 2 == 1)).items():
                if side not in best or result.cpu_s < best[side].cpu_s:
                    best[side] = result
                    if side == "door":
                        best_profile = profile
    if best_profile is not None:
        best_profile.dump_stats(args.profile)
    results: dict[str, Any] = {}
    for side in SIDES:
        results.update({f"{side}_{k}": v for k, v in best[side].figures().items()})
    floor_cpu = results["floor_cpu_ms_per_req"]
    results["cpu_ratio"] = results["door_cpu_ms_per_req"] / floor_cpu
    results["adapter_cpu_ratio"] = results["adapter_cpu_ms_per_req"] / floor_cpu
    results["rps_ratio"] = results["door_rps"] / results["floor_rps"]
    results["target_cpu_ratio"] = 1.5
    results["requests"], results["concurrency"], results["tokens"] = args.requests, args.concurrency, args.tokens
    return results


def report(r: dict[str, Any]) -> None:
    rows = (("requests/s", "rps"), ("p50 latency ms", "p50_ms"), ("p99 latency ms", "p99_ms"),
            ("CPU ms/request", "cpu_ms_per_req"))
    print(f"{r['requests']} streaming requests, {r['concurrency']} concurrent, {r['tokens']} tokens each; "
          "adapter = interlock's HTTP adapter alone, no actors")
    print(f"{'':<16}{'door':>10}{'adapter':>10}{'floor':>10}{'door/floor':>12}{'adapter/floor':>15}")
    for label, key in rows:
        door, adapter, floor = (r[f"{side}_{key}"] for side in SIDES)
        print(f"{label:<16}{door:>10,.3f}{adapter:>10,.3f}{floor:>10,.3f}{door / floor:>12.2f}{adapter / floor:>15.2f}")
    verdict = "meets" if r["cpu_ratio"] <= r["target_cpu_ratio"] else "MISSES"
    print(f"door CPU per request is {r['cpu_ratio']:.2f}x the floor: {verdict} the target <= {r['target_cpu_ratio']}x")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per side and round")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight at once")
    parser.add_argument("--tokens", type=int, default=20, help="output tokens (SSE chunks) per answer")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests before each side")
    parser.add_argument("--rounds", type=int, default=7, help="best of N rounds (lowest CPU) per side")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the door's best round")
    args = parser.parse_args()
    results = anyio.run(main, args)
    report(results)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    run()
