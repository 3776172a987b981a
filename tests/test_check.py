"""`interlock check`: every config error at once with its key path (exit 1), or a summary of a valid config (exit 0)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from interlock._errors import ConfigError
from interlock.policies._config import parse_config
from interlock.policies._config_validate import validate_config

FLEET = """
[providers.up]
kind = "simulator"
format = "openai"

[models.cheap]
provider = "up"
id = "sim-cheap-1"
class = "fast"
context_window = 8000
max_output_tokens = 1000
price = { input = 0.5, output = 1.5 }

[models.big]
provider = "up"
id = "sim-big-1"
class = "flagship"
context_window = 100000
max_output_tokens = 4000
price = { input = 3.0, output = 15.0 }

[jobs.default]
chain = ["fast", "flagship"]
on_exhausted = "degrade"
max_degrade = { classes = ["fast"] }

[[rules]]
when = { sensitivity = "pii" }
only_classes = ["fast"]

[budgets.providers.up]
usd_per_day = 5.0
"""

# Three mistakes of three kinds: a shape error (decode), a cross-reference, a bound of [alerts].
THREE_ERRORS = (
    FLEET.replace("price = { input = 0.5, output = 1.5 }", 'price = { input = "cheap", output = 1.5 }').replace(
        'chain = ["fast", "flagship"]', 'chain = ["fast", "flagshp"]'
    )
    + "\n[alerts]\ndegraded_threshold = 2.0\n"
)


def run_check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``interlock check ARGS`` in its own process at 80 columns."""
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "interlock.actors.cli._main", "check", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, env=env, check=False,
    )  # fmt: skip


def test_three_errors_print_three_lines_with_their_key_paths_and_exit_1(tmp_path: Path) -> None:
    """A config with three errors prints each on its own line, named by its key path, then the count; exit 1."""
    config = tmp_path / "fleet.toml"
    config.write_text(THREE_ERRORS)
    done = run_check(str(config), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        "config models.cheap.price.input: expected `float`, got `str`",
        "config alerts.degraded_threshold: must be between 0 and 1 (a share of a task's calls)",
        "config jobs.default.chain: unknown model class or model 'flagshp'; classes: fast, flagship",
        f"3 errors in {config}",
    ]


def test_a_good_config_prints_its_summary_at_80_columns_and_exits_0(tmp_path: Path) -> None:
    """A valid config prints providers, models per class, jobs with resolved chains, rules and budgets; exit 0."""
    config = tmp_path / "fleet.toml"
    config.write_text(FLEET)
    done = run_check(str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    summary = " ".join(out.split())
    assert f"{config}: no errors. 1 provider, 1 job, 1 rule, 2 models in 2 classes, 0 tenants" in summary
    for title in ("Providers", "Models by class", "Jobs", "Rules", "Budgets"):
        assert title in out
    assert "cheap > big; degraded: —" in out  # fast then flagship, as models; fast is already in the chain
    assert "sensitivity = pii" in out
    assert "only fast" in out
    assert "$5.00/day" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "…" not in out


def test_the_embedded_default_checks_clean(tmp_path: Path) -> None:
    """Without a path the embedded default is checked: no errors, and its jobs' chains are resolved."""
    done = run_check(cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "interlock.policies/default.toml: no errors." in done.stdout
    assert "flagship_anthropic" in done.stdout
    assert "…" not in done.stdout
    text = resources.files("interlock.policies").joinpath("default.toml").read_text(encoding="utf-8")
    assert validate_config(text).errors == ()


def test_an_unreadable_file_is_bad_input(tmp_path: Path) -> None:
    """A path that cannot be read is one line on stderr and exit 2, as for every command."""
    done = run_check(str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot read the file" in done.stderr
    assert done.stdout == ""


def test_parse_config_still_raises_the_first_error_alone() -> None:
    """Outside `check`, decoding still stops at the first error, with its one-line form."""
    with pytest.raises(ConfigError) as caught:
        parse_config(THREE_ERRORS)
    assert str(caught.value) == "config models.cheap.price.input: expected `float`, got `str`"


def test_errors_that_only_echo_a_dropped_entry_are_left_out() -> None:
    """A chain naming a model whose own table failed is not reported again as an unknown model."""
    text = FLEET.replace("price = { input = 0.5, output = 1.5 }", "price = { input = -1 }").replace(
        'chain = ["fast", "flagship"]', 'chain = ["cheap", "big"]'
    )
    errors = validate_config(text).errors
    assert [e.key for e in errors] == ["models.cheap.price.output"]


def test_a_section_that_is_not_a_table_skips_the_cross_checks_it_would_spoil() -> None:
    """``models = 3`` is one error; the chains and rules that name its classes are not also reported."""
    text = 'models = 3\n[jobs.default]\nchain = ["fast"]\n'

    errors = validate_config(text).errors
    assert [(e.key, e.problem) for e in errors] == [("models", "expected a table")]


def test_toml_syntax_is_one_error_naming_the_source() -> None:
    """Text that is not TOML has one error, naming the file, and no config."""
    result = validate_config("[models\n", source="fleet.toml")
    assert result.config is None
    assert [e.key for e in result.errors] == ["fleet.toml"]
    assert result.errors[0].problem.startswith("not valid TOML")
