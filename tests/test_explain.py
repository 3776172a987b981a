"""``door.explain`` and ``interlock explain``: the route a request would take and why, with no model called."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest

import interlock
from interlock import Explanation, RequestError
from interlock.actors.cli._explain import main as explain_main
from interlock.adapters.simulator._server import ServerError, Simulator
from interlock.policies._config import parse_config

CONFIG = """
[providers.p_a]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }
breaker = { window_calls = 2, min_calls = 2, open_wait_s = 300 }

[providers.p_b]
kind = "simulator"
format = "anthropic"
probe = { interval_s = 3600 }

[providers.p_home]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[models.first]
provider = "p_a"
id = "sim-a-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[models.second]
provider = "p_b"
id = "sim-b-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[models.big]
provider = "p_b"
id = "sim-c-1"
class = "flagship"
context_window = 100000
max_output_tokens = 1000
price = { input = 10.0, output = 30.0 }

[models.box]
provider = "p_home"
id = "sim-l-1"
class = "local"
context_window = 2000
max_output_tokens = 500
price = { input = 0.0, output = 0.0 }

[jobs.default]
chain = ["fast", "flagship", "local"]
hedge_after_ms = 700

[[rules]]
when = { cost_sensitivity = "free" }
exclude_classes = ["flagship"]

[tenants.student]
cost_sensitivity = "free"

[tenants.thrifty]
allowed_providers = ["p_a", "p_home"]

[budgets.tenants.broke]
usd_per_day = 0.00001
"""


def _sim(door: interlock.Door) -> Simulator:
    assert door.simulator is not None
    return door.simulator


def _by_model(explanation: Explanation) -> dict[str, tuple[bool, str, str]]:
    return {c.model: (c.admitted, c.reason, c.detail) for c in explanation.candidates}


@pytest.mark.anyio
async def test_each_candidate_is_admitted_or_skipped_with_its_reason_and_no_model_is_called(tmp_path: Path) -> None:
    async with interlock.open(parse_config(CONFIG), ledger_path=tmp_path / "l.sqlite", gc_tuning=False) as door:
        found = await door.explain("a" * 9000, tenant="student")
        narrowed = await door.explain("hello", tenant="thrifty", max_tokens=100)
        plain = await door.explain("hello", max_tokens=100)
        assert _sim(door).stats().received == 0
    big = _by_model(plain)["big"]
    assert big[:2] == (False, "costlier_not_allowed")  # the job does not allow a dearer fallback
    assert "USD/M of first" in big[2]
    assert [c.model for c in found.candidates] == ["first", "second", "big", "box"]  # the chain's order
    by_model = _by_model(found)
    assert by_model["big"] == (False, "rule", "rules[0]")
    assert by_model["box"][:2] == (False, "context_window")
    assert by_model["first"][0]
    assert by_model["second"][0]
    assert found.serves == "first"
    assert found.rules == ("rules[0]",)
    assert (found.hedge, found.hedge_delay_ms, found.max_hedges) == ("fixed", 700.0, 1)
    assert _by_model(narrowed)["second"] == (False, "tenant_allow_list", "provider 'p_b'")
    assert narrowed.candidates[0].max_cost_cents > 0


@pytest.mark.anyio
async def test_an_open_breaker_is_shown_and_skips_its_provider(tmp_path: Path) -> None:
    async with interlock.open(parse_config(CONFIG), ledger_path=tmp_path / "l.sqlite", gc_tuning=False) as door:
        _sim(door).script("sim-a-1", [ServerError()] * 8)
        for _ in range(2):  # each falls back to the second model; the two failures trip p_a's breaker
            reply = await door.ask("hello")
            assert reply.route is not None
            assert reply.route.model == "second"
        assert (await door.health())["p_a"].breaker == "open"
        sent = _sim(door).stats().received
        explained = await door.explain("hello")
        assert _sim(door).stats().received == sent
    first = explained.candidates[0]
    assert (first.model, first.breaker, first.admitted, first.reason) == ("first", "open", False, "breaker_open")
    assert explained.serves == "second"


@pytest.mark.anyio
async def test_a_budget_without_room_skips_the_metered_models_and_says_what_is_left(tmp_path: Path) -> None:
    async with interlock.open(parse_config(CONFIG), ledger_path=tmp_path / "l.sqlite", gc_tuning=False) as door:
        explained = await door.explain("hello", tenant="broke", max_tokens=100)
    first = explained.candidates[0]
    assert (first.admitted, first.reason) == (False, "budget")
    assert "tenant:broke" in first.detail
    assert first.budgets[0].scope == "tenant:broke"
    assert first.budgets[0].limit == pytest.approx(0.001)
    assert not first.budgets[0].fits
    assert explained.serves == "box"  # a free local model reserves nothing, so it fits


@pytest.mark.anyio
async def test_pii_detectors_and_the_marked_sensitivity_are_shown(tmp_path: Path) -> None:
    async with interlock.open(parse_config(CONFIG), ledger_path=tmp_path / "l.sqlite", gc_tuning=False) as door:
        explained = await door.explain("write to jane.doe@example.com", max_tokens=100)
        marked = await door.explain("hello", sensitivity="pii", max_tokens=100)
        with pytest.raises(RequestError, match="unknown job"):
            await door.explain("hello", task="nope")
    assert explained.pii_detected == ("email",)
    assert explained.sensitivity == "pii"
    assert explained.serves == "box"
    assert {c.reason for c in explained.candidates if not c.admitted} == {"sensitivity"}
    assert (marked.pii_detected, marked.sensitivity, marked.serves) == ((), "pii", "box")


# -- the command ----------------------------------------------------------------------------------


class _Counting(BaseHTTPRequestHandler):
    calls: list[str] = []  # noqa: RUF012 (the one server's log, read by the test)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data": []}')

    def do_POST(self) -> None:
        _Counting.calls.append(self.path)
        self.send_response(500)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def _loopback() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "interlock.actors.cli._main", "explain", *argv],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd, env=env,
    )  # fmt: skip


def test_the_command_explains_at_80_columns_and_calls_no_model(tmp_path: Path) -> None:
    _Counting.calls.clear()
    with _loopback() as url:
        config = tmp_path / "interlock.toml"
        upstream = f'[providers.up]\nkind = "openai_compatible"\nbase_url = "{url}"\nprobe = {{ interval_s = 3600 }}\n'
        models = '\n[models.remote]\nprovider = "up"\nid = "remote-2025-01-01"\nclass = "fast"\n'
        config.write_text(
            CONFIG + upstream + models + "context_window = 100000\nmax_output_tokens = 1000\n"
            "price = { input = 1.0, output = 2.0 }\n",
            encoding="utf-8",
        )
        done = _cli("--config", str(config), "--tenant", "student", "--max-tokens", "100", "a" * 9000, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in done.stdout
    text = " ".join(done.stdout.split())
    assert "big flagship p_b (closed) skipped rule: rules[0]" in text
    assert "remote fast up (closed) fallback" in text
    assert "context_window:" in text
    assert "would be served by first" in text
    assert _Counting.calls == []  # the openai-compatible upstream never saw a completion request
    assert not (tmp_path / "interlock.sqlite").exists()  # no ledger yet: none is made


def test_the_command_gives_json_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG, encoding="utf-8")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("card 4111 1111 1111 1111", encoding="utf-8")
    assert explain_main(["--config", str(config), "--file", str(prompt), "--json", "--max-tokens", "50"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["pii_detected"] == ["payment_card"]
    assert body["serves"] == "box"
    assert [c["reason"] for c in body["candidates"]] == ["sensitivity", "sensitivity", "sensitivity", ""]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--bogus", "hi"], "unrecognized arguments: --bogus"),
        (["--sensitivity", "secret", "hi"], "argument --sensitivity: invalid choice"),
        ([], "give the prompt as an argument or with --file"),
        (["--task", "nope", "hi"], "unknown job 'nope'"),
        (["--config", "missing.toml", "hi"], "missing.toml"),
        (["--ledger", "missing.sqlite", "hi"], "no ledger at missing.sqlite"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], says: str, tmp_path: Path) -> None:
    done = _cli(*argv, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("interlock explain: ")
    assert says in done.stderr


def test_explanation_is_exported_and_documented() -> None:
    for name in ("Explanation", "ExplainedCandidate", "BudgetRoom"):
        assert getattr(interlock, name).__doc__
    assert interlock.Door.explain.__doc__


def test_the_command_is_listed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "interlock.actors.cli._main", "--help"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "explain" in done.stdout


@pytest.mark.anyio
async def test_the_command_notes_a_breaker_the_ledger_saw_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG, encoding="utf-8")
    ledger = tmp_path / "service.sqlite"
    async with interlock.open(parse_config(CONFIG), ledger_path=ledger, gc_tuning=False) as door:
        _sim(door).script("sim-a-1", [ServerError()] * 8)
        for _ in range(2):
            await door.ask("hello")
    # The command's door shares the service's state file, so it sees the breaker the service opened
    # (a peer's signal); the ledger says how the service's breaker went too.
    code = await anyio.to_thread.run_sync(
        lambda: explain_main(["--config", str(config), "--ledger", str(ledger), "--json", "hello"])
    )
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert body["candidates"][0]["breaker"] == "open"
    assert any(note.startswith("ledger: p_a's breaker last went open") for note in body["notes"])
