"""State stores: Redis against SQLite, for the budget's reserve + settle and for the door's CPU per request.

Run: ``python benchmarks/state.py``. It starts its own ``redis-server`` (a free loopback port, a
temp dir, persistence off) and measures, in the same run:

- **reserve + settle**: one metered call's pair of store calls (three scopes: caller, tenant,
  provider), one after another, each pair timed; p50/p99 for Redis and for SQLite (a temp file,
  the embedded default) as the baseline, and the loopback floor: two bare PINGs on the same
  client, the round trips a pair cannot do without. Target: Redis p99 < 1 ms on loopback.
- **door CPU per streamed request**: the same door (the embedded simulator, a tenant budget and a
  per-provider limit, so the budget and lease rails run on every attempt) with its state in
  Redis and in SQLite, interleaved, best of ``--rounds`` by CPU. This process's CPU
  (``time.process_time``: the door, its ledger thread and the embedded simulator alike on both
  sides) per request; the Redis server's own CPU is shown apart. Target: Redis within 1.3x SQLite.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
from _common import percentile, temp_dir

import interlock
from interlock._types import RouteEvent, TextDelta
from interlock.adapters.stores._redis_state import RedisStateStore
from interlock.adapters.stores._state_store import SqliteStateStore, StateStore
from interlock.policies._budget import day_bucket
from interlock.policies._config import parse_config

# The tests' own server runner (free port, temp dir, persistence off, PING with a deadline), not a copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from redis_server import RedisServer

PROMPT = "用一句话总结结构化并发的好处 🙂 Summarize structured concurrency."
SCOPES = (("caller:acme/svc", 1e12), ("tenant:acme", 1e12), ("provider:sim", 1e12))

_DOOR = """
[providers.sim]
kind = "simulator"
format = "openai"
max_concurrency = {concurrency}
probe = {{ interval_s = 3600 }}

[models.bench_model]
provider = "sim"
id = "sim-bench-1"
class = "fast"
context_window = 128000
max_output_tokens = 256
price = {{ input = 0.40, output = 1.60 }}
allow_floating = true

[jobs.bench]
chain = ["bench_model"]

[budgets.tenants.acme]
usd_per_day = 1000000.0

[limits]
per_provider = {{ sim = {concurrency} }}

[ledger]
path = {ledger}

[state]
url = {state}

[simulator.default]
ttft = {{ kind = "fixed", value = 0.0 }}
per_token = {{ kind = "fixed", value = 0.0 }}
output_tokens = {{ kind = "fixed", value = {tokens} }}
"""


def server_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) the process ``pid`` has used, from /proc; 0.0 where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- reserve + settle ------------------------------------------------------------------------------


async def pair_latencies(store: StateStore, pairs: int, warmup: int) -> list[float]:
    """Seconds per reserve + settle of one call on three scopes, one pair at a time."""
    budgets, now = store.budgets, time.time()
    day = day_bucket(now)
    latencies: list[float] = []
    for i in range(warmup + pairs):
        start = time.perf_counter()
        await budgets.reserve(SCOPES, day=day, amount=0.75, reservation_id=f"r{i}", now=now, expires_at=now + 900)
        await budgets.settle(f"r{i}", 0.5)
        if i >= warmup:
            latencies.append(time.perf_counter() - start)
    return latencies


async def ping_latencies(store: RedisStateStore, pairs: int, warmup: int) -> list[float]:
    """Seconds per two PINGs on the store's own client: the round trips of a pair, with no work in them."""
    client = store.client()
    latencies: list[float] = []
    for i in range(warmup + pairs):
        start = time.perf_counter()
        await client.ping()
        await client.ping()
        if i >= warmup:
            latencies.append(time.perf_counter() - start)
    return latencies


# -- the door --------------------------------------------------------------------------------------


async def door_cpu(state_url: str, workdir: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) for ``args.requests`` streamed requests through a door."""
    ledger = workdir / f"ledger-{time.perf_counter_ns()}.sqlite"
    text = _DOOR.format(
        concurrency=args.concurrency, tokens=args.tokens, ledger=json.dumps(str(ledger)), state=json.dumps(state_url)
    )
    config = parse_config(text, source="state.py")
    async with interlock.open(config, ledger_path=ledger, environ={}) as door:
        remaining = args.warmup

        async def one() -> None:
            chunks, routed = 0, False
            async for event in door.stream(PROMPT, task="bench", tenant="acme", caller="svc"):
                chunks += type(event) is TextDelta
                routed = routed or type(event) is RouteEvent
            if chunks < args.tokens or not routed:
                raise RuntimeError(f"door: {chunks} text chunks (expected {args.tokens}), route event: {routed}")

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one()

        async def drive(n: int) -> None:
            nonlocal remaining
            remaining = n
            async with anyio.create_task_group() as tg:
                for _ in range(args.concurrency):
                    tg.start_soon(worker)

        await drive(args.warmup)
        await door.flush()
        cpu, wall = time.process_time(), time.perf_counter()
        await drive(args.requests)
        await door.flush()
        return time.process_time() - cpu, time.perf_counter() - wall


# -- the run ---------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with temp_dir() as workdir, RedisServer(workdir / "redis") as server:
        sqlite_file = workdir / "state.sqlite"
        stores: dict[str, Callable[[], AbstractAsyncContextManager[StateStore]]] = {
            "redis": lambda: RedisStateStore(server.url, key_prefix="bench"),
            "sqlite": lambda: SqliteStateStore(sqlite_file),
        }
        pairs: dict[str, list[float]] = {}
        for name, opener in stores.items():
            async with opener() as store:
                pairs[name] = await pair_latencies(store, args.pairs, args.warmup)
                if isinstance(store, RedisStateStore):
                    pairs["ping"] = await ping_latencies(store, args.pairs, args.warmup)
        urls = {"redis": server.url, "sqlite": f"sqlite:///{workdir / 'door-state.sqlite'}"}
        best: dict[str, tuple[float, float]] = {}
        redis_cpu: list[float] = []
        for number in range(args.rounds):  # sides interleaved, so drift in the machine hits them alike
            order = ("sqlite", "redis") if number % 2 else ("redis", "sqlite")
            for side in order:
                before = server_cpu_s(server.pid)
                cpu, wall = await door_cpu(urls[side], workdir, args)
                if side == "redis":
                    redis_cpu.append(server_cpu_s(server.pid) - before)
                if side not in best or cpu < best[side][0]:
                    best[side] = (cpu, wall)
    results: dict[str, Any] = {}
    for name, latencies in pairs.items():
        results[f"{name}_pair_p50_ms"] = percentile(latencies, 50) * 1000
        results[f"{name}_pair_p99_ms"] = percentile(latencies, 99) * 1000
    for side, (cpu, wall) in best.items():
        results[f"door_{side}_cpu_ms_per_req"] = cpu * 1000 / args.requests
        results[f"door_{side}_rps"] = args.requests / wall
    results["redis_server_cpu_ms_per_req"] = min(redis_cpu) * 1000 / args.requests
    results["cpu_ratio"] = results["door_redis_cpu_ms_per_req"] / results["door_sqlite_cpu_ms_per_req"]
    results["pair_p99_over_ping"] = results["redis_pair_p99_ms"] / results["ping_pair_p99_ms"]
    results["target_pair_p99_ms"], results["target_cpu_ratio"] = 1.0, 1.3
    results["pairs"], results["requests"], results["concurrency"] = args.pairs, args.requests, args.concurrency
    return results


def report(r: dict[str, Any]) -> None:
    print(f"reserve + settle, three scopes, {r['pairs']} pairs one at a time (ms)")
    print(f"{'':<10}{'p50':>10}{'p99':>10}")
    for name, label in (("redis", "redis"), ("sqlite", "sqlite"), ("ping", "2 x PING")):
        print(f"{label:<10}{r[f'{name}_pair_p50_ms']:>10.3f}{r[f'{name}_pair_p99_ms']:>10.3f}")
    verdict = "meets" if r["redis_pair_p99_ms"] < r["target_pair_p99_ms"] else "MISSES"
    print(f"Redis p99 {r['redis_pair_p99_ms']:.3f} ms: {verdict} the target < {r['target_pair_p99_ms']} ms")
    print(f"door, {r['requests']} streamed requests, {r['concurrency']} concurrent, budget + lease rails on")
    print(f"{'':<10}{'CPU ms/req':>12}{'requests/s':>12}")
    for side in ("redis", "sqlite"):
        print(f"{side:<10}{r[f'door_{side}_cpu_ms_per_req']:>12.3f}{r[f'door_{side}_rps']:>12,.0f}")
    print(f"(the Redis server's own CPU: {r['redis_server_cpu_ms_per_req']:.3f} ms per request, not counted above)")
    verdict = "meets" if r["cpu_ratio"] <= r["target_cpu_ratio"] else "MISSES"
    print(f"door CPU with Redis state is {r['cpu_ratio']:.2f}x SQLite's: {verdict} the target <= 1.3x")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000, help="measured reserve + settle pairs per store")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured pairs, and door requests, first")
    parser.add_argument("--requests", type=int, default=1000, help="measured door requests per side and round")
    parser.add_argument("--concurrency", type=int, default=32, help="door requests in flight at once")
    parser.add_argument("--tokens", type=int, default=20, help="output tokens per answer")
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds (lowest CPU) per side")
    args = parser.parse_args()
    results = anyio.run(main, args)
    report(results)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    run()
