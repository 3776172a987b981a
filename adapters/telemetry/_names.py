"""Names the OTel mirror emits, each with its source, and ``OtelNaming`` (configured -> telemetry names).

Target: the OpenTelemetry GenAI semantic conventions as last published inside
open-telemetry/semantic-conventions (docs/gen-ai, v1.41.0: gen-ai-spans.md, gen-ai-metrics.md).
The ``opentelemetry-semantic-conventions`` package (0.66b2, ``semconv._incubating``) carries
the same names, now marked "moved to open-telemetry/semantic-conventions-genai". They are in
Development status; that new repository's unreleased main renames a few of them (noted as
``next:`` below; see its docs/gen-ai/non-normative/migration.md). Per the conventions'
transition plan an instrumentation keeps the names it emits until it opts in to newer ones, so
moving is one edit here plus a CHANGELOG line.

Names are defined here rather than imported from ``semconv._incubating``: that module is
experimental and flagged deprecated, and a dashboard must not change because a dependency did.
Everything under ``interlock.`` is ours: facts the conventions have no name for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

if TYPE_CHECKING:
    from interlock.policies._config import Config

# -- GenAI attributes (docs/gen-ai/gen-ai-spans.md, registry/attributes/gen-ai.md) ---------------

OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"  # replaced gen_ai.system (semconv 1.37)
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"  # seconds, streaming only
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
# next: gen_ai.usage.cache_write.input_tokens (semantic-conventions-genai PR #440)
USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"

OPERATION_CHAT: Final = "chat"
OPERATION_EMBEDDINGS: Final = "embeddings"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"

# Well-known gen_ai.provider.name values for the provider kinds interlock speaks to; other
# kinds (simulator, openai_compatible, command) report their configured provider name, a custom
# value the conventions allow, rather than claim a vendor they only imitate.
PROVIDER_BY_KIND: Final[dict[str, str]] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",  # generativelanguage.googleapis.com (AI Studio API)
}

# -- general attributes (stable: registry/attributes/error.md, http.md) -------------------------

ERROR_TYPE: Final = "error.type"
ERROR_TYPE_OTHER: Final = "_OTHER"  # the stable fallback value when no class is known
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
SERVICE_NAME: Final = "service.name"

# -- interlock attributes ----------------------------------------------------------------------

REQUEST_ID: Final = "interlock.request_id"
TASK: Final = "interlock.task"
TENANT: Final = "interlock.tenant"
CALLER: Final = "interlock.caller"
MODEL: Final = "interlock.model"  # the configured model name; gen_ai.request.model is its pinned id
MODEL_CLASS: Final = "interlock.model_class"
PROVIDER: Final = "interlock.provider"  # the configured provider name
OUTCOME: Final = "interlock.outcome"  # ok | error | cancelled | skipped
ATTEMPT: Final = "interlock.attempt"  # 1-based attempt number within the request
ATTEMPTS: Final = "interlock.attempts"
DEGRADED: Final = "interlock.degraded"
DEGRADED_REASON: Final = "interlock.degraded_reason"
HEDGED: Final = "interlock.hedged"  # request: some attempt was a hedge
HEDGE: Final = "interlock.hedge"  # attempt: this attempt was started as a hedge
CANCEL_REASON: Final = "interlock.cancel_reason"  # hedge_lost | client_gone | stalled | cancelled
CACHE_HIT: Final = "interlock.cache_hit"
VERDICT: Final = "interlock.verdict"
COST_CENTS: Final = "interlock.cost_cents"
TTFT_MS: Final = "interlock.ttft_ms"
TTLT_MS: Final = "interlock.ttlt_ms"
# Request totals over every attempt: kept out of gen_ai.usage.* so that a backend summing usage
# over GenAI spans does not count each attempt's tokens twice (once more on the parent).
TOTAL_INPUT_TOKENS: Final = "interlock.usage.input_tokens"
TOTAL_OUTPUT_TOKENS: Final = "interlock.usage.output_tokens"
TOTAL_CACHE_READ_TOKENS: Final = "interlock.usage.cache_read.input_tokens"
TOTAL_CACHE_WRITE_TOKENS: Final = "interlock.usage.cache_creation.input_tokens"
BREAKER_FROM: Final = "interlock.breaker.from_state"
BREAKER_TO: Final = "interlock.breaker.to_state"

# -- GenAI client metrics (docs/gen-ai/gen-ai-metrics.md) ---------------------------------------
# gen_ai.server.time_to_first_token / time_per_output_token are for model servers; a client
# reports the client variants instead.

# next: gen_ai.client.inference.duration (semantic-conventions-genai PR #521)
CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
# next: split into gen_ai.client.inference.usage.* counters (semantic-conventions-genai PR #374)
CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
# next: gen_ai.client.inference.time_to_first_chunk (PR #521)
CLIENT_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"

# Bucket boundaries the conventions advise (ExplicitBucketBoundaries in gen-ai-metrics.md).
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS: Final = tuple(float(4**i) for i in range(14))  # 1, 4, 16, ... 67108864

# -- interlock metrics -------------------------------------------------------------------------

# The client per-chunk metric (gen_ai.client.operation.time_per_output_chunk) wants one point per
# chunk; the ledger keeps only TTFT and TTLT, so this is the per-attempt mean after the first token.
TIME_PER_OUTPUT_TOKEN: Final = "interlock.time_per_output_token"
TPOT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
REQUESTS: Final = "interlock.requests"
FALLBACKS: Final = "interlock.fallbacks"
HEDGES: Final = "interlock.hedges"
CACHE_HITS: Final = "interlock.cache_hits"
BREAKER_TRANSITIONS: Final = "interlock.breaker.transitions"
COST: Final = "interlock.cost"


class OtelNaming(msgspec.Struct, frozen=True, kw_only=True):
    """How configured names appear in telemetry: provider -> ``gen_ai.provider.name``, model -> pinned id.

    Names missing from the maps pass through unchanged.
    """

    providers: dict[str, str] = msgspec.field(default_factory=dict)
    models: dict[str, str] = msgspec.field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> OtelNaming:
        """Well-known provider names for the vendor kinds, and each model's pinned id."""
        providers = {name: PROVIDER_BY_KIND.get(p.kind, name) for name, p in config.providers.items()}
        return cls(providers=providers, models={name: m.id for name, m in config.models.items()})
