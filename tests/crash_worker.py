"""A door process streaming requests until it is killed (run by tests/test_crash_durability.py).

``python tests/crash_worker.py SPEC`` where SPEC is JSON: ``ledger`` (the ledger file) and
``loops`` (request loops running at once). It opens a door on the ledger with the simulator
fleet below and starts two requests that can never finish, each stuck in an upstream call whose
model stalls before the first token: ``stuck-0`` on its first attempt, ``stuck-1`` on its third
(its first model fails with a 500, is retried once on its provider and fails again, and the chain
falls back to the stalling model). It waits until both begun rows on disk count those attempts and
prints ``begun <id>`` for each, then runs ``loops`` loops that stream requests one after another,
each with its own id, and print ``done <id>`` as soon as a stream has ended (its final event
read). Every line is flushed: what the test reads is what the process had seen when it was killed.
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

# Each stuck request: its job, and the attempts its begun row counts once it waits on the stalling model.
STUCK = {"stuck-0": ("stuck", 1), "stuck-1": ("fallback", 3)}

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

[models.broken_model]
provider = "sim"
id = "sim-broken-1"
class = "fast"
context_window = 100000
max_output_tokens = 100
price = { input = 1.0, output = 1.0 }

[jobs.quick]
chain = ["quick_model"]

[jobs.fallback]
chain = ["broken_model", "stuck_model"]
first_token_timeout_ms = 600000

[jobs.stuck]
chain = ["stuck_model"]
first_token_timeout_ms = 600000

[simulator.default]
ttft = { kind = "fixed", value = 0.002 }
per_token = { kind = "fixed", value = 0.001 }
output_tokens = { kind = "fixed", value = 5 }

[simulator.models.sim-stuck-1]
faults = [{ p = 1.0, fault = { kind = "stall_first_token", seconds = 600 } }]

[simulator.models.sim-broken-1]
faults = [{ p = 1.0, fault = { kind = "server_error" } }]
"""


def say(line: str) -> None:
    print(line, flush=True)


async def stream(door: interlock.Door, request_id: str, task: str) -> None:
    async for _ in door.stream(f"request {request_id}", task=task, request_id=request_id, tenant="acme"):
        pass


async def begun_on_disk(path: str, request_id: str, attempts: int) -> None:
    """Wait (bounded) until the begun row of ``request_id`` counts ``attempts`` attempts in the committed file."""
    with anyio.fail_after(20):
        while True:
            conn = sqlite3.connect(path)
            try:
                found = conn.execute("SELECT attempts FROM begun WHERE request_id = ?", (request_id,)).fetchone()
            finally:
                conn.close()
            if found and found[0] >= attempts:
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
        for request_id, (task, _) in STUCK.items():
            tg.start_soon(stream, door, request_id, task)
        for request_id, (_, attempts) in STUCK.items():
            await begun_on_disk(spec["ledger"], request_id, attempts)
            say(f"begun {request_id}")
        for n in range(spec["loops"]):
            tg.start_soon(loop, door, n)
        await anyio.sleep(60)  # the test kills this process long before
        say(f"not killed after {time.monotonic():.0f} s")


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
