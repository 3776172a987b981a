"""A request that failed is recorded as failed: through the gateway, a 4xx or 5xx answer is a ledger ``error`` row.

A real loopback upstream (``tests.upstreams``) refuses or cuts each call as scripted; a real door
and the real gateway sit in front of it, and the official ``openai`` SDK is the client. Whatever
the client is told — a status before the first byte, or an error event inside a stream — the
ledger must say ``error``, never ``cancelled``: nobody cancelled these requests.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

import interlock
from interlock.policies._config import parse_config
from tests.test_gateway import HELLO, KEY, Recording, wait_for
from tests.test_gateway import serving as gateway_serving
from tests.upstreams import Cut, Refuse, Step, Upstream
from tests.upstreams import serving as upstream_serving

pytestmark = pytest.mark.anyio


def _config(up: Upstream) -> str:
    return f"""
[providers.up]
kind = "openai_compatible"
base_url = "{up.base_url()}"
probe = {{ interval_s = 3600 }}

[models.only]
provider = "up"
id = "only-2025-01-01"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = {{ input = 1.0, output = 2.0 }}

[jobs.default]
chain = ["only"]
"""


class Served:
    """One upstream, a door over it and the gateway over the door."""

    def __init__(self, up: Upstream, door: interlock.Door, url: str, ledger: Path) -> None:
        self.up, self.door, self.url, self.ledger = up, door, url, ledger

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=KEY, max_retries=0)

    async def outcomes(self) -> list[tuple[str, str | None]]:
        """The requests' (outcome, error) once the one row is in: the gateway may answer before it is recorded."""
        rows: list[tuple[str, str | None]] = []

        async def recorded() -> bool:
            nonlocal rows
            await self.door.flush()
            with sqlite3.connect(self.ledger) as db:
                rows = [(str(o), e) for o, e in db.execute("SELECT outcome, error FROM requests").fetchall()]
            return bool(rows)

        await wait_for(recorded)
        return rows


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The upstream answers 40 words unless a test scripts it otherwise."""
    up = Upstream("openai", " ".join(f"w{i}" for i in range(40)))
    ledger = tmp_path / "ledger.sqlite"
    async with upstream_serving(up):
        config = parse_config(_config(up))  # the upstream's port is known once it serves
        door_open = interlock.open(config, ledger_path=ledger, environ={})
        async with door_open as door, gateway_serving(Recording(door)) as url:
            yield Served(up, door, url, ledger)


# (what the upstream does, the status the client gets, the row's error, x-should-retry); the walk
# retries a 500 once. An upstream 401 is interlock's own key refused: a 502 no client should retry.
FAILURES: dict[str, tuple[list[Step], int, str, str]] = {
    "upstream_400": ([Refuse(400, "bad request")], 400, "bad_request", "false"),
    "upstream_401": ([Refuse(401, "bad key")], 502, "auth", "false"),
    "upstream_500": ([Refuse(500, "boom"), Refuse(500, "boom")], 502, "server_error", "true"),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", sorted(FAILURES))
async def test_failed_request_is_recorded_error_never_cancelled(served: Served, case: str, stream: bool) -> None:
    """An upstream 400, 401 or 500 reaches the client as a 4xx/5xx, and the ledger row says error, not cancelled."""
    steps, status, kind, should_retry = FAILURES[case]
    served.up.script.extend(steps)
    async with served.client() as client:
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="default", messages=HELLO, stream=stream)
    assert info.value.status_code == status
    assert info.value.response.headers["x-should-retry"] == should_retry
    rows = await served.outcomes()
    assert [outcome for outcome, _ in rows] == ["error"], rows
    assert rows[0][1] == kind


async def test_stream_failing_mid_answer_is_recorded_error(served: Served) -> None:
    """A stream whose only upstream is cut mid-answer ends with an error event, and its row says error."""
    served.up.script.extend([Cut(after_words=5), Cut(after_words=5)])
    async with served.client() as client:
        stream = await client.chat.completions.create(model="default", messages=HELLO, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    rows = await served.outcomes()
    assert [outcome for outcome, _ in rows] == ["error"], rows
