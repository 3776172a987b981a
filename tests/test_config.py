"""The configuration schema: the example and the default parse, and every mistake names its key path."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from interlock._errors import ConfigError, ErrorClass
from interlock.adapters._config_file import default_config, load_config
from interlock.policies._config import (
    Config,
    JobConfig,
    parse_config,
)
from interlock.policies._config_check import is_floating, looks_like_key

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "interlock.toml"

BASE = """
[providers.p]
kind = "openai"
api_key_env = "P_KEY"

[models.m]
provider = "p"
id = "m-2025-01-01"
class = "fast"
context_window = 1000
max_output_tokens = 100
price = { input = 1.0, output = 2.0 }

[jobs.j]
chain = ["fast"]

[tenants.t]
tier = "gold"
"""


def model(name: str = "n", **fields: str | None) -> str:
    """A [models.<name>] table that is valid against BASE, with fields overridden (None drops one)."""
    table: dict[str, str | None] = {
        "provider": "'p'",
        "id": "'n-2025-01-01'",
        "class": "'fast'",
        "context_window": "9",
        "max_output_tokens": "1",
        "price": "{ input = 1.0, output = 1.0 }",
    }
    table.update(fields)
    return f"[models.{name}]\n" + "".join(f"{k} = {v}\n" for k, v in table.items() if v is not None)


def error_for(extra: str) -> ConfigError:
    """The ConfigError raised by BASE plus ``extra`` (top-level keys, marked with ^, go before it)."""
    text = extra[1:] + BASE if extra.startswith("^") else BASE + extra
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value


def assert_mirrors(raw: Any, decoded: Any, path: str) -> None:
    """Every key of the raw TOML table is present in the decoded value with the same content."""
    if isinstance(decoded, msgspec.Struct):
        fields = {f.encode_name: f.name for f in msgspec.structs.fields(decoded)}
        config = decoded.__struct_config__
        assert isinstance(raw, dict), path
        for key, value in raw.items():
            if key == config.tag_field and value == config.tag:
                continue  # a tagged union's discriminator (e.g. verify kinds) is the type itself
            assert key in fields, f"{path}.{key} has no field"
            assert_mirrors(value, getattr(decoded, fields[key]), f"{path}.{key}")
    elif isinstance(decoded, dict):
        assert isinstance(raw, dict), path
        assert len(raw) == len(decoded), path
        for key, value in raw.items():
            dkey = int(key) if isinstance(next(iter(decoded), None), int) else key
            assert_mirrors(value, decoded[dkey], f"{path}.{key}")
    elif isinstance(decoded, frozenset):
        assert set(raw) == decoded, path
    elif isinstance(decoded, tuple):
        assert isinstance(raw, list), path
        assert len(raw) == len(decoded), path
        for i, (r, d) in enumerate(zip(raw, decoded, strict=True)):
            assert_mirrors(r, d, f"{path}[{i}]")
    else:
        assert raw == decoded, path


def test_every_key_of_the_example_parses() -> None:
    """Each key written in examples/interlock.toml lands, with its value, in the decoded Config."""
    config = load_config(EXAMPLE)
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert_mirrors(raw, config, "$")
    assert config.providers["claude_cli"].command is not None
    assert config.providers["claude_cli"].command.exit_codes == {2: ErrorClass.AUTH}
    assert config.models["claude_sub"].billing == "subscription"


def test_example_fills_defaults_per_kind() -> None:
    """Known kinds get their default base_url and key variable; others stay unset."""
    config = load_config(EXAMPLE)
    assert config.providers["anthropic"].base_url == "https://api.anthropic.com"
    assert config.providers["gemini"].api_key_env == "GEMINI_API_KEY"
    assert config.providers["local"].api_key_env is None
    assert config.providers["local"].timeouts.first_byte_ms == 300_000
    assert config.providers["local"].timeouts.connect_ms == 10_000


def test_default_config_is_a_simulated_fleet() -> None:
    """The embedded default parses and describes simulator providers in every format, with no keys."""
    config = default_config()
    assert {p.kind for p in config.providers.values()} == {"simulator"}
    assert {p.format for p in config.providers.values()} == {"openai", "anthropic", "gemini"}
    assert all(p.api_key_env is None for p in config.providers.values())
    assert {m.id for m in config.models.values()} >= {"sim-fast-1", "sim-flagship-1", "sim-open-1", "sim-local-1"}
    assert all(m.id.startswith("sim-") for m in config.models.values())
    assert set(config.classes) == {"flagship", "fast", "open_weight", "local", "specialist"}
    assert {"cheap_bulk", "hard_reasoning", "review", "default"} <= set(config.jobs)
    assert config.tenants["acme"].tier == "premium"
    assert config.tenants["globex"].allowed_providers is not None
    assert any(r.when.sensitivity == "pii" and r.only_classes == ("local",) for r in config.rules)
    # The fleet's behaviour: a heavy first-token tail and a rate-limiting provider; the outage is the demo's own.
    assert "outages" not in config.simulator
    assert config.simulator["models"]["sim-fast-1"]["tail_p"] > 0


def test_config_structs_are_immutable() -> None:
    """Decoded policy Structs cannot be changed after start-up."""
    config = default_config()
    with pytest.raises(AttributeError):
        config.models["mini"].id = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.ledger = config.ledger  # type: ignore[misc]


def test_job_hedge_delay() -> None:
    """hedge_after_ms maps to a fixed or clamped-p95 hedge delay, and its absence to none."""
    assert JobConfig(chain=("x",)).hedge_delay is None
    assert JobConfig(chain=("x",), hedge_after_ms=0, max_hedges=0).hedge_delay is None
    fixed = JobConfig(chain=("x",), hedge_after_ms=1500).hedge_delay
    assert fixed is not None
    assert (fixed.mode, fixed.fixed_ms) == ("fixed", 1500)
    p95 = JobConfig(chain=("x",), hedge_after_ms="p95", hedge_min_ms=3000, hedge_max_ms=9000).hedge_delay
    assert p95 is not None
    # Before the TTFT window fills, the longest delay the job allows: no evidence of lateness yet.
    assert (p95.mode, p95.min_ms, p95.max_ms, p95.fallback_ms) == ("p95", 3000, 9000, 9000)


def test_base_is_valid() -> None:
    """The base snippet of the error tests is itself a valid config."""
    assert isinstance(parse_config(BASE), Config)


ERRORS = [
    ("[colour]\nx = 1\n", "colour", "unknown key"),
    ("[providers.q]\nkind = 'openai'\ncolour = 1\n", "providers.q.colour", "unknown key"),
    ("[providers.q]\nkind = 'grpc'\n", "providers.q.kind", "invalid enum value"),
    ("[providers.q]\nkind = 'openai'\nmax_concurrency = 0\n", "providers.q.max_concurrency", ">= 1"),
    ("[providers.q]\nkind = 'openai'\nmax_concurrency = 'x'\n", "providers.q.max_concurrency", "expected `int`"),
    ("[providers.q]\nkind = 'openai'\ntimeouts = { read = 1 }\n", "providers.q.timeouts.read", "unknown key"),
    ("[providers.q]\nkind = 'openai'\ntransport = 'curl'\n", "providers.q.transport", "invalid enum value"),
    (
        "[providers.q]\nkind = 'openai'\n[providers.q.breaker]\nmin_calls = 50\n",
        "providers.q.breaker.min_calls",
        "must",
    ),
    ("[providers.q]\nkind = 'openai'\n[providers.q.probe]\nevery = 3\n", "providers.q.probe.every", "unknown key"),
    (
        "[providers.q]\nkind = 'openai'\n[providers.q.cooldown]\ndefault_s = 9\nmax_s = 1\n",
        "providers.q.cooldown",
        "max_s",
    ),
    ("[providers.q]\nkind = 'simulator'\n", "providers.q.format", "simulator"),
    ("[providers.q]\nkind = 'openai'\nformat = 'openai'\n", "providers.q.format", "simulator"),
    ("[providers.q]\nkind = 'command'\n", "providers.q.command", "command"),
    (
        "[providers.q]\nkind = 'command'\ncommand = { argv = ['x'], exit_codes = { x = 'auth' } }\n",
        "providers.q.command.exit_codes.*",
        "expected `int`",
    ),
    ("[providers.q]\nkind = 'openai_compatible'\n", "providers.q.base_url", "required"),
    ("[providers.q]\nkind = 'openai'\nbase_url = 'api.example'\n", "providers.q.base_url", "http"),
    (model(max_output_tokens=None), "models.n.max_output_tokens", "required key is missing"),
    (model(provider="'nope'"), "models.n.provider", "unknown provider 'nope'"),
    (model(id="'gpt-4o-latest'"), "models.n.id", "allow_floating"),
    (model(id="'gpt-4o'"), "models.n.id", "floating"),
    (model(billing="'subscription'", price=None), "models.n.token_cap_per_day", "subscription"),
    (model(price=None), "models.n.price", "metered"),
    (model(price="{ input = -1.0, output = 1.0 }"), "models.n.price.input", ">= 0"),
    (model(price="{ input = 1.0 }"), "models.n.price.output", "required key is missing"),
    (model(max_output_tokens="10"), "models.n.max_output_tokens", "context_window"),
    (model("fast"), "models.fast", "also a model class"),
    (model("j"), "models.j", "also a job"),
    (model(billing="'free'"), "models.n.billing", "invalid enum value"),
    ("[jobs.k]\nchain = ['fast', 'slow']\n", "jobs.k.chain", "unknown model class or model 'slow'"),
    ("[jobs.k]\nchain = []\n", "jobs.k.chain", "at least one"),
    ("[jobs.k]\nchain = ['fast']\nmid_stream = 'retry'\n", "jobs.k.mid_stream", "invalid enum value"),
    ("[jobs.k]\nchain = ['fast']\nhedge_after_ms = 'p42'\n", "jobs.k.hedge_after_ms", "invalid enum value"),
    ("[jobs.k]\nchain = ['fast']\nhedge_min_ms = 9\nhedge_max_ms = 1\n", "jobs.k.hedge_min_ms", "hedge_max_ms"),
    ("[jobs.k]\nchain = ['fast']\non_exhausted = 'degrade'\n", "jobs.k.max_degrade", "degrade"),
    (
        "[jobs.k]\nchain = ['fast']\non_exhausted = 'degrade'\nmax_degrade = { classes = ['gone'] }\n",
        "jobs.k.max_degrade.classes",
        "unknown model class 'gone'",
    ),
    ("[[rules]]\nwhen = { sensitivity = 'pii' }\n", "rules[0]", "only_classes"),
    (
        "[[rules]]\nwhen = { sensitivity = 'secret' }\nonly_classes = ['fast']\n",
        "rules[0].when.sensitivity",
        "invalid enum value",
    ),
    ("[[rules]]\nonly_classes = ['fast']\n[[rules]]\nonly_classes = ['gpu']\n", "rules[1].only_classes", "'gpu'"),
    ("[[rules]]\nwhen = { task = 'nope' }\nexclude_classes = ['fast']\n", "rules[0].when.task", "unknown job"),
    (
        "[[rules]]\nwhen = { tenant_tier = 'platinum' }\nexclude_classes = ['fast']\n",
        "rules[0].when.tenant_tier",
        "platinum",
    ),
    ("[[rules]]\nwhen = { colour = 'red' }\nexclude_classes = ['fast']\n", "rules[0].when.colour", "unknown key"),
    ("[[rules]]\nuse_chain = ['m', 'nope']\n", "rules[0].use_chain", "'nope'"),
    (
        "[[rules]]\nwhen = { min_input_tokens = 9, max_input_tokens = 1 }\nuse_chain = ['m']\n",
        "rules[0].when.min_input_tokens",
        "max_input_tokens",
    ),
    ("^rules = 3\n", "rules", "array"),
    ("[tenants.u]\nallowed_providers = ['p', 'q']\n", "tenants.u.allowed_providers", "unknown provider 'q'"),
    ("[tenants.u]\npinned = { nope = 'm' }\n", "tenants.u.pinned.nope", "unknown job"),
    ("[tenants.u]\npinned = { j = 'nope' }\n", "tenants.u.pinned.j", "unknown model"),
    ("[tenants.u]\nallowed_providers = []\npinned = { j = 'm' }\n", "tenants.u.pinned.j", "allowed_providers"),
    ("[privacy]\npii_classes = ['vault']\n", "privacy.pii_classes", "unknown model class 'vault'"),
    ("[ledger]\nbatch_size = 0\n", "ledger.batch_size", ">= 1"),
    ("[hedge_budget]\nmax_tokens = 0\n", "hedge_budget.max_tokens", "must be > 0"),
    ("^simulator = 3\n", "simulator", "table"),
    ("[providers.'bad name']\nkind = 'openai'\n", "providers.bad name", "a name must"),
]


@pytest.mark.parametrize(("extra", "key", "problem"), ERRORS, ids=[e[1] for e in ERRORS])
def test_error_names_its_key_path(extra: str, key: str, problem: str) -> None:
    """Each kind of mistake raises ConfigError with the offending key's dotted path and what was expected."""
    error = error_for(extra)
    assert error.key == key
    assert problem.lower() in error.problem.lower()
    assert str(error).startswith(f"config {key}: ")


@pytest.mark.parametrize(
    "value",
    ["sk-proj-abcdefghijklmnop1234567890", "sk-ant-api03-xyz", "AIzaSyA1234567890abcdefghijklmnop", "openai key"],
)
def test_api_key_env_takes_a_name_never_a_key(value: str) -> None:
    """A key (or anything not a variable name) in api_key_env is rejected without quoting it."""
    error = error_for(f"[providers.q]\nkind = 'openai'\napi_key_env = '{value}'\n")
    assert error.key == "providers.q.api_key_env"
    assert value not in str(error)
    assert "name of an environment variable" in error.problem


def test_command_env_rejects_keys() -> None:
    """A credential in a command provider's env table is rejected without quoting it."""
    secret = "sk-ant-api03-abcdef"
    error = error_for(f"[providers.q]\nkind = 'command'\ncommand = {{ argv = ['x'], env = {{ K = '{secret}' }} }}\n")
    assert error.key == "providers.q.command.env.K"
    assert secret not in str(error)


def test_unparsable_toml_names_the_source(tmp_path: Path) -> None:
    """A TOML syntax error names the file it came from."""
    path = tmp_path / "bad.toml"
    path.write_text("[providers\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == str(path)
    assert "not valid TOML" in info.value.problem


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist fails as a ConfigError naming the path."""
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.key == str(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("model_id", "floating"),
    [
        ("gpt-4.1-mini-2025-04-14", False),
        ("claude-sonnet-4-20250514", False),
        ("claude-3-5-sonnet-v2@20241022", False),
        ("gemini-2.0-flash-001", False),
        ("gpt-4-0613", False),
        ("gemini-2.5-flash-preview-05-20", False),
        ("claude-3-opus-latest", True),
        ("chatgpt-4o-latest", True),
        ("gpt-4o", True),
        ("gemini-2.5-pro", True),
        ("llama3.1:8b", True),
        ("mistral-7b-instruct-8192", True),
        ("llama-3-70b-4096", True),
        ("gpt-3.5-turbo-1106", False),
    ],
)
def test_floating_ids(model_id: str, floating: bool) -> None:
    """Dated or revision-suffixed ids are pinned; -latest and bare names float."""
    assert is_floating(model_id) is floating


def test_looks_like_key() -> None:
    """Variable names pass; provider key shapes and long mixed tokens do not."""
    assert not looks_like_key("OPENAI_API_KEY")
    assert looks_like_key("sk-abc")
    assert looks_like_key("a1" * 20)


def test_command_env_values_never_show_in_reprs() -> None:
    """A command provider's env values (possibly credentials) stay out of the config's repr."""
    config = parse_config(
        '[providers.cli]\nkind = "command"\ncommand = { argv = ["echo"], env = { TOOL_HOME = "hidden-value-123" } }\n'
    )
    assert "hidden-value-123" not in repr(config)
    assert "TOOL_HOME" in repr(config)
