"""The configuration's sections: one immutable Struct per TOML table, below the whole ``Config``.

Split from ``_config`` (which holds ``Config`` itself and the loading) so that each stays small;
``_config`` re-exports every name here, and callers import them from there.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from interlock._types import Sensitivity
from interlock.policies._breaker import BreakerConfig
from interlock.policies._classifier import ClassifierConfig, EnsembleConfig
from interlock.policies._command_spec import CommandSpec
from interlock.policies._config_check import DEFAULT_TIER
from interlock.policies._health import CooldownConfig, ProbeConfig
from interlock.policies._hedge import HedgeDelay
from interlock.policies._pii import DEFAULT_PHONE_REGIONS, PiiDetection
from interlock.policies._pricing import Price
from interlock.policies._verify import VerifierSpec

ProviderKind = Literal["openai", "anthropic", "gemini", "openai_compatible", "command", "simulator"]
WireFormat = Literal["openai", "anthropic", "gemini"]
PosInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Names = tuple[str, ...]
CostSensitivity = Literal["free", "balanced", "premium"]  # a tenant's, matched by rules (``policies._routing``)


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
    # What the provider's batch API charges (its discount); None: batch calls cost ``price``.
    batch_price: Price | None = None
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
    # The personal-data scan of unmarked requests (``policies._pii``); None keeps the tenant's setting.
    pii_detection: PiiDetection | None = None

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
    cost_sensitivity: CostSensitivity | None = None  # the tenant's ``cost_sensitivity``


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
    # How much the tenant minds the bill (matched by rules' ``when.cost_sensitivity``).
    cost_sensitivity: CostSensitivity = "balanced"
    # The personal-data scan of its unmarked requests (``policies._pii``): on, off, or these detectors;
    # the national phone formats that count (a number with its +country code always does).
    pii_detection: PiiDetection = True
    pii_phone_regions: Names = DEFAULT_PHONE_REGIONS


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
    url: str | None = None  # postgresql://... or sqlite:///path; $INTERLOCK_LEDGER_URL wins (``_store_url``)
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
    url: str | None = None  # redis://... or sqlite:///path; $INTERLOCK_STATE_URL wins (``_store_url``)
    # Redis only: every key lives under "<key_prefix>:", so several deployments can share a server.
    key_prefix: Annotated[str, msgspec.Meta(pattern=r"^\S+$")] = "interlock"
    cache_max_entries: PosInt = 100_000  # Redis only: the response cache's bound (soonest expiries go first)
    timeout_ms: PosInt = 500  # Redis only: each call's connect and reply deadline
    # When the state store cannot be reached: "closed" refuses the call (a retryable 503),
    # "open" serves it without the rail. Budgets follow on_state_outage; leases follow
    # on_lease_outage, or on_state_outage when it is unset; the cache always degrades to a miss.
    on_state_outage: Literal["closed", "open"] = "closed"
    on_lease_outage: Literal["closed", "open"] | None = None
    # How often each process reads its peers' breaker and cooldown signals from a SQLite state file
    # (Redis pushes them; there it bounds the wait of one read). A peer's open breaker holds here within this.
    signals_refresh_ms: PosInt = 250
