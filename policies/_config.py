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
from typing import Annotated, Any, Literal

import msgspec

from interlock._errors import ConfigError
from interlock._types import Sensitivity
from interlock.policies._breaker import BreakerConfig
from interlock.policies._budget import BudgetConfig
from interlock.policies._classifier import ClassifierConfig, EnsembleConfig
from interlock.policies._command_spec import CommandSpec
from interlock.policies._config_check import DEFAULT_TIER, check_config
from interlock.policies._health import CooldownConfig, ProbeConfig
from interlock.policies._hedge import HedgeBudgetConfig, HedgeDelay
from interlock.policies._pricing import Price
from interlock.policies._verify import VerifierSpec

ProviderKind = Literal["openai", "anthropic", "gemini", "openai_compatible", "command", "simulator"]
WireFormat = Literal["openai", "anthropic", "gemini"]
PosInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Names = tuple[str, ...]


class Timeouts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Transport deadlines in milliseconds: TCP/TLS connect, first response byte, gap between reads."""

    connect_ms: PosInt = 10_000
    first_byte_ms: PosInt = 120_000  # a long prompt on a busy flagship can take this long to start
    read_ms: PosInt = 60_000


class ProviderConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One provider endpoint; breakers, slots, probes and cooldowns are per provider, not per model.

    ``api_key_env`` names the environment variable holding the key, never the key itself.
    ``base_url`` defaults per kind for openai, anthropic and gemini; ``format`` is the wire
    format a ``simulator`` speaks; ``command`` is how a ``command`` provider runs its CLI.
    """

    kind: ProviderKind
    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: PosInt = 16
    slot_wait_ms: NonNegInt = 5_000
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    probe: ProbeConfig = msgspec.field(default_factory=ProbeConfig)
    cooldown: CooldownConfig = msgspec.field(default_factory=CooldownConfig)
    format: WireFormat | None = None
    command: CommandSpec | None = None
    # Continues an answer from an assistant prefill; None: the kind's default (``accepts_prefill``).
    prefill: bool | None = None


class ModelConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A concrete model at a provider: its pinned ``id``, routing ``class`` and what it costs;
    ``billing = "metered"`` needs ``price`` (USD per million tokens), ``"subscription"``
    ``token_cap_per_day``. A floating id (``-latest``, no date) needs ``allow_floating``. ``kind =
    "embedding"`` embeds texts and never chats; it needs ``dimensions`` (its vectors' length).
    """

    provider: str
    id: str
    model_class: str = msgspec.field(name="class")
    context_window: PosInt
    max_output_tokens: PosInt
    lab: str = ""
    price: Price | None = None
    billing: Literal["metered", "subscription"] = "metered"
    token_cap_per_day: PosInt | None = None
    allow_floating: bool = False
    prefill: bool | None = None  # overrides the provider's ``prefill`` for this model
    kind: Literal["chat", "embedding"] = "chat"  # routing keeps the two apart (``policies._routing``)
    dimensions: PosInt | None = None
    reasoning: bool = False  # takes a reasoning effort / thinking budget (``ChatRequest.reasoning``)

    @property
    def blended_price(self) -> float:
        """Input plus output USD per million tokens: the figure fallbacks are compared on."""
        return 0.0 if self.price is None else self.price.input + self.price.output


class DegradePolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which lesser models may answer once the chain is exhausted (``on_exhausted = "degrade"``)."""

    classes: Names


class JobConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A job (``request.task``): its chain of classes or models and its failure policy.

    ``hedge_after_ms`` is a fixed delay, or ``"p95"`` of the first candidate's recent TTFT
    clamped to ``[hedge_min_ms, hedge_max_ms]``; absent means no hedging.
    """

    chain: Names
    hedge_after_ms: NonNegInt | Literal["p95"] | None = None
    hedge_min_ms: NonNegInt = 250
    hedge_max_ms: NonNegInt = 10_000
    max_hedges: NonNegInt = 1
    mid_stream: Literal["resume", "fail"] = "resume"
    on_exhausted: Literal["fail", "degrade"] = "fail"
    max_degrade: DegradePolicy | None = None
    allow_costlier_fallback: bool = False
    # Deadlines: total from the request's entry (every attempt, resume included); first token per
    # attempt (headers included, with or without hedging); inter-token for each quiet gap after it.
    first_token_timeout_ms: PosInt | None = None
    inter_token_timeout_ms: PosInt = 30_000
    total_timeout_ms: PosInt = 600_000
    # Rails: the response cache (seconds; absent = no caching), verification, cascade.
    cache_ttl_s: PosInt | None = None
    verify: tuple[VerifierSpec, ...] = ()
    cascade: bool = False
    tool_retry: bool = True
    # Provider prompt-cache breakpoints the job marks on every request (Anthropic cache_control).
    prompt_cache: tuple[Literal["system", "tools"], ...] = ()
    # Routing beyond the table: a per-request chain by classifier, or an ensemble of models.
    classifier: ClassifierConfig | None = None
    ensemble: EnsembleConfig | None = None

    @property
    def hedge_delay(self) -> HedgeDelay | None:
        """The hedge delay policy, or None when this job does not hedge; the only place it is derived.

        Until the first candidate's TTFT window is full a p95 delay waits ``hedge_max_ms``: with
        no evidence that the first token is late, a hedge would only double the load.
        """
        if self.hedge_after_ms is None or self.max_hedges == 0:
            return None
        if self.hedge_after_ms == "p95":
            return HedgeDelay(
                mode="p95", min_ms=self.hedge_min_ms, max_ms=self.hedge_max_ms, fallback_ms=self.hedge_max_ms
            )
        return HedgeDelay(mode="fixed", fixed_ms=self.hedge_after_ms)


class RuleWhen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A rule's condition: every key given must match (an empty ``when`` always matches)."""

    sensitivity: Sensitivity | None = None
    tenant_tier: str | None = None
    task: str | None = None
    min_input_tokens: NonNegInt | None = None
    max_input_tokens: NonNegInt | None = None


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When ``when`` matches: keep only ``only_classes``, drop ``exclude_classes``, or ``use_chain``."""

    when: RuleWhen = msgspec.field(default_factory=RuleWhen)
    only_classes: Names | None = None
    exclude_classes: Names = ()
    use_chain: Names | None = None


class TenantConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tenant: tier (matched by rules), provider allow-list (None: all) and pinned model per job."""

    tier: str = DEFAULT_TIER
    allowed_providers: Names | None = None
    pinned: dict[str, str] = msgspec.field(default_factory=dict)


class PrivacyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Model classes allowed to see ``sensitivity = "pii"`` requests; None means ``("local",)``."""

    pii_classes: Names | None = None

    @property
    def effective_pii_classes(self) -> Names:
        """The classes PII may go to."""
        return ("local",) if self.pii_classes is None else self.pii_classes


class LedgerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the ledger goes and how it batches: a batch is written at ``batch_size`` or after the interval."""

    path: str = "interlock.sqlite"
    batch_size: PosInt = 256
    flush_interval_ms: PosInt = 250
    queue_size: PosInt = 10_000


class LimitsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Machine-wide caps on in-flight calls, shared by every process using the same state store.

    Slots are leases that expire ``lease_ttl_s`` after their last renewal (renewed every third
    of that while the call runs), so a process that dies cannot leak them.
    """

    max_in_flight: PosInt | None = None
    per_provider: dict[str, PosInt] = msgspec.field(default_factory=dict)
    lease_ttl_s: PosInt = 30


class StateConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where budgets, the response cache and the concurrency leases live (default: the ledger's file)."""

    path: str | None = None


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


def _decode(raw: dict[str, Any]) -> Config:
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(key, f"unknown key; expected one of {', '.join(_TOP_KEYS)}")
    fields: dict[str, Any] = {}
    for provider in _table(raw, "providers").values():
        _int_keys(provider, "command", "exit_codes")
    for section, kind in _NAMED.items():
        table = _table(raw, section)
        fields[section] = {name: _convert(value, kind, f"{section}.{name}") for name, value in table.items()}
    for section, kind in _SINGLE.items():
        fields[section] = _convert(_table(raw, section), kind, section)
    rules = raw.get("rules", [])
    if not isinstance(rules, list):
        raise ConfigError("rules", "expected an array of tables ([[rules]])")
    fields["rules"] = tuple(_convert(rule, Rule, f"rules[{i}]") for i, rule in enumerate(rules))
    fields["simulator"] = _table(raw, "simulator")
    return Config(**fields)


def _int_keys(raw: Any, *path: str) -> None:
    """TOML keys are strings: turn integer-looking keys of the table at ``path`` into ints, in place."""
    for step in path:
        raw = raw.get(step) if isinstance(raw, dict) else None
    if isinstance(raw, dict):
        for key in [k for k in raw if re.fullmatch(r"-?\d+", k)]:
            raw[int(key)] = raw.pop(key)


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(key, "expected a table")
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
