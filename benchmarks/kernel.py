"""Kernel benchmark: tell throughput and ask round-trips, against bare anyio memory streams.

Run: ``python benchmarks/kernel.py``. Each figure is printed beside its floor (the same pattern
done with bare anyio memory object streams, measured in the same run) and as a ratio to it.
Targets: tell >= 0.6x and ask >= 0.5x of the floor.

A micro-benchmark follows: the actor loop's dispatch on the kind of a mailbox item (tell, ask,
ask_stream, stop), written as a chain of ``type(item) is X`` tests and as a ``match`` on class
patterns, timed per message for a tell (which falls through every test) and for an ask (the
first test), beside a loop that tests nothing. ``match_ratio`` is the ``match`` time over the
chain's, for tells. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import msgspec

from interlock import Actor, Runtime
from interlock._actor import _Ask, _AskStream, _Stop
from interlock._streams import Reply

TELLS = 200_000
ASKS = 50_000
DISPATCHES = 1_000_000


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


class Tick(msgspec.Struct, frozen=True, tag=True):
    """A tell as the actors send them: a frozen, tagged Struct."""

    n: int


def dispatch_none(items: Sequence[object]) -> int:
    """The loop alone: what every dispatch below pays before it tests anything."""
    seen = 0
    for _item in items:
        seen += 1
    return seen


def dispatch_type_is(items: Sequence[object]) -> int:
    """The kinds told apart by ``type(item) is X``, the form mypy narrows on."""
    seen = 0
    for item in items:
        if type(item) is _Ask:
            seen += 2
        elif type(item) is _AskStream:
            seen += 3
        elif type(item) is _Stop:
            seen += 4
        else:
            seen += 1
    return seen


def dispatch_match(items: Sequence[object]) -> int:
    """The same kinds told apart by a ``match`` on class patterns (``isinstance`` underneath)."""
    seen = 0
    for item in items:
        match item:
            case _Ask():
                seen += 2
            case _AskStream():
                seen += 3
            case _Stop():
                seen += 4
            case _:
                seen += 1
    return seen


def ns_per_item(fn: Callable[[Sequence[object]], int], items: Sequence[object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn(items)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e9


def dispatch(n: int, rounds: int) -> dict[str, float]:
    """Nanoseconds per message of each dispatch form, for tells and for asks, best of ``rounds``."""
    tells: Sequence[object] = [Tick(i) for i in range(1000)] * max(1, n // 1000)
    asks: Sequence[object] = [_Ask(Tick(i), Reply()) for i in range(1000)] * max(1, n // 1000)
    results = {
        "dispatch_floor_ns": ns_per_item(dispatch_none, tells, rounds),
        "dispatch_tell_type_is_ns": ns_per_item(dispatch_type_is, tells, rounds),
        "dispatch_tell_match_ns": ns_per_item(dispatch_match, tells, rounds),
        "dispatch_ask_type_is_ns": ns_per_item(dispatch_type_is, asks, rounds),
        "dispatch_ask_match_ns": ns_per_item(dispatch_match, asks, rounds),
    }
    results["match_ratio"] = results["dispatch_tell_match_ns"] / results["dispatch_tell_type_is_ns"]
    return results


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
    results.update(dispatch(int(DISPATCHES * scale), rounds))
    return results


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds per figure")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    args = parser.parse_args()
    r = anyio.run(main, args.rounds, args.scale)
    print(f"tell: {r['tell_per_s']:>12,.0f}/s   floor {r['tell_floor_per_s']:>12,.0f}/s   ratio {r['tell_ratio']:.2f}")
    print(f"ask:  {r['ask_per_s']:>12,.0f}/s   floor {r['ask_floor_per_s']:>12,.0f}/s   ratio {r['ask_ratio']:.2f}")
    print(f"dispatch, ns per message (the loop alone: {r['dispatch_floor_ns']:.1f})")
    print(f"  tell:  type-is {r['dispatch_tell_type_is_ns']:6.1f}   match {r['dispatch_tell_match_ns']:6.1f}"
          f"   match/type-is {r['match_ratio']:.2f}")
    print(f"  ask:   type-is {r['dispatch_ask_type_is_ns']:6.1f}   match {r['dispatch_ask_match_ns']:6.1f}")
    print(json.dumps({k: round(v, 3) for k, v in r.items()}))


if __name__ == "__main__":
    run()
