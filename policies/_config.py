"""The configuration schema: one TOML file decoded into immutable Structs, checked once at start-up.

::

    Config
    ├── providers.<name>   ProviderConfig   kind, endpoint, key variable, slots, timeouts,
    │                                        breaker, probe, cooldown, command / simulator format
    ├── models.<name>      ModelConfig      provider, pinned id, class, lab, window, price/billing
    ├── jobs.<name>        JobConfig        chain of classes/models, hedging, mid-stream, exhaustion
    ├── rules[]            Rule             when {...} -> only_classes / exclude_classes / use_chain
    ├── tenants.<name>     TenantConfig     tier, provider allow-list, pinned models per job
    ├── privacy            PrivacyConfig    which classes may see PII (default: "local")
    ├── hedge_budget       HedgeBudgetConfig  the fleet's hedge throttle
    ├── ledger             LedgerConfig     SQLite path and batching
    ├── alerts             AlertsConfig     the report's alert thresholds and demotion rule (_alerts)
    └── simulator          opaque table for the simulator adapter

Each section is converted on its own so that an error names its full key path
(``models.mini.price.input``); cross-references (model -> provider, chain -> class or model,
rule -> class, tenant -> provider) are checked after decoding, in ``_config_check``. Every
failure is a ``ConfigError(key, problem)``; no error ever quotes a value that could be a key.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Callable
from typing import Any

import msgspec

from interlock._errors import ConfigError
from interlock.policies._alerts import AlertsConfig
from interlock.policies._budget import BudgetConfig
from interlock.policies._config_check import check_config
from interlock.policies._config_sections import (
    DegradePolicy,
    JobConfig,
    LedgerConfig,
    LimitsConfig,
    ModelConfig,
    Names,
    NonNegInt,
    PosInt,
    PrivacyConfig,
    ProviderConfig,
    ProviderKind,
    Rule,
    RuleWhen,
    StateConfig,
    TenantConfig,
    Timeouts,
    WireFormat,
)
from interlock.policies._hedge import HedgeBudgetConfig

# The sections are defined in ``_config_sections`` and imported from here by everyone else.
__all__ = [
    "Config", "parse_config", "DegradePolicy", "JobConfig", "LedgerConfig", "LimitsConfig", "ModelConfig",
    "Names", "NonNegInt", "PosInt", "PrivacyConfig", "ProviderConfig", "ProviderKind", "Rule", "RuleWhen",
    "StateConfig", "TenantConfig", "Timeouts", "WireFormat",
]  # fmt: skip


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole configuration; build it with ``parse_config`` (files: ``interlock.load_config``)."""

    providers: dict[str, ProviderConfig] = msgspec.field(default_factory=dict)
    models: dict[str, ModelConfig] = msgspec.field(default_factory=dict)
    jobs: dict[str, JobConfig] = msgspec.field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    tenants: dict[str, TenantConfig] = msgspec.field(default_factory=dict)
    privacy: PrivacyConfig = msgspec.field(default_factory=PrivacyConfig)
    hedge_budget: HedgeBudgetConfig = msgspec.field(default_factory=HedgeBudgetConfig)
    ledger: LedgerConfig = msgspec.field(default_factory=LedgerConfig)
    budgets: BudgetConfig = msgspec.field(default_factory=BudgetConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    state: StateConfig = msgspec.field(default_factory=StateConfig)
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)
    # Opaque here on purpose: policies may not import the simulator adapter's types (the
    # dependency points the other way), so the actor layer converts this with msgspec.convert.
    simulator: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def classes(self) -> dict[str, Names]:
        """Each model class with its model names, in config order."""
        out: dict[str, list[str]] = {}
        for name, model in self.models.items():
            out.setdefault(model.model_class, []).append(name)
        return {cls: tuple(names) for cls, names in out.items()}


# -- loading -------------------------------------------------------------------------------------

_NAMED: dict[str, type[msgspec.Struct]] = {
    "providers": ProviderConfig, "models": ModelConfig, "jobs": JobConfig, "tenants": TenantConfig,
}  # fmt: skip
_SINGLE: dict[str, type[msgspec.Struct]] = {
    "privacy": PrivacyConfig,
    "hedge_budget": HedgeBudgetConfig,
    "ledger": LedgerConfig,
    "budgets": BudgetConfig,
    "limits": LimitsConfig,
    "state": StateConfig,
    "alerts": AlertsConfig,
}
_TOP_KEYS = (*_NAMED, "rules", *_SINGLE, "simulator")
_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?)(?: - at (?P<iskey>`key` in )?`\$(?P<path>[^`]*)`)?$", re.DOTALL)
_SUBJECT = re.compile(r"^(?P<field>[a-z_]+) (?P<rest>must\b.*)$", re.DOTALL)
_FIELD_NAMED = re.compile(r"^Object (?P<what>contains unknown|missing required) field `(?P<field>[^`]+)`$")


def parse_config(text: str, *, source: str = "<string>") -> Config:
    """Decode and check TOML ``text``; ``source`` names it in syntax errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, f"not valid TOML: {exc}") from exc
    return check_config(_decode(raw))


class DecodeProblems:
    """What a collecting decode found wrong: every error, the entries it left out, the sections it defaulted.

    ``dropped`` holds the names of the entries that failed and ``classes`` the classes a failed
    model declared, so the cross-checks that follow can tell an error of their own from the echo
    of a missing entry.
    """

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self.dropped: set[str] = set()
        self.classes: set[str] = set()
        self.broken: set[str] = set()

    def add(
        self, error: ConfigError, *, dropped: str | None = None, model_class: Any = None, broken: str | None = None
    ) -> None:
        """Keep ``error``; note the entry left out (and its model class), or the section decoded as its default."""
        self.errors.append(error)
        if dropped is not None:
            self.dropped.add(dropped)
        if isinstance(model_class, str):
            self.classes.add(model_class)
        if broken is not None:
            self.broken.add(broken)


def _raise(error: ConfigError, **noted: Any) -> None:
    raise error


def _decode(raw: dict[str, Any], problems: DecodeProblems | None = None) -> Config:
    """Decode every section; the first error raises, or with ``problems`` every one is kept there.

    A collecting decode leaves out an entry that fails, decodes a failing section as its default
    and goes on, so one pass finds every shape error of the file.
    """
    note = _raise if problems is None else problems.add
    for key in raw:
        if key not in _TOP_KEYS:
            note(ConfigError(key, f"unknown key; expected one of {', '.join(_TOP_KEYS)}"))
    fields: dict[str, Any] = {}
    providers = raw.get("providers")
    for provider in providers.values() if isinstance(providers, dict) else ():
        _int_keys(provider, "command", "exit_codes")
    for section, kind in _NAMED.items():
        entries: dict[str, Any] = {}
        for name, value in _table(raw, section, note).items():
            try:
                entries[name] = _convert(value, kind, f"{section}.{name}")
            except ConfigError as exc:
                model_class = value.get("class") if section == "models" and isinstance(value, dict) else None
                note(exc, dropped=name, model_class=model_class)
        fields[section] = entries
    for section, kind in _SINGLE.items():
        try:
            fields[section] = _convert(_table(raw, section, note), kind, section)
        except ConfigError as exc:
            note(exc, broken=section)
    rules = raw.get("rules", [])
    if not isinstance(rules, list):
        note(ConfigError("rules", "expected an array of tables ([[rules]])"), broken="rules")
        rules = []
    fields["rules"] = []
    for i, rule in enumerate(rules):
        try:
            fields["rules"].append(_convert(rule, Rule, f"rules[{i}]"))
        except ConfigError as exc:
            note(exc, broken="rules")  # the rules after it would be checked under shifted indexes
    fields["rules"] = tuple(fields["rules"])
    fields["simulator"] = _table(raw, "simulator", note)
    return Config(**fields)


def _int_keys(raw: Any, *path: str) -> None:
    """TOML keys are strings: turn integer-looking keys of the table at ``path`` into ints, in place."""
    for step in path:
        raw = raw.get(step) if isinstance(raw, dict) else None
    if isinstance(raw, dict):
        for key in [k for k in raw if re.fullmatch(r"-?\d+", k)]:
            raw[int(key)] = raw.pop(key)


def _table(raw: dict[str, Any], key: str, note: Callable[..., None] = _raise) -> dict[str, Any]:
    """The table at ``key`` (empty when absent); anything else is an error, noted as a section left empty."""
    value = raw.get(key, {})
    if not isinstance(value, dict):
        note(ConfigError(key, "expected a table"), broken=key)
        return {}
    return value


def _convert(value: Any, kind: type[msgspec.Struct], key: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(key, "expected a table")
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise _translate(exc, key, value, kind) from None


def _named_keys(value: dict[str, Any], kind: type[msgspec.Struct], path: str) -> str:
    """msgspec's error path with each ``[...]`` (a dict key it does not name) replaced by the real key.

    For each unnamed step the table is narrowed to one entry at a time until the error comes
    back: that entry is the culprit. Config tables are small, so the retries cost nothing.
    """
    trial = copy.deepcopy(value)
    node: Any = trial
    resolved = ""
    for name, index, unnamed in re.findall(r"\.(\w+)|\[(\d+)\]|(\[\.\.\.\])", path):
        if name:
            node, resolved = node.get(name) if isinstance(node, dict) else None, f"{resolved}.{name}"
        elif index:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
            resolved += f"[{index}]"
        elif unnamed:
            culprit = _failing_entry(trial, node, kind) if isinstance(node, dict) else None
            if culprit is not None:
                node, resolved = node[culprit], f"{resolved}.{culprit}"
            else:
                node, resolved = None, f"{resolved}.*"
    return resolved


def _failing_entry(trial: dict[str, Any], table: dict[str, Any], kind: type[msgspec.Struct]) -> str | None:
    """The key of ``table`` (inside ``trial``) whose entry alone still fails to convert; ``table`` keeps only it."""
    entries = dict(table)
    for key, entry in entries.items():
        table.clear()
        table[key] = entry
        try:
            msgspec.convert(trial, kind)
        except msgspec.ValidationError:
            return key
    table.clear()
    table.update(entries)
    return None


def _translate(exc: msgspec.ValidationError, prefix: str, raw: Any, kind: type[msgspec.Struct]) -> ConfigError:
    """Turn msgspec's ``... - at `$.price.input``` into ``ConfigError("<prefix>.price.input", ...)``."""
    match = _MSGSPEC_AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    message, path = match["msg"], match["path"] or ""
    if "[...]" in path:  # msgspec does not name dict keys: find the entry that fails
        path = _named_keys(raw, kind, path)
    key = prefix + path
    if match["iskey"]:
        return ConfigError(f"{key}.*", "a key: " + message[:1].lower() + message[1:])
    named = _FIELD_NAMED.match(message)
    if named:
        key = f"{key}.{named['field']}"
        return ConfigError(key, "unknown key" if named["what"] == "contains unknown" else "required key is missing")
    # A __post_init__ check reads "<field> must ...": name that field when the file set it.
    subject = _SUBJECT.match(message)
    if subject and subject["field"] in _walk(raw, path):
        return ConfigError(f"{key}.{subject['field']}", subject["rest"])
    return ConfigError(key, message[:1].lower() + message[1:])


def _walk(raw: Any, path: str) -> dict[str, Any]:
    """The raw table at a msgspec path such as ``.price`` or ``[1].when`` (empty if not found)."""
    for step in re.findall(r"\.(\w+)|\[(\d+)\]", path):
        name, index = step
        if name and isinstance(raw, dict):
            raw = raw.get(name)
        elif index and isinstance(raw, list) and int(index) < len(raw):
            raw = raw[int(index)]
        else:
            return {}
    return raw if isinstance(raw, dict) else {}
