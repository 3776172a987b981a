"""Provider batches on the simulator: submit, poll, collect, cancel, partial failures, resumability.

Every test runs the real door against the loopback simulator's two batch APIs (OpenAI's Batch,
Anthropic's Message Batches); the simulator keeps its batches in a temporary directory, so a
second process finds what the first one submitted.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import anyio
import pytest
from child_process import child

import interlock
from interlock import ChatResponse, FakeClock, InterlockError
from interlock._errors import ErrorClass, ProviderError, RequestError
from interlock.actors import _batch as batch_module
from interlock.actors._batch_records import BatchHandle
from interlock.adapters.providers._batch import BatchCounts, BatchPhase, BatchStatus
from interlock.adapters.stores._state_store import SqliteStateStore
from interlock.policies._batch_poll import BatchPolling, poll_delay
from interlock.policies._budget import BudgetScope, day_bucket
from interlock.policies._config import parse_config
from interlock.policies._pricing import Price, batch_rate, cost_cents
from interlock.testing import Normal, ServerError, read_ledger

pytestmark = pytest.mark.anyio

FAST = BatchPolling(first_s=0.02, max_s=0.1, timeout_s=30)

TWO_WIRES = """
[providers.oa]
kind = "simulator"
format = "openai"

[providers.an]
kind = "simulator"
format = "anthropic"

[models.m_oa]
provider = "oa"
id = "sim-oa-1"
class = "fast"
context_window = 32_000
max_output_tokens = 1_000
price = { input = 1.0, output = 4.0 }
batch_price = { input = 0.5, output = 2.0 }

[models.m_an]
provider = "an"
id = "sim-an-1"
class = "smart"
context_window = 32_000
max_output_tokens = 1_000
price = { input = 3.0, output = 15.0 }
batch_price = { input = 1.5, output = 7.5 }

[jobs.default]
chain = ["fast"]

[jobs.on_oa]
chain = ["m_oa"]

[jobs.on_an]
chain = ["m_an"]

[jobs.nowhere]
chain = ["m_oa"]

[simulator]
seed = 3
"""


@pytest.fixture(autouse=True)
def batch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's simulated batches live in its own directory."""
    where = tmp_path / "sim-batches"
    monkeypatch.setenv("INTERLOCK_SIM_BATCH_DIR", str(where))
    monkeypatch.setenv("INTERLOCK_SIM_BATCH_DELAY_S", "0")
    return where


def _answers(results: list[ChatResponse | InterlockError]) -> list[ChatResponse]:
    assert all(isinstance(r, ChatResponse) for r in results), results
    return [r for r in results if isinstance(r, ChatResponse)]


async def test_submit_poll_collect_on_the_embedded_fleet_bills_the_batch_rate(tmp_path: Path) -> None:
    """A batch stays in progress until its delay passes on the door's clock, then comes back at the batch price."""
    clock = FakeClock()
    ledger = tmp_path / "ledger.sqlite"
    prompts = ["first question", "second question", "third question"]
    async with interlock.open(clock=clock, ledger_path=ledger) as door:
        assert door.simulator is not None
        door.simulator.batches.configure(completion_delay_s=600)
        run = door.batch(prompts, task="cheap_bulk")
        batch_id = await run.submit()
        assert batch_id.startswith("batch_sim")
        before = await run.status()
        assert (before.phase, before.counts.processing, before.total) == ("in_progress", 3, 3)
        clock.advance(601)
        after = await run.status()
        assert (after.phase, after.status, after.counts.succeeded) == ("ended", "completed", 3)
        answers = _answers(await run.collect(wait=False))
        mini = door.config.models["mini"]
    assert mini.batch_price is not None
    assert mini.price is not None
    for answer in answers:
        assert answer.route is not None
        assert answer.usage is not None
        assert answer.content
        assert answer.route.model == "mini"
        assert answer.route.cost_cents == pytest.approx(cost_cents(answer.usage, mini.batch_price))
        assert answer.route.cost_cents < cost_cents(answer.usage, mini.price)
    requests, attempts = await read_ledger(ledger)
    assert len(requests) == len(attempts) == 3
    assert {a.batch_id for a in attempts} == {batch_id}
    assert sorted(r.cost_cents for r in requests) == sorted(a.route.cost_cents for a in answers if a.route)
    assert all(r.outcome == "ok" and r.task == "cheap_bulk" for r in requests)


@pytest.mark.parametrize(
    ("job", "model_id", "prefix"), [("on_oa", "sim-oa-1", "batch_"), ("on_an", "sim-an-1", "msgbatch_")]
)
async def test_partial_failures_come_back_as_per_item_errors(
    tmp_path: Path, job: str, model_id: str, prefix: str
) -> None:
    """A fault scripted for the second item fails it alone, on either wire; every item has its two rows."""
    ledger = tmp_path / "ledger.sqlite"
    async with interlock.open(parse_config(TWO_WIRES), ledger_path=ledger) as door:
        assert door.simulator is not None
        door.simulator.script(model_id, [Normal(), ServerError()])
        run = door.batch(["one", "two", "three"], task=job, poll=FAST)
        results = await run
        assert run.handle is not None
        assert run.handle.batch_id.startswith(prefix)
        model = door.config.models[run.handle.model]
    assert isinstance(results[0], ChatResponse)
    assert isinstance(results[2], ChatResponse)
    failed = results[1]
    assert isinstance(failed, ProviderError)
    assert failed.kind is ErrorClass.SERVER_ERROR
    assert failed.status == 500
    requests, attempts = await read_ledger(ledger)
    by_id = {r.request_id: r for r in requests}
    assert len(by_id) == len(attempts) == 3
    assert sorted(a.outcome for a in attempts) == ["error", "ok", "ok"]
    assert {a.batch_id for a in attempts} == {run.handle.batch_id}
    price = batch_rate(model.price, model.batch_price)
    assert price == model.batch_price
    for attempt in attempts:
        usage = interlock.Usage(attempt.input_tokens, attempt.output_tokens)
        assert attempt.cost_cents == pytest.approx(cost_cents(usage, price))
        assert by_id[attempt.request_id].outcome == attempt.outcome


@pytest.mark.parametrize("job", ["on_oa", "on_an"])
async def test_items_past_the_window_expire(tmp_path: Path, job: str) -> None:
    """Items the batch's window could not hold come back as timeouts saying they expired."""
    async with interlock.open(parse_config(TWO_WIRES), ledger_path=tmp_path / "l.sqlite") as door:
        assert door.simulator is not None
        door.simulator.batches.configure(completion_delay_s=0, window_items=2)
        run = door.batch(["one", "two", "three"], task=job, poll=FAST)
        results = await run
        progress = await run.status()
    assert [isinstance(r, ChatResponse) for r in results] == [True, True, False]
    expired = results[2]
    assert isinstance(expired, ProviderError)
    assert expired.kind is ErrorClass.TIMEOUT
    assert "expired" in str(expired)
    assert progress.status == "expired"
    assert progress.counts.succeeded == 2


@pytest.mark.parametrize("job", ["on_oa", "on_an"])
async def test_cancel_ends_every_unanswered_item_as_cancelled(tmp_path: Path, job: str) -> None:
    """A cancelled batch reports cancelling, then ends with each item cancelled, each recorded so."""
    ledger = tmp_path / "l.sqlite"
    async with interlock.open(parse_config(TWO_WIRES), ledger_path=ledger) as door:
        assert door.simulator is not None
        door.simulator.batches.configure(completion_delay_s=3600)
        run = door.batch(["one", "two"], task=job, poll=FAST)
        await run.submit()
        cancelling = await run.cancel()
        assert cancelling.phase == "cancelling"
        results = await run.collect()
    assert all(isinstance(r, ProviderError) and r.kind is ErrorClass.CANCELLED for r in results)
    requests, attempts = await read_ledger(ledger)
    assert [r.outcome for r in requests] == ["cancelled", "cancelled"]
    assert [a.outcome for a in attempts] == ["cancelled", "cancelled"]


async def test_items_no_batch_api_can_take_are_refused_with_their_rows(tmp_path: Path) -> None:
    """A model without a batch API (Gemini's wire) refuses every item; each still gets its request row."""
    ledger = tmp_path / "l.sqlite"
    async with interlock.open(ledger_path=ledger) as door:
        run = door.batch(["a", "b"], model="flash", poll=FAST)
        assert await run.submit() == ""
        results = await run
    assert all(isinstance(r, InterlockError) and r.kind is ErrorClass.BAD_REQUEST for r in results)
    assert all("no candidate of job" in str(r) and "batch API" in str(r) for r in results)
    requests, attempts = await read_ledger(ledger)
    assert len(requests) == 2
    assert attempts == []
    assert all(r.outcome == "error" and r.error == "bad_request" for r in requests)


async def test_a_second_collect_returns_the_results_and_writes_no_row_twice(tmp_path: Path) -> None:
    """Picked up by its id in a new door, a collected batch gives the same answers and adds no rows."""
    ledger = tmp_path / "l.sqlite"
    async with interlock.open(parse_config(TWO_WIRES), ledger_path=ledger) as door:
        first = _answers(await door.batch(["x", "y"], task="on_an", poll=FAST))
        batch_id = first[0].route and first[0].route.model
        requests, _ = await read_ledger(ledger)
    assert batch_id == "m_an"
    _, attempts = await read_ledger(ledger)
    async with interlock.open(parse_config(TWO_WIRES), ledger_path=ledger) as door:
        again = _answers(await door.batch(batch_id=attempts[0].batch_id, poll=FAST))
    assert [a.content for a in again] == [a.content for a in first]
    requests2, attempts2 = await read_ledger(ledger)
    assert len(requests2) == len(requests) == 2
    assert len(attempts2) == 2


async def test_an_unknown_batch_id_is_a_request_error_naming_it(tmp_path: Path) -> None:
    """``batch_id`` the state store does not hold is refused, naming the id."""
    async with interlock.open(ledger_path=tmp_path / "l.sqlite") as door:
        with pytest.raises(RequestError, match="no batch batch_nope"):
            await door.batch(batch_id="batch_nope").status()


def test_poll_delay_backs_off_from_first_to_the_cap() -> None:
    """The delays double from ``first_s`` and stop at ``max_s``; a nonsense setting is refused."""
    polling = BatchPolling(first_s=2, factor=2, max_s=30)
    assert [poll_delay(n, polling) for n in range(6)] == [2, 4, 8, 16, 30, 30]
    assert poll_delay(10_000, polling) == 30
    with pytest.raises(ValueError, match="factor"):
        BatchPolling(factor=0.5)
    with pytest.raises(ValueError, match="first_s"):
        BatchPolling(first_s=0)


def test_batch_rate_is_the_batch_price_else_the_interactive_one() -> None:
    """No batch price configured means the interactive price, never a guessed discount."""
    price, half = Price(input=2, output=8), Price(input=1, output=4)
    assert batch_rate(price, half) is half
    assert batch_rate(price, None) is price
    assert batch_rate(None, None) is None


async def test_a_killed_submitter_s_batch_is_collected_by_the_next_process(tmp_path: Path, batch_dir: Path) -> None:
    """A submitter SIGKILLed leaves its batch in the state store; the next process collects it, one row per item."""
    ledger = str(tmp_path / "ledger.sqlite")
    async with child("batch_child.py", ledger, "hang") as first:
        batch_id = await first.line()
        first.process.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    assert (batch_dir / f"{batch_id}.json").exists()
    requests, _ = await read_ledger(ledger)
    assert requests == []  # nothing was collected before the kill
    async with child("batch_child.py", ledger, "resume") as second:
        assert await second.line() == batch_id  # picked up, not submitted again
        outcomes = json.loads(await second.line())
        assert await second.wait() == 0
    assert outcomes == ["ok"] * 5
    requests, attempts = await read_ledger(ledger)
    assert len(requests) == 5
    assert len({r.request_id for r in requests}) == 5
    assert sorted(a.request_id for a in attempts) == sorted(r.request_id for r in requests)
    assert {a.batch_id for a in attempts} == {batch_id}
    assert len(list(batch_dir.glob("batch_*.json"))) == 1  # noqa: ASYNC240 -- one batch at the provider, not two


def test_the_handle_round_trips_through_json() -> None:
    """What the state store keeps decodes to what was written."""
    import msgspec

    handle = BatchHandle(
        batch_id="b", provider="p", model="m", model_id="mid", model_class="c", task="t", tenant="x", caller="y",
        ts=1.0, total=0, items=(), price=Price(input=1, output=2),
    )  # fmt: skip
    assert msgspec.json.decode(msgspec.json.encode(handle), type=BatchHandle) == handle


class _SlowBatch:
    """A provider whose batch runs for ``polls_to_end`` looks, with one rate limit on the way (the boundary, faked)."""

    provider = "sim_openai"

    def __init__(self, clock: FakeClock, polls_to_end: int) -> None:
        self.clock, self.left = clock, polls_to_end
        self.seen: list[float] = []
        self.limited = False

    async def status(self, batch_id: str) -> BatchStatus:
        self.seen.append(self.clock.now())
        if len(self.seen) == 2 and not self.limited:
            self.limited = True
            raise ProviderError(ErrorClass.RATE_LIMIT, self.provider, status=429)
        self.left -= 1
        phase: BatchPhase = "ended" if self.left <= 0 else "in_progress"
        return BatchStatus(batch_id=batch_id, provider=self.provider, phase=phase, status=phase, counts=BatchCounts())

    async def aclose(self) -> None:
        return None


async def _drive(clock: FakeClock, done: anyio.Event, step: float, limit: int) -> None:
    """Move the fake clock in steps until ``done``; every task is idle before each step."""
    for _ in range(limit):
        await anyio.wait_all_tasks_blocked()
        if done.is_set():
            return
        clock.advance(step)
    raise AssertionError("the wait never ended")


@pytest.mark.parametrize("polls_to_end", [4, 1_000])
async def test_wait_backs_off_on_the_door_s_clock_until_the_batch_ends_or_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, polls_to_end: int
) -> None:
    """Polls come at 0, 10, 30, 70 s (doubling, a rate limit polled through); a batch that never ends times out."""
    clock = FakeClock()
    async with interlock.open(clock=clock, ledger_path=tmp_path / "l.sqlite") as door:
        polling = BatchPolling(first_s=10, factor=2, max_s=40, timeout_s=200)
        run = door.batch(["x"], task="cheap_bulk", poll=polling)
        await run.submit()
        slow = _SlowBatch(clock, polls_to_end)
        monkeypatch.setattr(batch_module, "make_client", lambda *_: slow)
        done = anyio.Event()
        outcome: list[object] = []

        async def wait() -> None:
            try:
                outcome.append(await run.wait())
            except ProviderError as exc:
                outcome.append(exc)
            done.set()

        start = clock.now()
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(_drive, clock, done, 10.0, 40)  # every poll falls on a 10 s step
    offsets = [t - start for t in slow.seen]
    if polls_to_end == 4:
        assert offsets == [0, 10, 30, 70, 110]  # the second look was rate limited: one more
        assert isinstance(outcome[0], batch_module.BatchProgress)
    else:
        assert offsets[:5] == [0, 10, 30, 70, 110]
        assert offsets[-1] == 200
        (error,) = outcome
        assert isinstance(error, ProviderError)
        assert error.kind is ErrorClass.TIMEOUT
        assert "did not end within 200 s" in str(error)


async def test_an_item_routed_where_no_batch_api_is_refused_alone(tmp_path: Path) -> None:
    """A prompt the size rule sends to Gemini (no batch API) is refused with its row; the others are batched."""
    ledger = tmp_path / "l.sqlite"
    huge = "word " * 130_000  # past the embedded rule's 150,000-token estimate: its chain is flash alone
    async with interlock.open(ledger_path=ledger) as door:
        results = await door.batch(["small one", huge, "small two"], task="cheap_bulk", poll=FAST)
    assert isinstance(results[0], ChatResponse)
    assert isinstance(results[2], ChatResponse)
    refused = results[1]
    assert isinstance(refused, InterlockError)
    assert refused.kind is ErrorClass.BAD_REQUEST
    assert "flash" in str(refused)
    requests, attempts = await read_ledger(ledger)
    assert len(requests) == 3
    assert len(attempts) == 2
    assert all(a.batch_id for a in attempts)
    assert {r.request_id for r in requests} > {a.request_id for a in attempts}


async def test_a_batch_keeps_its_budgets_and_settles_what_it_cost_at_the_batch_rate(tmp_path: Path) -> None:
    """Each item holds its worst case before sending: past the room, items are refused; the rest settle exactly."""
    # 0.5 cents a day; each item's worst case (1,000 output tokens at $2/M) holds 0.2: two fit, not three.
    config = parse_config(TWO_WIRES + '\n[budgets.tenants.acme]\nusd_per_day = 0.005\n')
    ledger = tmp_path / "ledger.sqlite"
    async with interlock.open(config, ledger_path=ledger) as door:
        results = await door.batch(["one", "two", "three", "four"], task="on_oa", tenant="acme", poll=FAST)
    answers = [r for r in results if isinstance(r, ChatResponse)]
    refused = [r for r in results if isinstance(r, InterlockError)]
    assert (len(answers), len(refused)) == (2, 2)
    assert all(r.kind is ErrorClass.BUDGET and "tenant:acme: limit 0.5 cents" in str(r) for r in refused)
    requests, attempts = await read_ledger(ledger)
    assert len(requests) == 4  # every item has its row, the refused ones too
    assert sorted(r.outcome for r in requests) == ["error", "error", "ok", "ok"]
    assert len(attempts) == 2  # nothing was sent for the refused ones
    async with SqliteStateStore(ledger) as state:
        scope, now = BudgetScope.tenant("acme").key, time.time()
        spent = await state.budgets.spent(scope, day_bucket(now))
        held = await state.budgets.reserved(scope, day_bucket(now), now)
    assert spent == pytest.approx(sum(a.route.cost_cents for a in answers if a.route))  # the batch rate, booked
    assert held == 0.0  # every reservation settled or released


async def test_a_batch_submitted_by_one_door_settles_its_reservations_when_another_collects_it(
    tmp_path: Path,
) -> None:
    """The reservations are named after the items: whoever collects the batch books them, nothing is left held."""
    config = parse_config(TWO_WIRES + '\n[budgets.tenants.acme]\nusd_per_day = 1.0\n')
    ledger = tmp_path / "ledger.sqlite"
    prompts = ["one", "two", "three"]
    async with interlock.open(config, ledger_path=ledger) as door:
        batch_id = await door.batch(prompts, task="on_oa", tenant="acme", poll=FAST).submit()
    scope, now = BudgetScope.tenant("acme").key, time.time()
    async with SqliteStateStore(ledger) as state:
        assert await state.budgets.reserved(scope, day_bucket(now), now) > 0  # held while the batch runs
    async with interlock.open(config, ledger_path=ledger) as door:
        answers = _answers(await door.batch(batch_id=batch_id, poll=FAST))
    async with SqliteStateStore(ledger) as state:
        assert await state.budgets.reserved(scope, day_bucket(now), now) == 0.0
        spent = await state.budgets.spent(scope, day_bucket(now))
    assert spent == pytest.approx(sum(a.route.cost_cents for a in answers if a.route))
