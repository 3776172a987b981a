"""``interlock serve --workers N`` against one worker: streamed requests per second through the gateway.

Run: ``python benchmarks/serve_workers.py``. One simulator process answers at once (no TTFT, no
gap between tokens: ``INSTANT_SIM_TOML``), so the gateway's own work is what is measured. For each
worker count (the baseline, 1, and ``--workers``, default 2) a real ``interlock serve`` is started
on 127.0.0.1 with a config pointing at that simulator and a fresh SQLite ledger (the state and
the ledger are shared by the workers, as they are in production), and ``--concurrency`` aiohttp
clients stream ``--requests`` chat completions through it, each read to ``[DONE]``.

Reported per worker count: requests/s, p50/p99 latency; and ``ratio`` = requests/s with
``--workers`` over requests/s with one, in the same run. On this 2-core machine the client, the
simulator and the workers share the cores, so the ratio is what a second core buys the gateway
with its load generator beside it, not the ceiling of a dedicated host. The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from _common import INSTANT_SIM_TOML, model_toml, percentile, provider_toml, simulator_process, temp_dir

MODEL_ID = "bench-model"
PROMPT = "Say something."


def gateway_config(sim_url: str, concurrency: int, ledger: Path) -> str:
    return "\n".join(
        [
            provider_toml("sim", sim_url + "/v1", concurrency),
            model_toml("bench_model", "sim", MODEL_ID),
            '[jobs.bench]\nchain = ["bench_model"]\n',
            f"[ledger]\npath = {json.dumps(str(ledger))}\n",
        ]
    )


class Gateway:
    """A running ``interlock serve --workers N``, stopped with SIGTERM (each worker flushes its ledger)."""

    def __init__(self, config: Path, workers: int, workdir: Path) -> None:
        argv = [sys.executable, "-m", "interlock.actors.cli._main", "serve", "--config", str(config), "--port", "0",
                "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
        self._errors = (workdir / f"serve-{workers}.stderr").open("w+", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
        self.url = self._read_url()

    def _read_url(self) -> str:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._errors.write(line)
            if "listening on " in line:
                return line.split("listening on ", 1)[1].split(";", 1)[0]
        raise RuntimeError(f"interlock serve exited ({self.proc.wait()}) without listening")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._errors.close()


async def drive(url: str, n: int, concurrency: int, tokens: int) -> tuple[float, list[float]]:
    """Stream ``n`` chat completions with ``concurrency`` clients; wall seconds and each latency."""
    body = {"model": "bench", "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    latencies: list[float] = []
    remaining = n
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                chunks = 0
                async with session.post("/v1/chat/completions", json=body) as resp:
                    resp.raise_for_status()
                    async for line in resp.content:
                        if line.startswith(b"data: ") and line[6:].strip() != b"[DONE]":
                            chunks += 1
                if chunks < tokens:
                    raise RuntimeError(f"{chunks} chunks, expected at least {tokens}")
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(client)
        return time.perf_counter() - start, latencies


async def one_count(sim_url: str, workers: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    config = workdir / f"gateway-{workers}.toml"
    config.write_text(gateway_config(sim_url, args.concurrency, workdir / f"ledger-{workers}.sqlite"), encoding="utf-8")
    gateway = await anyio.to_thread.run_sync(Gateway, config, workers, workdir)
    try:
        await drive(gateway.url, args.warmup, args.concurrency, args.tokens)
        wall, latencies = await drive(gateway.url, args.requests, args.concurrency, args.tokens)
    finally:
        await anyio.to_thread.run_sync(gateway.stop)
    return {
        "requests_per_s": args.requests / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with temp_dir() as workdir, simulator_process(INSTANT_SIM_TOML.format(tokens=args.tokens), workdir) as sim_url:
        best: dict[int, dict[str, float]] = {}
        for _ in range(args.rounds):
            for workers in (1, args.workers):
                run = await one_count(sim_url, workers, args, workdir)
                if workers not in best or run["requests_per_s"] > best[workers]["requests_per_s"]:
                    best[workers] = run
    for workers, figures in best.items():
        for key, value in figures.items():
            results[f"workers_{workers}_{key}"] = value
    results["ratio"] = best[args.workers]["requests_per_s"] / best[1]["requests_per_s"]
    results["workers"], results["requests"], results["concurrency"] = args.workers, args.requests, args.concurrency
    results["tokens"], results["cpus"] = args.tokens, os.cpu_count() or 0
    return results


def report(r: dict[str, Any]) -> None:
    print(f"{r['requests']:,} streamed requests ({r['tokens']} tokens each), {r['concurrency']} clients, "
          f"{r['cpus']} CPUs shared by the clients, the simulator and the gateway")
    for workers in (1, r["workers"]):
        print(f"  {workers} worker(s): {r[f'workers_{workers}_requests_per_s']:>8,.0f} requests/s  "
              f"p50 {r[f'workers_{workers}_p50_ms']:.1f} ms  p99 {r[f'workers_{workers}_p99_ms']:.1f} ms")
    print(f"  ratio {r['workers']} workers / 1 worker: {r['ratio']:.2f}")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes to compare with one")
    parser.add_argument("--requests", type=int, default=3000, help="streamed requests per measurement")
    parser.add_argument("--warmup", type=int, default=200, help="requests before measuring")
    parser.add_argument("--concurrency", type=int, default=64, help="clients at once")
    parser.add_argument("--tokens", type=int, default=16, help="tokens per answer")
    parser.add_argument("--rounds", type=int, default=1, help="best of N rounds")
    args = parser.parse_args()
    results = anyio.run(main, args)
    report(results)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    run()
