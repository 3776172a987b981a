"""One OS process spending a tenant budget held in Redis through its own door (tests/test_redis_budget_race.py).

``python tests/redis_budget_worker.py SPEC`` where SPEC is JSON: ``upstream`` (the loopback
provider's base URL), ``state`` (the Redis URL every worker shares), ``ledger`` (the SQLite
ledger of this worker's "host", shared with its one neighbour there), ``usd_per_day`` (the
tenant's budget), ``prompt``, ``max_tokens``, ``tasks`` and ``asks``. It prints ``ready`` once its
door is open, waits for ``go`` on stdin so every worker starts at once, sends requests until the
budget refuses one per task, and prints one JSON line: ``ok``, ``refused`` (``BudgetExceeded``),
``errors`` (any other failure, as text) and ``cents`` (what the routes it got back cost).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio

import interlock
from interlock import BudgetExceeded, InterlockError
from interlock.policies._config import parse_config

_CONFIG = """
[providers.up]
kind = "openai_compatible"
base_url = "{upstream}"
probe = {{ interval_s = 3600 }}

[models.metered]
provider = "up"
id = "metered-2024-01-01"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = {{ input = 8.0, output = 8.0 }}

[jobs.hammer]
chain = ["metered"]

[budgets.tenants."株式会社🙂"]
usd_per_day = {usd_per_day}

[state]
url = "{state}"
"""


async def main(spec: dict[str, Any]) -> None:
    config = parse_config(_CONFIG.format(**spec))
    stats: dict[str, Any] = {"ok": 0, "refused": 0, "errors": [], "cents": 0.0}
    async with interlock.open(config, ledger_path=spec["ledger"]) as door:
        print("ready", flush=True)
        if sys.stdin.readline() != "go\n":
            raise SystemExit("expected go on stdin")

        async def task() -> None:
            for _ in range(spec["asks"]):
                try:
                    reply = await door.ask(
                        spec["prompt"], task="hammer", tenant="株式会社🙂", max_tokens=spec["max_tokens"]
                    )
                except BudgetExceeded:
                    stats["refused"] += 1
                    return
                except InterlockError as exc:
                    stats["errors"].append(str(exc))
                    return
                stats["ok"] += 1
                stats["cents"] += reply.route.cost_cents if reply.route is not None else 0.0

        async with anyio.create_task_group() as tg:
            for _ in range(spec["tasks"]):
                tg.start_soon(task)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
