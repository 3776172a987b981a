"""A door process that holds machine-wide slots in Redis until it is killed (run by tests/test_redis_outage.py).

``python tests/redis_lease_worker.py SPEC`` where SPEC is JSON: ``state`` (the Redis URL),
``ledger`` (this process's own ledger), ``slots`` (``limits.max_in_flight``) and ``lease_ttl_s``.
It starts ``slots`` calls whose first token the simulator holds back for a minute, prints
``held`` once Redis shows every slot taken, and waits to be killed: its renewer keeps the
leases alive until then, and nothing after.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio

import interlock
from interlock.adapters.stores._redis_state import RedisStateStore
from interlock.policies._config import parse_config

CONFIG = """
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
url = "{state}"

[simulator.default]
ttft = {{ kind = "fixed", value = {ttft_s} }}
output_tokens = {{ kind = "fixed", value = 3 }}
"""


async def main(spec: dict[str, Any]) -> None:
    config = parse_config(CONFIG.format(**spec, ttft_s=60.0))
    async with (
        interlock.open(config, ledger_path=spec["ledger"]) as door,
        RedisStateStore(spec["state"]) as state,
        anyio.create_task_group() as tg,
    ):

        async def hold() -> None:
            await door.ask("hold this slot 🙂", task="hold")

        for _ in range(spec["slots"]):
            tg.start_soon(hold)
        with anyio.fail_after(20):
            while await state.leases.holders("all", time.time()) < spec["slots"]:
                await anyio.sleep(0.01)
        print("held", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
