"""The gateway under load: 500 concurrent streaming clients through uvicorn to the simulated fleet."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
import uvicorn

import interlock
from interlock.adapters.gateway._app import build_app
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._config import parse_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CLIENTS = 500
# Zero simulated latency: the test measures the gateway, the door and the ledger, not sleeps.
CONFIG = """
[providers.p_openai]
kind = "simulator"
format = "openai"
max_concurrency = 512
probe = { interval_s = 3600 }

[providers.p_anthropic]
kind = "simulator"
format = "anthropic"
max_concurrency = 512
probe = { interval_s = 3600 }

[models.oa]
provider = "p_openai"
id = "sim-oa-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[models.an]
provider = "p_anthropic"
id = "sim-an-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[jobs.via_openai]
chain = ["oa"]

[jobs.via_anthropic]
chain = ["an"]

[simulator.default]
output_tokens = { kind = "fixed", value = 16 }
"""


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """The gateway app on 127.0.0.1:<ephemeral>; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", ws="none", log_config=None,
                            log_level="warning", backlog=CLIENTS * 2, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


class Clients:
    """500 streaming clients that each open a stream, wait until all are open, then read to the end."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client
        self.errors: list[BaseException] = []
        self.answers: dict[int, tuple[str, str]] = {}
        self.opened = 0
        self.all_open = anyio.Event()

    async def one(self, i: int) -> None:
        job = "via_openai" if i % 2 else "via_anthropic"
        try:
            stream = await self.client.chat.completions.create(
                model=job, messages=[{"role": "user", "content": f"request {i}"}], stream=True
            )
            self.opened += 1
            if self.opened == CLIENTS:
                self.all_open.set()
            await self.all_open.wait()  # every stream is open at once before any is read
            text, request_id = [], ""
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text.append(chunk.choices[0].delta.content)
                if chunk.model_extra and "interlock" in chunk.model_extra:
                    request_id = chunk.model_extra["interlock"]["request_id"]
            self.answers[i] = ("".join(text), request_id)
        except Exception as exc:  # every failure is collected and asserted on below
            self.errors.append(exc)
            self.all_open.set()


async def test_500_concurrent_streams_without_errors(tmp_path: Path) -> None:
    """500 concurrent streaming clients all get a whole answer, and the ledger holds exactly one row each."""
    ledger = tmp_path / "load.sqlite"
    async with interlock.open(parse_config(CONFIG), ledger_path=ledger) as door:
        app = build_app(door, virtual_keys=None)
        async with serving(app) as url, openai.AsyncOpenAI(
            base_url=url + "/v1", api_key="load", max_retries=0, timeout=30
        ) as client:
            clients = Clients(client)
            with anyio.fail_after(45):
                async with anyio.create_task_group() as tg:
                    for i in range(CLIENTS):
                        tg.start_soon(clients.one, i)
        await door.flush()
        async with SqliteLedgerStore(ledger) as store:
            rows = await store.fetch_requests()
    assert clients.errors == []
    assert len(clients.answers) == CLIENTS
    assert all(len(text.split()) == 16 and request_id for text, request_id in clients.answers.values())
    assert len(rows) == CLIENTS
    assert {r.request_id for r in rows} == {request_id for _, request_id in clients.answers.values()}
    assert {r.outcome for r in rows} == {"ok"}
