"""A door process streaming requests until it is killed (run by tests/test_crash_durability.py).

``python tests/crash_worker.py SPEC`` where SPEC is JSON: ``ledger`` (the ledger file) and
``loops`` (request loops running at once). It opens a door on the ledger with the simulator
fleet below, starts one request that can never finish (its model stalls before the first token),
waits until that request's begun row is on disk and prints ``begun <id>``, then runs ``loops``
loops that stream requests one after another, each with its own id, and print ``done <id>`` as
soon as a stream has ended (its final event read). Every line is flushed: what the test reads is
what the process had seen when it was killed.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from typing import Any

import anyio

import interlock
from interlock.policies._config import parse_config

STUCK_ID = "stuck-0"

_CONFIG = """
[providers.sim]
kind = "simulator"
format = "openai"
max_concurrency = 64
probe = { interval_s = 3600 }

[models.quick_model]
provider = "sim"
id = "sim-quick-1"
class = "fast"
context_window = 100000
max_output_tokens = 100
price = { input = 1.0, output = 1.0 }

[models.stuck_model]
provider = "sim"
id = "sim-stuck-1"
class = "fast"
context_window = 100000
max_output_tokens = 100
price = { input = 1.0, output = 1.0 }

[jobs.quick]
chain = ["quick_model"]

[jobs.stuck]
chain = ["stuck_model"]
first_token_timeout_ms = 600000

[simulator.default]
ttft = { kind = "fixed", value = 0.002 }
per_token = { kind = "fixed", value = 0.001 }
output_tokens = { kind = "fixed", value = 5 }

[simulator.models.sim-stuck-1]
faults = [{ p = 1.0, fault = { kind = "stall_first_token", seconds = 600 } }]
"""


def say(line: str) -> None:
    print(line, flush=True)


async def stream(door: interlock.Door, request_id: str, task: str) -> None:
    async for _ in door.stream(f"request {request_id}", task=task, request_id=request_id, tenant="acme"):
        pass


async def begun_on_disk(path: str, request_id: str) -> None:
    """Wait (bounded) until the begun row of ``request_id`` is committed in the file."""
    with anyio.fail_after(20):
        while True:
            conn = sqlite3.connect(path)
            try:
                found = conn.execute("SELECT 1 FROM begun WHERE request_id = ?", (request_id,)).fetchone()
            finally:
                conn.close()
            if found:
                return
            await anyio.sleep(0.005)


async def loop(door: interlock.Door, n: int) -> None:
    i = 0
    while True:
        request_id = f"q{n}-{i:05d}"
        await stream(door, request_id, "quick")
        say(f"done {request_id}")
        i += 1


async def main(spec: dict[str, Any]) -> None:
    config = parse_config(_CONFIG)
    async with interlock.open(config, ledger_path=spec["ledger"]) as door, anyio.create_task_group() as tg:
        tg.start_soon(stream, door, STUCK_ID, "stuck")
        await begun_on_disk(spec["ledger"], STUCK_ID)
        say(f"begun {STUCK_ID}")
        for n in range(spec["loops"]):
            tg.start_soon(loop, door, n)
        await anyio.sleep(60)  # the test kills this process long before
        say(f"not killed after {time.monotonic():.0f} s")


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
