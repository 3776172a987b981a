"""Chain resolution: jobs, classes, rules, tenants, pins, context windows and costlier fallbacks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from interlock._errors import RequestError
from interlock._types import ChatRequest, Message, Sensitivity
from interlock.adapters._config_file import default_config
from interlock.policies._config import (
    Config,
    DegradePolicy,
    JobConfig,
    ModelConfig,
    ProviderConfig,
    Rule,
    RuleWhen,
    TenantConfig,
    parse_config,
)
from interlock.policies._pricing import Price
from interlock.policies._routing import Resolution, resolve

FLEET = """
[providers.a]
kind = "openai"
[providers.b]
kind = "anthropic"
[providers.g]
kind = "gemini"
[providers.loc]
kind = "openai_compatible"
base_url = "http://127.0.0.1:8080/v1"

[models.big_a]
provider = "a"
id = "big-a-2025-01-01"
class = "flagship"
context_window = 200_000
max_output_tokens = 10_000
price = { input = 2.0, output = 8.0 }
[models.big_b]
provider = "b"
id = "big-b-20250101"
class = "flagship"
context_window = 200_000
max_output_tokens = 10_000
price = { input = 3.0, output = 15.0 }
[models.small_a]
provider = "a"
id = "small-2025-01-01"
class = "fast"
context_window = 128_000
max_output_tokens = 4_000
price = { input = 0.8, output = 4.0 }
[models.small_b]
provider = "b"
id = "small-b-20250101"
class = "fast"
context_window = 200_000
max_output_tokens = 8_000
price = { input = 0.4, output = 1.6 }
[models.mirror]
provider = "b"
id = "small-2025-01-01"
class = "fast"
context_window = 128_000
max_output_tokens = 4_000
price = { input = 0.8, output = 4.0 }
[models.long]
provider = "g"
id = "long-001"
class = "long_context"
context_window = 1_000_000
max_output_tokens = 8_000
price = { input = 0.1, output = 0.4 }
[models.llama]
provider = "loc"
id = "llama:8b"
allow_floating = true
class = "local"
context_window = 32_000
max_output_tokens = 2_000
price = { input = 0.0, output = 0.0 }

[jobs.default]
chain = ["fast"]
[jobs.bulk]
chain = ["fast", "local"]
[jobs.reason]
chain = ["flagship", "fast"]
[jobs.cheap_first]
chain = ["fast", "flagship"]
[jobs.tolerant]
chain = ["fast", "flagship"]
allow_costlier_fallback = true
[jobs.dedupe]
chain = ["small_b", "fast"]
allow_costlier_fallback = true
[jobs.docs]
chain = ["fast", "long_context"]
[jobs.degrading]
chain = ["flagship"]
allow_costlier_fallback = true
on_exhausted = "degrade"
max_degrade = { classes = ["fast", "local"] }

[[rules]]
when = { sensitivity = "pii" }
only_classes = ["local"]
[[rules]]
when = { tenant_tier = "free" }
exclude_classes = ["flagship"]
[[rules]]
when = { min_input_tokens = 500_000 }
use_chain = ["long"]
[[rules]]
when = { task = "bulk", max_input_tokens = 10 }
use_chain = ["llama"]

[tenants.acme]
tier = "premium"
pinned = { tolerant = "big_b", reason = "big_b" }
[tenants.cheapo]
tier = "free"
pinned = { reason = "big_a" }
[tenants.bonly]
allowed_providers = ["b"]
"""

CONFIG = parse_config(FLEET)


def request(**fields: object) -> ChatRequest:
    """A one-message request with the given routing fields."""
    return ChatRequest(messages=(Message.text("user", "hello"),), **fields)  # type: ignore[arg-type]


def names(res: Resolution) -> list[str]:
    """The candidate model names, in order."""
    return [c.name for c in res.candidates]


def reasons(res: Resolution) -> dict[str, str]:
    """Each skipped model with its reason."""
    return {s.model: s.reason for s in res.skipped}


def test_classes_expand_in_config_order() -> None:
    """A chain of classes expands to each class's models in config order, positions counting from 0."""
    res = resolve(CONFIG, request(task="bulk"), 100)
    assert names(res) == ["small_a", "small_b", "mirror", "llama"]
    assert [c.position for c in res.candidates] == [0, 1, 2, 3]
    assert res.job == "bulk"
    assert res.candidates[1].provider == "b"


def test_a_model_appears_once_at_its_first_place() -> None:
    """A model named before its class is not repeated when the class expands."""
    assert names(resolve(CONFIG, request(task="dedupe"), 100)) == ["small_b", "small_a", "mirror"]


def test_no_task_uses_the_default_job() -> None:
    """A request with no task, model or class is served by the job named default."""
    res = resolve(CONFIG, request(), 100)
    assert res.job == "default"
    assert names(res) == ["small_a", "small_b", "mirror"]


def test_pii_goes_only_to_local_models() -> None:
    """A PII request keeps only local-class models, and says why the others were skipped."""
    res = resolve(CONFIG, request(task="bulk", sensitivity="pii"), 100)
    assert names(res) == ["llama"]
    assert reasons(res) == {"small_a": "sensitivity", "small_b": "sensitivity", "mirror": "sensitivity"}


def test_pii_is_never_relaxed_by_pins_or_chains() -> None:
    """A pinned model, a tenant pin or a use_chain rule cannot bring a non-local model back for PII."""
    assert names(resolve(CONFIG, request(model="big_a", sensitivity="pii"), 100)) == []
    assert names(resolve(CONFIG, request(task="reason", tenant="acme", sensitivity="pii"), 100)) == []
    big = resolve(CONFIG, request(task="docs", sensitivity="pii"), 600_000)  # the use_chain rule picks "long"
    assert names(big) == []
    assert reasons(big) == {"long": "sensitivity"}


def test_pii_guard_holds_without_any_rule() -> None:
    """The PII guard is built in: with no rules at all, PII still reaches only local models."""
    bare = replace(CONFIG, rules=())
    assert names(resolve(bare, request(task="bulk", sensitivity="pii"), 100)) == ["llama"]


def test_tenant_tier_rule_filters_classes() -> None:
    """A rule on the tenant's tier drops the excluded class and names the rule."""
    res = resolve(CONFIG, request(task="reason", tenant="cheapo"), 100)
    assert names(res) == ["small_a", "small_b", "mirror"]
    assert res.skipped[0].model == "big_a"  # the tenant's pin is filtered like any other candidate
    assert {s.detail for s in res.skipped} == {"rules[1]"}


def test_input_token_bounds_pick_a_chain() -> None:
    """use_chain rules apply by input-token bounds: a huge prompt goes to the long model, a tiny bulk one to llama."""
    assert names(resolve(CONFIG, request(task="cheap_first"), 600_000)) == ["long"]
    assert names(resolve(CONFIG, request(task="bulk"), 5)) == ["llama"]
    assert names(resolve(CONFIG, request(task="bulk"), 11)) == ["small_a", "small_b", "mirror", "llama"]


def test_use_chain_never_replaces_a_pin() -> None:
    """A request pin keeps its place when a use_chain rule matches; rules then only filter."""
    res = resolve(CONFIG, request(model="small_b", task="bulk"), 5)
    assert names(res) == ["small_b", "llama"]


def test_tenant_allow_list_filters_providers() -> None:
    """A tenant's allow-list drops models on other providers."""
    res = resolve(CONFIG, request(task="tolerant", tenant="bonly"), 100)
    assert names(res) == ["small_b", "mirror", "big_b"]
    assert reasons(res) == {"small_a": "tenant_allow_list", "big_a": "tenant_allow_list"}


def test_unknown_tenant_falls_back_to_default_tenant() -> None:
    """An unlisted tenant gets the policy of tenants.default when it exists, and no restriction otherwise."""
    assert names(resolve(CONFIG, request(task="bulk", tenant="nobody"), 100))[0] == "small_a"
    restricted = replace(CONFIG, tenants={**CONFIG.tenants, "default": TenantConfig(allowed_providers=("loc",))})
    assert names(resolve(restricted, request(task="bulk", tenant="nobody"), 100)) == ["llama"]


def test_pin_by_config_name_alone() -> None:
    """request.model naming a configured model serves that model and nothing else."""
    res = resolve(CONFIG, request(model="big_b"), 100)
    assert names(res) == ["big_b"]
    assert res.pinned == "big_b"
    assert res.job == "default"


def test_pin_with_task_is_followed_by_the_chain() -> None:
    """A pin with an explicit task goes first, followed by the job's chain without repeating it."""
    res = resolve(CONFIG, request(model="big_b", task="tolerant"), 100)
    assert names(res) == ["big_b", "small_a", "small_b", "mirror", "big_a"]


def test_pin_by_concrete_id_takes_every_model_serving_it() -> None:
    """request.model naming a concrete id pins every model with that id, in config order."""
    assert names(resolve(CONFIG, request(model="small-2025-01-01"), 100)) == ["small_a", "mirror"]


def test_model_naming_a_job_selects_the_job() -> None:
    """request.model naming a job resolves that job."""
    res = resolve(CONFIG, request(model="bulk"), 100)
    assert res.job == "bulk"
    assert res.pinned is None


def test_model_class_asks_a_class_directly() -> None:
    """request.model_class resolves to that class's models, under the default job's policy."""
    res = resolve(CONFIG, request(model_class="flagship"), 100)
    assert names(res) == ["big_a"]
    assert reasons(res) == {"big_b": "costlier_not_allowed"}  # the default job's policy applies
    assert res.job == "default"


def test_tenant_pin_goes_first() -> None:
    """A tenant's pinned model for the job leads the chain."""
    res = resolve(CONFIG, request(task="tolerant", tenant="acme"), 100)
    assert names(res) == ["big_b", "small_a", "small_b", "mirror", "big_a"]
    assert res.pinned == "big_b"


def test_context_window_skips_models_too_small() -> None:
    """A model whose window cannot hold the input plus the output budget is skipped."""
    res = resolve(CONFIG, request(task="docs"), 300_000)
    assert names(res) == ["long"]
    assert set(reasons(res).values()) == {"context_window"}


def test_context_window_counts_request_max_tokens() -> None:
    """The output budget is the request's max_tokens when given, else the model's max output."""
    assert "small_a" not in names(resolve(CONFIG, request(task="docs"), 125_000))
    assert "small_a" in names(resolve(CONFIG, request(task="docs", max_tokens=1_000), 125_000))
    assert "small_b" not in names(resolve(CONFIG, request(task="docs", max_tokens=100_000), 125_000))


def test_costlier_fallback_dropped_unless_allowed() -> None:
    """A fallback dearer than the first candidate is dropped, or kept and marked when the job allows it."""
    strict = resolve(CONFIG, request(task="cheap_first"), 100)
    assert names(strict) == ["small_a", "small_b", "mirror"]
    assert reasons(strict) == {"big_a": "costlier_not_allowed", "big_b": "costlier_not_allowed"}
    loose = resolve(CONFIG, request(task="tolerant"), 100)
    assert names(loose)[-2:] == ["big_a", "big_b"]
    assert [c.costlier for c in loose.candidates] == [False, False, False, True, True]


def test_costlier_compares_with_the_first_surviving_candidate() -> None:
    """When the cheap first choice is filtered out, the next survivor sets the price bar."""
    res = resolve(CONFIG, request(task="bulk", tenant="bonly"), 100)
    assert names(res) == ["small_b"]
    assert reasons(res) == {
        "small_a": "tenant_allow_list",
        "mirror": "costlier_not_allowed",
        "llama": "tenant_allow_list",
    }
    unfiltered = resolve(CONFIG, request(task="bulk"), 100)
    assert "mirror" in names(unfiltered)  # as dear as small_a, the first choice there: not costlier


def test_degrade_candidates_follow_the_chain() -> None:
    """With on_exhausted = degrade, the max_degrade classes follow the chain, marked degrade."""
    res = resolve(CONFIG, request(task="degrading"), 100)
    assert names(res) == ["big_a", "big_b", "small_a", "small_b", "mirror", "llama"]
    assert [c.degrade for c in res.candidates] == [False, False, True, True, True, True]
    assert names(resolve(CONFIG, request(task="degrading", sensitivity="pii"), 100)) == ["llama"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"task": "nope"}, "task"),
        ({"model": "nope"}, "model"),
        ({"model_class": "nope"}, "model_class"),
        ({"model": "bulk", "task": "reason"}, "model"),
    ],
)
def test_unknown_names_raise_request_errors(fields: dict[str, str], field: str) -> None:
    """An unknown job, model or class (or a model naming another job than the task) is a RequestError."""
    with pytest.raises(RequestError) as info:
        resolve(CONFIG, request(**fields), 100)
    assert info.value.field == field


def test_no_task_and_no_default_job_is_an_error() -> None:
    """Without a task, a pin or a class, a config with no default job cannot resolve."""
    jobs = {k: v for k, v in CONFIG.jobs.items() if k != "default"}
    with pytest.raises(RequestError) as info:
        resolve(replace(CONFIG, jobs=jobs), request(), 100)
    assert info.value.field == "task"


def test_default_config_resolves_every_job() -> None:
    """Every job of the embedded default resolves to at least one candidate for a short prompt."""
    config = default_config()
    for job in config.jobs:
        operation = "embed" if job == "embed" else "chat"  # the embed job's models only embed
        assert resolve(config, request(task=job), 100, operation=operation).candidates, job
    assert names(resolve(config, request(sensitivity="pii"), 100)) == ["llama_local"]


# -- property: PII never reaches a non-local model ---------------------------------------------

_CLASSES = ("flagship", "fast", "local", "edge")
_PROVIDERS = ("p1", "p2", "p3")
_MODELS = tuple(f"m{i}" for i in range(8))
_JOBS = ("default", "j1", "j2")
_ENTRIES = _CLASSES + _MODELS


@st.composite
def configs(draw: st.DrawFn) -> Config:
    """A random fleet with random chains, rules, tenants and PII classes."""
    providers = {p: ProviderConfig(kind="openai") for p in _PROVIDERS}
    models = {
        name: ModelConfig(
            provider=draw(st.sampled_from(_PROVIDERS)),
            id=draw(st.sampled_from(("x-2025-01-01", "y-2025-01-01", name))),
            model_class=draw(st.sampled_from(_CLASSES)),
            context_window=draw(st.integers(1_000, 200_000)),
            max_output_tokens=draw(st.integers(1, 1_000)),
            price=Price(input=draw(st.floats(0, 20)), output=draw(st.floats(0, 80))),
        )
        for name in _MODELS
    }
    chains = st.lists(st.sampled_from(_ENTRIES), min_size=1, max_size=5).map(tuple)
    jobs = {
        name: JobConfig(
            chain=draw(chains),
            allow_costlier_fallback=draw(st.booleans()),
            on_exhausted="degrade",
            max_degrade=DegradePolicy(classes=draw(st.lists(st.sampled_from(_CLASSES), max_size=3).map(tuple))),
        )
        for name in _JOBS
    }
    class_sets = st.lists(st.sampled_from(_CLASSES), max_size=3).map(tuple)
    rule = st.builds(
        Rule,
        when=st.builds(
            RuleWhen,
            sensitivity=st.sampled_from((None, "public", "internal", "pii")),
            tenant_tier=st.sampled_from((None, "standard", "premium")),
            task=st.sampled_from((None, *_JOBS)),
            min_input_tokens=st.sampled_from((None, 0, 1_000)),
        ),
        only_classes=st.none() | class_sets,
        exclude_classes=class_sets,
        use_chain=st.none() | chains,
    )
    tenant = st.builds(
        TenantConfig,
        tier=st.sampled_from(("standard", "premium")),
        allowed_providers=st.none() | st.lists(st.sampled_from(_PROVIDERS), max_size=3).map(tuple),
        pinned=st.dictionaries(st.sampled_from(_JOBS), st.sampled_from(_MODELS), max_size=3),
    )
    config = Config(
        providers=providers,
        models=models,
        jobs=jobs,
        rules=tuple(draw(st.lists(rule, max_size=4))),
        tenants=draw(st.dictionaries(st.sampled_from(("t1", "t2", "default")), tenant, max_size=3)),
    )
    pii = draw(st.none() | class_sets)
    return replace(config, privacy=replace(config.privacy, pii_classes=pii))


@settings(max_examples=150, deadline=None)
@given(
    config=configs(),
    model=st.sampled_from((None, *_MODELS, *_JOBS, "x-2025-01-01")),
    model_class=st.sampled_from((None, *_CLASSES)),
    task=st.sampled_from((None, *_JOBS)),
    tenant=st.sampled_from(("t1", "t2", "default", "other")),
    sensitivity=st.sampled_from(("public", "internal", "pii")),
    input_tokens=st.integers(0, 250_000),
)
def test_pii_never_resolves_to_a_non_local_model(
    config: Config,
    model: str | None,
    model_class: str | None,
    task: str | None,
    tenant: str,
    sensitivity: Sensitivity,
    input_tokens: int,
) -> None:
    """Over random chains, rules, tenants and pins, a PII request only ever resolves to PII classes."""
    req = request(model=model, model_class=model_class, task=task, tenant=tenant, sensitivity=sensitivity)
    try:
        res = resolve(config, req, input_tokens)
    except RequestError:
        return  # e.g. a class no random model has, or a model naming another job than the task
    chosen = names(res)
    assert len(chosen) == len(set(chosen))
    assert not set(chosen) & {s.model for s in res.skipped}
    assert [c.position for c in res.candidates] == list(range(len(chosen)))
    if sensitivity == "pii":
        allowed = config.privacy.effective_pii_classes
        assert all(c.model.model_class in allowed for c in res.candidates)
