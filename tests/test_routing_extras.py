"""Routing beyond the table: classifier-picked chains and ensembles, through the door and as pure policy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import interlock
from interlock import ChatResponse, ConfigError, Message
from interlock.adapters.simulator._server import ServerError
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._classifier import (
    ClassifierConfig,
    ClassifierRule,
    ClassifierWhen,
    classify_by_rules,
    json_field,
    majority,
    parse_label,
    parse_pick,
)
from interlock.policies._config import parse_config

pytestmark = pytest.mark.anyio

CONFIG = """
[providers.a]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[providers.b]
kind = "simulator"
format = "gemini"
probe = { interval_s = 3600 }

[models.small]
provider = "a"
id = "sim-small-1"
class = "fast"
lab = "openai"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 1.0 }

[models.large]
provider = "b"
id = "sim-large-1"
class = "flagship"
lab = "google"
context_window = 100000
max_output_tokens = 1000
price = { input = 5.0, output = 5.0 }

[jobs.support]
chain = ["fast"]
allow_costlier_fallback = true
[jobs.support.classifier]
rules = [
  { when = { keywords = ["refund", "invoice"] }, label = "billing" },
  { when = { min_depth = 5 }, label = "deep" },
]
labels = { billing = ["flagship"], deep = ["flagship"], simple = ["fast"] }
default_label = "simple"

[jobs.panel]
chain = ["fast"]
ensemble = { models = ["small", "large"], combine = "first_valid" }

[jobs.vote]
chain = ["fast"]
ensemble = { models = ["small", "large"], combine = "judge", judge = "large" }
"""


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[interlock.Door]:
    """A door with a classifier job and two ensemble jobs."""
    async with interlock.open(parse_config(CONFIG), ledger_path=tmp_path / "l.sqlite") as d:
        yield d


async def requests_of(door: interlock.Door, tmp_path: Path) -> list[interlock.RequestRecord]:
    await door.flush()
    async with SqliteLedgerStore(tmp_path / "l.sqlite") as store:
        return await store.fetch_requests(None, None, None)


async def test_keyword_rule_picks_the_chain_and_is_recorded(door: interlock.Door, tmp_path: Path) -> None:
    """A keyword rule labels the request; its label's chain serves it; label, features and chain are recorded."""
    reply = await door.ask("I want a refund for this invoice", task="support")
    assert reply.route is not None
    assert reply.route.model == "large"
    plain = await door.ask("how do I log in", task="support")
    assert plain.route is not None
    assert plain.route.model == "small"
    rows = await requests_of(door, tmp_path)
    assert [r.route_label for r in rows] == ["billing", "simple"]
    detail = json.loads(rows[0].route_detail)
    assert detail["decided_by"] == "rule"
    assert detail["chain"] == ["flagship"]
    assert set(detail["features"]["keywords"]) == {"refund", "invoice"}


async def test_ensemble_records_every_member(door: interlock.Door, tmp_path: Path) -> None:
    """An ensemble asks every member; each is an attempt of the one request, and a member failure is survived."""
    # Twice: a 500 gets one retry on the same provider before the member fails.
    door._sim.script("sim-small-1", [ServerError(), ServerError()])  # type: ignore[attr-defined]
    reply = await door.ask("what is 2+2", task="panel")
    assert reply.route is not None
    assert reply.route.model == "large"
    assert {a.model for a in reply.route.attempts} == {"small", "large"}
    rows = await requests_of(door, tmp_path)
    assert len(rows) == 1
    assert rows[0].attempts == 3  # small, its retry, large


async def test_judge_ensemble_calls_the_judge(door: interlock.Door) -> None:
    """A judge ensemble asks the judge model to pick among the members' answers."""
    before = door._sim.stats("sim-large-1").received  # type: ignore[attr-defined]
    reply = await door.ask("pick me", task="vote")
    assert reply.route is not None
    assert reply.route.model in {"small", "large"}
    assert door._sim.stats("sim-large-1").received == before + 2  # type: ignore[attr-defined]


def test_rules_features_and_parsers() -> None:
    """Rules match on size, depth, keywords and metadata; labels, picks and majorities parse strictly."""
    config = ClassifierConfig(
        rules=(
            ClassifierRule(when=ClassifierWhen(min_input_tokens=100), label="long"),
            ClassifierRule(when=ClassifierWhen(metadata={"tier": "vip"}), label="vip"),
        ),
        labels={"long": ("flagship",), "vip": ("flagship",)},
    )
    short = interlock.ChatRequest(messages=(Message.text("user", "hi"),), metadata={"tier": "vip"})
    assert classify_by_rules(config, short, 5).label == "vip"
    assert classify_by_rules(config, short, 500).label == "long"
    assert classify_by_rules(config, interlock.ChatRequest(messages=short.messages), 5).decided_by == "none"
    assert parse_label("Label: Billing.", ["billing", "other"]) == "billing"
    assert parse_label("no idea", ["billing"]) is None
    assert parse_pick("PICK: 2 because", 3) == 1
    assert parse_pick("PICK: 9", 3) is None
    answers = [ChatResponse(content=json.dumps({"n": v})) for v in (4, 5, 4)]
    assert majority(answers, "n") == 0
    assert majority(answers[:2], "n") is None
    assert json_field(ChatResponse(content="not json"), "n") is None


def test_ensemble_and_classifier_config_errors_name_the_key() -> None:
    """Unknown ensemble members and classifier chains are config errors naming their key."""
    bad = CONFIG.replace('models = ["small", "large"], combine = "first_valid"', 'models = ["small", "nope"]')
    with pytest.raises(ConfigError) as info:
        parse_config(bad)
    assert info.value.key == "jobs.panel.ensemble.models"
    bad = CONFIG.replace('billing = ["flagship"]', 'billing = ["nothing"]')
    with pytest.raises(ConfigError) as info:
        parse_config(bad)
    assert info.value.key == "jobs.support.classifier.labels.billing"
