"""Config cross-references: budgets, limits and verifiers name what exists, and error keys are real."""

from __future__ import annotations

import pytest

from interlock._errors import ConfigError
from interlock.actors._wiring import is_enabled
from interlock.policies._config import parse_config

BASE = """
[providers.p]
kind = "openai"
api_key_env = "P_KEY"

[providers.q]
kind = "anthropic"
api_key_env = "Q_KEY"

[models.m]
provider = "p"
id = "m-2025-01-01"
class = "fast"
lab = "openai"
context_window = 1000
max_output_tokens = 100
price = { input = 1.0, output = 2.0 }

[models.r]
provider = "q"
id = "r-2025-01-01"
class = "judge"
lab = "anthropic"
context_window = 1000
max_output_tokens = 100
price = { input = 1.0, output = 2.0 }

[models.s]
provider = "p"
id = "s-2025-01-01"
class = "same"
lab = "openai"
context_window = 1000
max_output_tokens = 100
price = { input = 1.0, output = 2.0 }
"""


def error_for(extra: str) -> ConfigError:
    """The ConfigError that BASE plus ``extra`` raises."""
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + extra)
    return info.value


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[budgets.providers.nope]\nusd_per_day = 1\n", "budgets.providers.nope"),
        ("[limits]\nper_provider = { nope = 2 }\n", "limits.per_provider.nope"),
        ('[jobs.j]\nchain = ["fast"]\nverify = [{ kind = "reviewer", model = "ghost" }]\n', "jobs.j.verify[0].model"),
        ('[jobs.j]\nchain = ["fast"]\nverify = [{ kind = "reviewer", model_class = "ghosts" }]\n',
         "jobs.j.verify[0].model_class"),
        ('[jobs.j]\nchain = ["fast"]\nverify = [{ kind = "agreement", model = "ghost" }]\n', "jobs.j.verify[0].model"),
    ],
)
def test_unknown_references_name_their_key(extra: str, key: str) -> None:
    """A budget, cap or verifier naming an unknown provider, model or class is refused at its key."""
    error = error_for(extra)
    assert error.key == key
    assert "unknown" in error.problem


def test_reviewer_from_the_authors_lab_is_refused() -> None:
    """A reviewer that must come from another lab but shares the author's lab fails at load."""
    error = error_for('[jobs.j]\nchain = ["fast"]\nverify = [{ kind = "reviewer", model = "s" }]\n')
    assert error.key == "jobs.j.verify[0].model"
    assert "another lab" in error.problem
    by_class = error_for('[jobs.j]\nchain = ["fast"]\nverify = [{ kind = "reviewer", model_class = "same" }]\n')
    assert by_class.key == "jobs.j.verify[0].model_class"


def test_reviewers_from_another_lab_or_without_the_rule_load() -> None:
    """A reviewer from another lab, or one that waives the rule, is a valid config."""
    parse_config(BASE + '[jobs.j]\nchain = ["fast"]\nverify = [{ kind = "reviewer", model = "r" }]\n')
    parse_config(
        BASE + '[jobs.j]\nchain = ["fast"]\nverify = [{ kind = "reviewer", model = "s", require_other_lab = false }]\n'
    )


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[budgets.tenants.acme]\nusd_per_day = 1\n[budgets.tenants.beta]\nusd_per_day = -1\n",
         "budgets.tenants.beta.usd_per_day"),
        ("[budgets.tenants.acme.callers.svc]\nusd_per_day = -1\n", "budgets.tenants.acme.callers.svc.usd_per_day"),
        ("[budgets.tenants.acme]\nusd = 1\n", "budgets.tenants.acme.usd"),
    ],
)
def test_budget_errors_name_the_real_tenant_and_caller(extra: str, key: str) -> None:
    """An error inside a table keyed by name (tenants, callers) names that entry, not ``*``."""
    assert error_for(extra).key == key


def test_api_key_with_a_trailing_newline_names_the_variable() -> None:
    """A key variable holding surrounding whitespace is a config error naming the variable, never the value."""
    config = parse_config(BASE)
    with pytest.raises(ConfigError) as info:
        is_enabled("p", config.providers["p"], {"P_KEY": "sk-secret-value\n"})
    assert info.value.key == "providers.p.api_key_env"
    assert "$P_KEY" in str(info.value)
    assert "sk-secret-value" not in str(info.value)
    assert is_enabled("p", config.providers["p"], {"P_KEY": "sk-secret-value"})
