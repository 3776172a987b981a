"""Hedging: p99 time to first token with and without hedges, and what the hedges cost upstream.

Run: ``python benchmarks/hedging.py``. A simulator in its own process serves two models: a
primary with a heavy TTFT tail (``--tail-p`` of calls, default 3%, stall 2-3 s before the first
token, see ``--stall-s``; the rest take 20-50 ms) and a healthy second one (20-50 ms). The door's
job chains primary -> second on two providers. The same workload (default 600 requests, 32
concurrent) runs twice, each against a fresh simulator with the same seed, so the primary's n-th
call stalls in both runs alike:

- hedging off: no ``hedge_after_ms``;
- hedging on: ``hedge_after_ms = "p95"`` (or ``--hedge-after-ms N``), ``max_hedges = 1``,
  clamped to ``[--hedge-min-ms, --hedge-max-ms]``; the default hedge budget (gRPC's throttle).

TTFT is each reply's ``route.ttft_ms``; upstream requests are the simulator's ``received``
counters (``Simulator.stats()``). Targets: p99 TTFT with hedging <= 0.25x of without, for <= 6%
extra upstream requests (``extra_request_share``). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
from _common import model_toml, percentile, provider_toml, stats_simulator_process, temp_dir

import interlock
from interlock.policies._config import Config, parse_config

PRIMARY_ID, SECOND_ID = "sim-tail-1", "sim-steady-1"

_SIM_TOML = """\
seed = {seed}
keep_bodies = 0

[models.{primary}]
ttft = {{ kind = "uniform", low = 0.02, high = 0.05 }}
per_token = {{ kind = "fixed", value = 0.0 }}
output_tokens = {{ kind = "fixed", value = 20 }}
tail_p = {tail_p}
tail = {{ kind = "uniform", low = {stall_low}, high = {stall_high} }}

[models.{second}]
ttft = {{ kind = "uniform", low = 0.02, high = 0.05 }}
per_token = {{ kind = "fixed", value = 0.0 }}
output_tokens = {{ kind = "fixed", value = 20 }}
"""


def door_config(url: str, hedge: str | None, args: argparse.Namespace, ledger: Path) -> Config:
    """Two providers at the simulator, the tail model first; ``hedge`` is the job's ``hedge_after_ms``."""
    job = ['[jobs.chat]', 'chain = ["primary", "second"]', "max_hedges = 1"]
    if hedge is not None:
        job += [f"hedge_after_ms = {hedge}", f"hedge_min_ms = {args.hedge_min_ms}"]
        job += [f"hedge_max_ms = {args.hedge_max_ms}"]
    text = "\n".join(
        [
            provider_toml("tailco", url + "/v1", args.concurrency),
            provider_toml("steadyco", url + "/v1", args.concurrency),
            model_toml("primary", "tailco", PRIMARY_ID),
            model_toml("second", "steadyco", SECOND_ID, model_class="fast_b"),
            "\n".join(job) + "\n",
            f"[ledger]\npath = {json.dumps(str(ledger))}\n",
        ]
    )
    return parse_config(text, source="hedging.py")


class Run(msgspec.Struct, frozen=True):
    """One workload's TTFTs (ms), hedged replies, upstream requests, wins of the second model, wall time."""

    ttfts: list[float]
    hedged: int
    upstream: int
    second_wins: int
    wall_s: float


async def workload(url: str, hedge: str | None, args: argparse.Namespace, ledger: Path) -> tuple[list[Any], float]:
    """``args.requests`` asks through the door, ``args.concurrency`` at a time; returns the routes."""
    routes: list[Any] = []
    remaining = args.requests
    async with interlock.open(door_config(url, hedge, args, ledger), ledger_path=ledger, environ={}) as door:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                reply = await door.ask("Name three uses of a circuit breaker.", task="chat")
                if reply.route is None or reply.route.ttft_ms is None:
                    raise RuntimeError(f"a reply without a route or TTFT: {reply.route}")
                routes.append(reply.route)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(args.concurrency):
                tg.start_soon(worker)
        return routes, time.perf_counter() - start


async def measure(hedge: str | None, args: argparse.Namespace, workdir: Path, tag: str) -> Run:
    sim_toml = _SIM_TOML.format(
        seed=args.seed, primary=PRIMARY_ID, second=SECOND_ID, tail_p=args.tail_p,
        stall_low=args.stall_s, stall_high=1.5 * args.stall_s,
    )
    with stats_simulator_process(sim_toml, workdir) as (url, sim):
        routes, wall = await workload(url, hedge, args, workdir / f"ledger-{tag}.sqlite")
        upstream = sim.stats().received
    ttfts = [r.ttft_ms for r in routes]
    hedged = sum(1 for r in routes if r.hedged)
    second = sum(1 for r in routes if r.model == "second")
    return Run(ttfts, hedged, upstream, second, wall)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    hedge = '"p95"' if args.hedge_after_ms is None else str(args.hedge_after_ms)
    with temp_dir() as workdir:
        off = await measure(None, args, workdir, "off")
        on = await measure(hedge, args, workdir, "on")
    r: dict[str, Any] = {}
    for name, run in (("off", off), ("on", on)):
        r[f"{name}_p50_ttft_ms"] = percentile(run.ttfts, 50)
        r[f"{name}_p95_ttft_ms"] = percentile(run.ttfts, 95)
        r[f"{name}_p99_ttft_ms"] = percentile(run.ttfts, 99)
        r[f"{name}_max_ttft_ms"] = max(run.ttfts)
        r[f"{name}_over_1s"] = sum(1 for t in run.ttfts if t >= 1000)
        r[f"{name}_upstream_requests"] = run.upstream
        r[f"{name}_hedged_replies"] = run.hedged
        r[f"{name}_second_model_wins"] = run.second_wins
        r[f"{name}_wall_s"] = run.wall_s
    r["p99_ttft_ratio"] = r["on_p99_ttft_ms"] / r["off_p99_ttft_ms"]
    r["extra_request_share"] = (on.upstream - off.upstream) / off.upstream
    r["hedge_after_ms"] = hedge.strip('"')
    r["requests"], r["concurrency"] = args.requests, args.concurrency
    r["tail_p"], r["stall_s"] = args.tail_p, args.stall_s
    r["target_p99_ttft_ratio"], r["target_extra_request_share"] = 0.25, 0.06
    return r


def report(r: dict[str, Any]) -> None:
    print(f"{r['requests']} requests, {r['concurrency']} concurrent; primary stalls {r['stall_s']:g}-"
          f"{1.5 * r['stall_s']:g} s on {r['tail_p']:.0%} of calls; hedge_after_ms = {r['hedge_after_ms']}, "
          "max_hedges = 1")
    print(f"{'TTFT':<12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'>= 1 s':>8}{'upstream':>10}"
          f"{'hedged':>8}{'wall s':>8}")
    for name in ("off", "on"):
        print(f"hedging {name:<4}" + "".join(f"{r[f'{name}_{k}_ttft_ms']:>9.1f}" for k in ("p50", "p95", "p99", "max"))
              + f"{r[f'{name}_over_1s']:>8}{r[f'{name}_upstream_requests']:>10}{r[f'{name}_hedged_replies']:>8}"
              f"{r[f'{name}_wall_s']:>8.2f}")
    ratio_ok = r["p99_ttft_ratio"] <= r["target_p99_ttft_ratio"]
    extra_ok = r["extra_request_share"] <= r["target_extra_request_share"]
    print(f"p99 TTFT ratio {r['p99_ttft_ratio']:.3f} ({'meets' if ratio_ok else 'MISSES'} <= "
          f"{r['target_p99_ttft_ratio']}); extra upstream requests {r['extra_request_share']:.1%} "
          f"({'meets' if extra_ok else 'MISSES'} <= {r['target_extra_request_share']:.0%})")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="requests per run")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight at once")
    parser.add_argument("--tail-p", type=float, default=0.03, help="share of primary calls that stall")
    parser.add_argument("--stall-s", type=float, default=2.0, help="a stall lasts from this to 1.5x this, seconds")
    parser.add_argument("--hedge-after-ms", type=int, help='a fixed hedge delay instead of "p95"')
    parser.add_argument("--hedge-min-ms", type=int, default=100, help="lower clamp of the p95 delay")
    parser.add_argument("--hedge-max-ms", type=int, default=500, help="upper clamp (and delay before 20 samples)")
    parser.add_argument("--seed", type=int, default=11, help="the simulator's seed (same for both runs)")
    args = parser.parse_args()
    results = anyio.run(main, args)
    report(results)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    run()
