"""Cross-checks of a decoded configuration: names, references between sections, and credentials.

Decoding (``_config``) proves each section has the right shape; this module proves the
sections agree with one another (a model's provider exists, a chain names known classes or
models, a rule's classes exist, a tenant's pin is on an allowed provider), that ids are
pinned versions, and that no key was pasted where a variable name belongs. Each failure is a
``ConfigError(key, problem)`` that never quotes a value that could be a credential.
"""

from __future__ import annotations

import re
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from interlock._errors import ConfigError
from interlock.policies._store_url import LEDGER_KINDS, STATE_KINDS, parse_store_url
from interlock.policies._verify import is_other_lab

if TYPE_CHECKING:  # _config imports this module: the Structs are only needed for annotations
    from interlock.policies._config import Config, JobConfig, ModelConfig, Names, ProviderConfig, Rule, TenantConfig

DEFAULT_TIER = "standard"  # TenantConfig.tier's default
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_PREFIXES = ("sk-", "sk_", "AIza", "xai-", "gsk_", "ghp_", "Bearer ")
# A pinned version carries a date (2025-04-14, 20250514, -05-20, -0613) or a -001 revision. A
# four-digit suffix is a version only when it reads as a month and day: -8192 or -4096 is a
# context size, which says nothing about which weights answer.
_MMDD = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
_PINNED_ID = re.compile(rf"\d{{4}}-\d{{2}}-\d{{2}}|\d{{8}}|-\d{{2}}-\d{{2}}$|-{_MMDD}$|-\d{{3}}$")
_DEFAULT_URL = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
_DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}


def is_floating(model_id: str) -> bool:
    """Whether a model id is an alias that can move under us (``-latest``, or no date or revision)."""
    return model_id.endswith("latest") or _PINNED_ID.search(model_id) is None


def looks_like_key(value: str) -> bool:
    """Whether a string looks like a credential rather than a variable name."""
    if value.startswith(_KEY_PREFIXES):
        return True
    return len(value) >= 32 and any(c.isdigit() for c in value) and any(c.islower() for c in value)


def check_config(config: Config, errors: list[ConfigError] | None = None, *, more_classes: Names = ()) -> Config:
    """Check names and cross-references; returns the config with per-kind defaults filled in.

    The first failure raises; with ``errors`` every failure is appended there instead and the
    checks go on (at most one error per entry checked: a model, a job, a rule, ...).
    ``more_classes`` are known classes with no model here (those of models that failed to decode).
    """
    gather = _Gather(errors)
    for section in ("providers", "models", "jobs", "tenants"):
        for name in getattr(config, section):
            with gather:
                if not _NAME.match(name):
                    raise ConfigError(f"{section}.{name}", "a name must be letters, digits, '_', '.', ':' or '-'")
    providers = dict(config.providers)
    for name, p in config.providers.items():
        with gather:
            providers[name] = _check_provider(name, p)
    classes = {**dict.fromkeys(more_classes, ()), **config.classes}
    for name, model in config.models.items():
        with gather:
            _check_model(name, model, config, classes)
    for name, job in config.jobs.items():
        with gather:
            _check_job(name, job, config, classes)
    for i, rule in enumerate(config.rules):
        with gather:
            _check_rule(f"rules[{i}]", rule, config, classes)
    for name, tenant in config.tenants.items():
        with gather:
            _check_tenant(f"tenants.{name}", tenant, config)
    for cls in config.privacy.pii_classes or ():
        with gather:
            _known_class("privacy.pii_classes", cls, classes)
    with gather:
        _check_budgets_and_limits(config)
    with gather:
        _check_store_urls(config)
    with gather:
        _check_pii_detection(config)
    return msgspec.structs.replace(config, providers=providers)


class _Gather:
    """A ``with`` block whose ``ConfigError`` is appended to ``errors`` (ending the block) instead of raised.

    With ``errors`` None it changes nothing: the error propagates as it would without it.
    """

    def __init__(self, errors: list[ConfigError] | None) -> None:
        self.errors = errors

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if self.errors is None or not isinstance(exc, ConfigError):
            return False
        self.errors.append(exc)
        return True


def _check_provider(name: str, p: ProviderConfig) -> ProviderConfig:
    key = f"providers.{name}"
    if p.api_key_env is not None:
        _check_env_name(f"{key}.api_key_env", p.api_key_env)
    if (p.kind == "simulator") != (p.format is not None):
        raise ConfigError(f"{key}.format", 'required for kind = "simulator" and only there')
    if (p.kind == "command") != (p.command is not None):
        raise ConfigError(f"{key}.command", 'required for kind = "command" and only there')
    if p.kind == "command" and (p.base_url is not None or p.api_key_env is not None):
        raise ConfigError(f"{key}.base_url", "a command provider has no base_url or api_key_env (its CLI owns both)")
    if p.kind == "openai_compatible" and p.base_url is None:
        raise ConfigError(f"{key}.base_url", 'required for kind = "openai_compatible"')
    if p.base_url is not None and not p.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{key}.base_url", "expected an http:// or https:// URL")
    for var, value in (p.command.env if p.command else {}).items():
        if looks_like_key(value):
            raise ConfigError(f"{key}.command.env.{var}", "looks like a credential; pass keys through the environment")
    return msgspec.structs.replace(
        p,
        base_url=p.base_url or _DEFAULT_URL.get(p.kind),
        api_key_env=p.api_key_env or _DEFAULT_KEY_ENV.get(p.kind),
    )


def _check_env_name(key: str, value: str) -> None:
    # Never quote the value: if it is a key, the error message must not carry it into a log.
    if looks_like_key(value) or not _ENV_NAME.match(value):
        raise ConfigError(
            key, "expected the name of an environment variable (e.g. OPENAI_API_KEY), never the key itself"
        )


def _check_model(name: str, m: ModelConfig, config: Config, classes: dict[str, Names]) -> None:
    key = f"models.{name}"
    provider = config.providers.get(m.provider)
    if provider is None:
        raise ConfigError(
            f"{key}.provider", f"unknown provider {m.provider!r}; expected one of {_list(config.providers)}"
        )
    # Simulator ids name fixed behaviours of our own simulator: there is no version to drift.
    if provider.kind != "simulator" and is_floating(m.id) and not m.allow_floating:
        raise ConfigError(
            f"{key}.id", f"{m.id!r} is a floating alias; pin a dated version or set allow_floating = true"
        )
    if m.billing == "subscription" and m.token_cap_per_day is None:
        raise ConfigError(f"{key}.token_cap_per_day", 'required when billing = "subscription"')
    if m.billing == "metered" and m.price is None:
        raise ConfigError(f"{key}.price", 'required when billing = "metered" (USD per million tokens)')
    if m.max_output_tokens > m.context_window:
        raise ConfigError(f"{key}.max_output_tokens", f"must not exceed context_window ({m.context_window})")
    _check_kind(key, m, provider)
    if name in classes:
        raise ConfigError(key, f"the name {name!r} is also a model class; chain entries would be ambiguous")
    if name in config.jobs:
        raise ConfigError(key, f"the name {name!r} is also a job; request.model would be ambiguous")


def _check_kind(key: str, m: ModelConfig, provider: ProviderConfig) -> None:
    """An embedding model needs its vector size and a wire with an embeddings API (OpenAI's, Gemini's)."""
    if m.kind == "chat":
        if m.dimensions is not None:
            raise ConfigError(f"{key}.dimensions", 'only for kind = "embedding"')
        return
    if m.dimensions is None:
        raise ConfigError(f"{key}.dimensions", 'required when kind = "embedding" (the length of its vectors)')
    wire = provider.format if provider.kind == "simulator" else provider.kind
    if wire not in ("openai", "openai_compatible", "gemini"):
        raise ConfigError(f"{key}.kind", f"provider {m.provider!r} ({wire}) has no embeddings API")


def _check_job(name: str, job: JobConfig, config: Config, classes: dict[str, Names]) -> None:
    key = f"jobs.{name}"
    if not job.chain:
        raise ConfigError(f"{key}.chain", "expected at least one model class or model name")
    for entry in job.chain:
        _known_entry(f"{key}.chain", entry, config, classes)
    if job.hedge_min_ms > job.hedge_max_ms:
        raise ConfigError(f"{key}.hedge_min_ms", f"must not exceed hedge_max_ms ({job.hedge_max_ms})")
    if (job.on_exhausted == "degrade") != (job.max_degrade is not None):
        raise ConfigError(f"{key}.max_degrade", 'required with on_exhausted = "degrade" and only there')
    for cls in job.max_degrade.classes if job.max_degrade else ():
        _known_class(f"{key}.max_degrade.classes", cls, classes)
    _check_routing_extras(key, job, config, classes)
    for i, spec in enumerate(job.verify):
        _check_verifier(f"{key}.verify[{i}]", spec, job, config, classes)


def _check_verifier(key: str, spec: Any, job: JobConfig, config: Config, classes: dict[str, Names]) -> None:
    """A reviewer or a second opinion must name a known model or class, and a reviewer another lab."""
    model: str | None = getattr(spec, "model", None)
    model_class: str | None = getattr(spec, "model_class", None)
    if model is not None and model not in config.models:
        raise ConfigError(f"{key}.model", f"unknown model {model!r}; expected one of {_list(config.models)}")
    if model_class is not None:
        _known_class(f"{key}.model_class", model_class, classes)
    if not getattr(spec, "require_other_lab", False):
        return
    authors = _chain_models(job.chain, config, classes)
    reviewers = [model] if model is not None else list(classes.get(model_class or "", ()))
    for author in authors:
        lab = config.models[author].lab.strip().lower()
        if not any(is_other_lab(lab, config.models[r].lab) for r in reviewers):
            field = "model" if model is not None else "model_class"
            raise ConfigError(
                f"{key}.{field}",
                f"no reviewer from another lab than the author {author!r} (lab {lab or 'unknown'!r}); "
                "name a reviewer from another lab or set require_other_lab = false",
            )


def _chain_models(chain: Names, config: Config, classes: dict[str, Names]) -> list[str]:
    """Every model a chain may use: its model names, and each class's models, in order."""
    out: list[str] = []
    for entry in chain:
        for model in classes.get(entry, (entry,)) if entry not in config.models else (entry,):
            if model in config.models and model not in out:
                out.append(model)
    return out


def _check_budgets_and_limits(config: Config) -> None:
    """Budgets and concurrency caps must name providers the config declares (a typo caps nothing)."""
    for name in config.budgets.providers:
        if name not in config.providers:
            raise ConfigError(
                f"budgets.providers.{name}", f"unknown provider {name!r}; expected one of {_list(config.providers)}"
            )
    for name in config.limits.per_provider:
        if name not in config.providers:
            raise ConfigError(
                f"limits.per_provider.{name}", f"unknown provider {name!r}; expected one of {_list(config.providers)}"
            )


def _check_routing_extras(key: str, job: JobConfig, config: Config, classes: dict[str, Names]) -> None:
    """Classifier label chains, ensemble members and judges, and reviewers must all name known models."""
    if job.classifier is not None:
        for label, chain in job.classifier.labels.items():
            for entry in chain:
                _known_entry(f"{key}.classifier.labels.{label}", entry, config, classes)
        if job.classifier.model is not None and job.classifier.model not in config.models:
            raise ConfigError(f"{key}.classifier.model", f"unknown model {job.classifier.model!r}")
        if not job.classifier.labels:
            raise ConfigError(f"{key}.classifier.labels", "expected at least one label with its chain")
    if job.ensemble is not None:
        if len(job.ensemble.models) < 2:
            raise ConfigError(f"{key}.ensemble.models", "an ensemble needs at least two models")
        for model in job.ensemble.models:
            if model not in config.models:
                raise ConfigError(f"{key}.ensemble.models", f"unknown model {model!r}")
        if job.ensemble.combine == "judge" and job.ensemble.judge not in config.models:
            raise ConfigError(f"{key}.ensemble.judge", "combine = \"judge\" needs a known judge model")


def _check_rule(key: str, rule: Rule, config: Config, classes: dict[str, Names]) -> None:
    if rule.only_classes is None and not rule.exclude_classes and rule.use_chain is None:
        raise ConfigError(key, "expected only_classes, exclude_classes or use_chain")
    for field in ("only_classes", "exclude_classes"):
        for cls in getattr(rule, field) or ():
            _known_class(f"{key}.{field}", cls, classes)
    if rule.use_chain is not None and not rule.use_chain:
        raise ConfigError(f"{key}.use_chain", "expected at least one model class or model name")
    for entry in rule.use_chain or ():
        _known_entry(f"{key}.use_chain", entry, config, classes)
    when = rule.when
    if when.task is not None and when.task not in config.jobs:
        raise ConfigError(f"{key}.when.task", f"unknown job {when.task!r}; expected one of {_list(config.jobs)}")
    tiers = {t.tier for t in config.tenants.values()} | {DEFAULT_TIER}  # unknown tenants may get the default
    if when.tenant_tier is not None and when.tenant_tier not in tiers:
        raise ConfigError(f"{key}.when.tenant_tier", f"no tenant has tier {when.tenant_tier!r}; tiers: {_list(tiers)}")
    costs = {t.cost_sensitivity for t in config.tenants.values()} | {"balanced"}  # unknown tenants: the default
    if when.cost_sensitivity is not None and when.cost_sensitivity not in costs:
        raise ConfigError(
            f"{key}.when.cost_sensitivity",
            f"no tenant has cost_sensitivity {when.cost_sensitivity!r}; tenants have: {_list(costs)}",
        )
    low, high = when.min_input_tokens, when.max_input_tokens
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{key}.when.min_input_tokens", f"must not exceed max_input_tokens ({high})")


def _check_tenant(key: str, tenant: TenantConfig, config: Config) -> None:
    for provider in tenant.allowed_providers or ():
        if provider not in config.providers:
            raise ConfigError(
                f"{key}.allowed_providers", f"unknown provider {provider!r}; expected one of {_list(config.providers)}"
            )
    for job, model in tenant.pinned.items():
        if job not in config.jobs:
            raise ConfigError(f"{key}.pinned.{job}", f"unknown job {job!r}; expected one of {_list(config.jobs)}")
        if model not in config.models:
            raise ConfigError(f"{key}.pinned.{job}", f"unknown model {model!r}; expected one of {_list(config.models)}")
        allowed = tenant.allowed_providers
        if allowed is not None and config.models[model].provider not in allowed:
            raise ConfigError(f"{key}.pinned.{job}", f"model {model!r} is on a provider outside allowed_providers")


def _known_entry(key: str, entry: str, config: Config, classes: dict[str, Names]) -> None:
    if entry not in classes and entry not in config.models:
        raise ConfigError(key, f"unknown model class or model {entry!r}; classes: {_list(classes)}")


def _known_class(key: str, cls: str, classes: dict[str, Names]) -> None:
    if cls not in classes:
        raise ConfigError(key, f"unknown model class {cls!r}; expected one of {_list(classes)}")


def _list(names: Any) -> str:
    return ", ".join(sorted(names)) or "(none)"


def _check_store_urls(config: Config) -> None:
    """A store URL's scheme fits its section, and a config file's URL holds no password."""
    if config.state.url is not None:
        parse_store_url(config.state.url, key="state.url", allowed=STATE_KINDS)
    if config.ledger.url is not None:
        parse_store_url(config.ledger.url, key="ledger.url", allowed=LEDGER_KINDS)


def _check_pii_detection(config: Config) -> None:
    """A detector list names at least one detector (``false`` turns the scan off); phone regions are known."""
    from interlock.policies._pii_checks import known_region

    settings: list[tuple[str, object]] = [(f"tenants.{n}", t.pii_detection) for n, t in config.tenants.items()]
    settings += [(f"jobs.{n}", j.pii_detection) for n, j in config.jobs.items()]
    for key, setting in settings:
        if setting == ():
            raise ConfigError(f"{key}.pii_detection", "an empty list scans for nothing; write false to turn it off")
    for name, tenant in config.tenants.items():
        for region in tenant.pii_phone_regions:
            if not known_region(region):
                raise ConfigError(
                    f"tenants.{name}.pii_phone_regions", f"unknown region {region!r}; expected codes like 'US' or 'GB'"
                )
