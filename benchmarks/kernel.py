"""Kernel benchmark: tell throughput and ask round-trips, against bare anyio memory streams.

Run: ``python benchmarks/kernel.py``. Each figure is printed beside its floor (the same pattern
done with bare anyio memory object streams, measured in the same run) and as a ratio to it.
Targets: tell >= 0.6x and ask >= 0.5x of the floor. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import anyio

from interlock import Actor, Runtime

TELLS = 200_000
ASKS = 50_000


class Sink(Actor[Any]):
    mailbox_size = 1024

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    async def receive(self, msg: Any) -> Any:
        if msg is None:
            return self.total
        self.total += msg
        return self.total


async def actor_tell(n: int) -> float:
    async with Runtime() as rt:
        ref = await rt.spawn(Sink, name="sink")
        start = time.perf_counter()
        for _ in range(n):
            await ref.tell(1)
        assert await ref.ask(None) == n
        return n / (time.perf_counter() - start)


async def actor_ask(n: int) -> float:
    async with Runtime() as rt:
        ref = await rt.spawn(Sink, name="sink")
        start = time.perf_counter()
        for _ in range(n):
            await ref.ask(1)
        return n / (time.perf_counter() - start)


async def bare_tell(n: int) -> float:
    send, recv = anyio.create_memory_object_stream[int](1024)
    total = 0
    done = anyio.Event()

    async def consumer() -> None:
        nonlocal total
        async with recv:
            async for item in recv:
                total += item
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        start = time.perf_counter()
        async with send:
            for _ in range(n):
                await send.send(1)
        await done.wait()
        elapsed = time.perf_counter() - start
    assert total == n
    return n / elapsed


async def bare_ask(n: int) -> float:
    req_send, req_recv = anyio.create_memory_object_stream[int](1024)
    rep_send, rep_recv = anyio.create_memory_object_stream[int](1024)

    async def server() -> None:
        async with req_recv, rep_send:
            async for item in req_recv:
                await rep_send.send(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(server)
        start = time.perf_counter()
        async with req_send, rep_recv:
            for _ in range(n):
                await req_send.send(1)
                await rep_recv.receive()
        return n / (time.perf_counter() - start)


async def best_of(fn: Any, n: int, rounds: int) -> float:
    return max([await fn(n) for _ in range(rounds)])


async def main(rounds: int, scale: float) -> dict[str, float]:
    tells, asks = int(TELLS * scale), int(ASKS * scale)
    results = {
        "tell_per_s": await best_of(actor_tell, tells, rounds),
        "tell_floor_per_s": await best_of(bare_tell, tells, rounds),
        "ask_per_s": await best_of(actor_ask, asks, rounds),
        "ask_floor_per_s": await best_of(bare_ask, asks, rounds),
    }
    results["tell_ratio"] = results["tell_per_s"] / results["tell_floor_per_s"]
    results["ask_ratio"] = results["ask_per_s"] / results["ask_floor_per_s"]
    return results


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds per figure")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    args = parser.parse_args()
    r = anyio.run(main, args.rounds, args.scale)
    print(f"tell: {r['tell_per_s']:>12,.0f}/s   floor {r['tell_floor_per_s']:>12,.0f}/s   ratio {r['tell_ratio']:.2f}")
    print(f"ask:  {r['ask_per_s']:>12,.0f}/s   floor {r['ask_floor_per_s']:>12,.0f}/s   ratio {r['ask_ratio']:.2f}")
    print(json.dumps({k: round(v, 3) for k, v in r.items()}))


if __name__ == "__main__":
    run()
