"""Rules on a tenant's cost sensitivity (free / balanced / premium), beside tier, task and input size."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import interlock
from interlock import ConfigError
from interlock._types import ChatRequest, Message
from interlock.policies._config import parse_config
from interlock.policies._routing import Resolution, resolve

FLEET = """
[providers.cloud]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[providers.home]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[models.big]
provider = "cloud"
id = "sim-flagship-1"
class = "flagship"
context_window = 100000
max_output_tokens = 1000
price = { input = 3.0, output = 15.0 }

[models.small]
provider = "cloud"
id = "sim-fast-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 0.4, output = 1.6 }

[models.box]
provider = "home"
id = "sim-local-1"
class = "local"
context_window = 100000
max_output_tokens = 1000
price = { input = 0.0, output = 0.0 }

[jobs.default]
chain = ["flagship", "fast", "local"]
allow_costlier_fallback = true

[jobs.report]
chain = ["flagship", "fast"]
allow_costlier_fallback = true

[[rules]]   # a free tenant never pays for a flagship
when = { cost_sensitivity = "free" }
exclude_classes = ["flagship"]

[[rules]]   # a premium tenant's reports go to the flagship alone
when = { cost_sensitivity = "premium", task = "report" }
use_chain = ["flagship"]

[[rules]]   # a free tenant's long prompts go to the box
when = { cost_sensitivity = "free", min_input_tokens = 5000 }
use_chain = ["local"]

[tenants.student]
cost_sensitivity = "free"

[tenants.bank]
cost_sensitivity = "premium"
tier = "gold"

[tenants.shop]
"""

CONFIG = parse_config(FLEET)


def request(**fields: object) -> ChatRequest:
    """A one-message request with the given routing fields."""
    return ChatRequest(messages=(Message.text("user", "hello"),), **fields)  # type: ignore[arg-type]


def names(res: Resolution) -> list[str]:
    """The candidate model names, in order."""
    return [c.name for c in res.candidates]


def test_the_default_cost_sensitivity_is_balanced() -> None:
    assert CONFIG.tenants["shop"].cost_sensitivity == "balanced"
    assert names(resolve(CONFIG, request(tenant="shop"), 10)) == ["big", "small", "box"]


def test_a_free_tenant_is_kept_off_the_flagship_and_the_rule_is_named() -> None:
    res = resolve(CONFIG, request(tenant="student"), 10)
    assert names(res) == ["small", "box"]
    assert [(s.model, s.reason, s.detail) for s in res.skipped] == [("big", "rule", "rules[0]")]


def test_cost_combines_with_task_and_with_input_size() -> None:
    assert names(resolve(CONFIG, request(tenant="bank", task="report"), 10)) == ["big"]
    assert names(resolve(CONFIG, request(tenant="shop", task="report"), 10)) == ["big", "small"]
    assert names(resolve(CONFIG, request(tenant="student"), 6000)) == ["box"]
    assert names(resolve(CONFIG, request(tenant="shop"), 6000)) == ["big", "small", "box"]


def test_an_unknown_tenant_gets_the_default_tenant_s_cost_sensitivity() -> None:
    with_default = parse_config(FLEET + '\n[tenants.default]\ncost_sensitivity = "free"\n')
    assert names(resolve(with_default, request(tenant="nobody"), 10)) == ["small", "box"]
    assert names(resolve(CONFIG, request(tenant="nobody"), 10)) == ["big", "small", "box"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["free", "balanced", "premium"]), st.sampled_from(["default", "report"]))
def test_a_cost_rule_matches_exactly_the_tenants_with_that_sensitivity(cost: str, task: str) -> None:
    config = parse_config(FLEET + f'\n[tenants.t]\ncost_sensitivity = "{cost}"\n')
    res = resolve(config, request(tenant="t", task=task), 10)
    assert ("big" in names(res)) == (cost != "free")
    assert (names(res) == ["big"]) == (cost == "premium" and task == "report")


def test_a_rule_on_a_sensitivity_no_tenant_has_is_a_config_error() -> None:
    text = FLEET.replace('[tenants.bank]\ncost_sensitivity = "premium"', "[tenants.bank]")
    with pytest.raises(ConfigError, match=r"rules\[1\]\.when\.cost_sensitivity: no tenant has cost_sensitivity"):
        parse_config(text)


def test_an_unknown_sensitivity_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"tenants\.shop\.cost_sensitivity"):
        parse_config(FLEET.replace("[tenants.shop]", '[tenants.shop]\ncost_sensitivity = "cheap"'))
    with pytest.raises(ConfigError, match=r"rules\[0\]\.when\.cost_sensitivity"):
        parse_config(FLEET.replace('when = { cost_sensitivity = "free" }', 'when = { cost_sensitivity = "gratis" }'))


@pytest.mark.anyio
async def test_a_free_tenant_is_served_by_the_cheap_model_through_a_door(tmp_path: Path) -> None:
    async with interlock.open(CONFIG, ledger_path=tmp_path / "l.sqlite", gc_tuning=False) as door:
        free = await door.ask("hello", tenant="student")
        premium = await door.ask("hello", tenant="bank")
    assert free.route is not None
    assert free.route.model == "small"
    assert [s.model for s in free.route.skipped] == ["big"]
    assert premium.route is not None
    assert premium.route.model == "big"
