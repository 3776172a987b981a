"""A door process whose ledger is PostgreSQL, streaming requests until told to stop or killed.

Run by tests/test_pg_ledger_faults.py as ``python tests/pg_crash_worker.py SPEC`` with
``$INTERLOCK_LEDGER_URL`` naming the server (password included) and the working directory a temp
dir (the state file and the spool land there). SPEC is JSON: ``loops`` (request loops at once)
and ``stuck`` (whether to start one request that can never finish: its model stalls before the
first token). With ``stuck``, it waits until that request's begun row is on the server and
prints ``begun stuck-0``. Each loop streams requests one after another, each with its own id, and
prints ``done <id>`` once the stream has ended (its final event read). A line ``stop`` on stdin
ends the loops after their current request; the door then closes and it prints ``closed``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import psycopg

import interlock
from interlock.policies._config import parse_config

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


async def begun_on_server(request_id: str, attempts: int) -> None:
    """Wait (bounded) until the server's begun row of ``request_id`` counts ``attempts`` attempts."""
    query = "SELECT attempts FROM begun WHERE request_id = %s"
    with anyio.fail_after(20):
        while True:
            async with await psycopg.AsyncConnection.connect(os.environ["INTERLOCK_LEDGER_URL"]) as conn:
                found = await (await conn.execute(query, (request_id,))).fetchone()
            if found and found[0] >= attempts:
                return
            await anyio.sleep(0.01)


async def loop(door: interlock.Door, n: int, stopping: anyio.Event) -> None:
    i = 0
    while not stopping.is_set():
        request_id = f"q{n}-{i:05d}"
        await stream(door, request_id, "quick")
        say(f"done {request_id}")
        i += 1


async def wait_for_stop(stopping: anyio.Event) -> None:
    line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    if line.strip() == "stop":
        stopping.set()


async def main(spec: dict[str, Any]) -> None:
    config = parse_config(_CONFIG)
    stopping = anyio.Event()
    async with interlock.open(config) as door, anyio.create_task_group() as stuck:
        if spec["stuck"]:
            stuck.start_soon(stream, door, "stuck-0", "stuck")
            await begun_on_server("stuck-0", 1)
            say("begun stuck-0")
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_stop, stopping)
            for n in range(spec["loops"]):
                tg.start_soon(loop, door, n, stopping)
        stuck.cancel_scope.cancel()
    say("closed")


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
