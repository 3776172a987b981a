"""A door process that holds machine-wide slots, or takes them (run by tests/test_lease_recovery.py).

``python tests/lease_worker.py SPEC`` where SPEC is JSON: ``mode`` (``hold`` or ``take``),
``state`` (the shared state file), ``ledger`` (this process's ledger), ``slots``
(``limits.max_in_flight``), ``lease_ttl_s`` and ``ttft_s`` (how long the simulator waits before
each first token).

``hold`` starts ``slots`` calls that stall upstream, prints ``held`` once the state file shows
every slot taken, and waits to be killed. ``store`` takes ``slots`` leases of scope ``all``
straight through the state store (no door), prints ``held`` and waits to be killed. ``take``
starts ``slots`` calls at once and prints one JSON line: ``ok``, ``no_slot`` (calls refused for
want of a slot) and ``seconds`` (from the first call's start to the last call's end).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio

import interlock
from interlock import ChainExhausted
from interlock.adapters.stores._state_store import SqliteStateStore
from interlock.policies._config import parse_config

_CONFIG = """
[providers.a]
kind = "simulator"
format = "openai"
probe = {{ interval_s = 3600 }}

[models.solo]
provider = "a"
id = "sim-solo-1"
class = "fast"
context_window = 100000
max_output_tokens = 100
price = {{ input = 1.0, output = 1.0 }}

[jobs.hold]
chain = ["solo"]

[limits]
max_in_flight = {slots}
lease_ttl_s = {lease_ttl_s}

[state]
path = "{state}"

[simulator.default]
ttft = {{ kind = "fixed", value = {ttft_s} }}
output_tokens = {{ kind = "fixed", value = 3 }}
"""


async def hold(door: interlock.Door, spec: dict[str, Any]) -> None:
    async with anyio.create_task_group() as tg, SqliteStateStore(spec["state"]) as state:
        for _ in range(spec["slots"]):
            tg.start_soon(_ask, door)
        with anyio.fail_after(20):
            while await state.leases.holders("all", time.time()) < spec["slots"]:
                await anyio.sleep(0.01)
        print("held", flush=True)
        await anyio.sleep_forever()


async def _ask(door: interlock.Door) -> None:
    await door.ask("hold this slot", task="hold")


async def take(door: interlock.Door, spec: dict[str, Any]) -> None:
    stats: dict[str, Any] = {"ok": 0, "no_slot": 0}

    async def one() -> None:
        try:
            await door.ask("take a slot", task="hold")
        except ChainExhausted as exc:
            stats["no_slot"] += sum("no_slot" in str(error) for _, error in exc.errors)
            return
        stats["ok"] += 1

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(spec["slots"]):
            tg.start_soon(one)
    stats["seconds"] = time.monotonic() - started
    print(json.dumps(stats), flush=True)


async def store_hold(spec: dict[str, Any]) -> None:
    async with SqliteStateStore(spec["state"]) as state:
        for i in range(spec["slots"]):
            assert await state.leases.acquire("all", spec["slots"], f"dead-{i}", time.time(), spec["lease_ttl_s"])
        print("held", flush=True)
        await anyio.sleep_forever()


async def main(spec: dict[str, Any]) -> None:
    if spec["mode"] == "store":
        await store_hold(spec)
        return
    config = parse_config(_CONFIG.format(**spec))
    async with interlock.open(config, ledger_path=spec["ledger"]) as door:
        await (hold if spec["mode"] == "hold" else take)(door, spec)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
