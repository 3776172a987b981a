"""Two doors on one state store: a breaker that opens behind one door is open behind the other, through the tree.

Each door is its own origin among its peers (as two processes are), with its own ledger and one
shared state file; the upstream is a loopback server that fails every call and counts them.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from aiohttp import web
from loopback import serve

import interlock
from interlock import ChainExhausted
from interlock.policies._config import parse_config

pytestmark = pytest.mark.anyio

_CONFIG = """
[providers.up]
kind = "openai_compatible"
base_url = "{url}/v1"
probe = {{ interval_s = 3600, open_interval_s = 3600 }}
breaker = {{ window_calls = 4, min_calls = 4, failure_rate_pct = 50, open_wait_s = 60 }}

[models.m]
provider = "up"
id = "m-2024-01-01"
class = "fast"
context_window = 100000
max_output_tokens = 100
price = {{ input = 1.0, output = 1.0 }}

[jobs.j]
chain = ["m"]

[state]
path = "{state}"
signals_refresh_ms = 20
"""


async def test_a_breaker_opened_behind_one_door_refuses_the_provider_behind_another(tmp_path: Path) -> None:
    calls = 0

    async def failing(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)

    async with serve(failing) as url:
        config = parse_config(_CONFIG.format(url=url, state=tmp_path / "state.sqlite"))
        async with (
            interlock.open(config, ledger_path=tmp_path / "a.sqlite") as a,
            interlock.open(config, ledger_path=tmp_path / "b.sqlite") as b,
        ):
            with anyio.fail_after(15):
                while (await a.health())["up"].breaker != "open":
                    with pytest.raises(ChainExhausted):
                        await a.ask("hi", task="j")
                while (await b.health())["up"].breaker != "open":
                    await anyio.sleep(0.01)  # a poll step, bounded by the deadline above
            sent = calls
            assert [t.cause for t in (await b.health())["up"].recent_transitions] == ["peer_opened"]
            with pytest.raises(ChainExhausted, match="breaker_open"):
                await b.ask("hi", task="j")
            assert calls == sent  # refused behind B without a call upstream
