"""Canonical LLM types: the ABI that the door, router, providers and ledger all speak.

Every type is a frozen ``msgspec.Struct``; unions are tagged so a value round-trips through
JSON or MessagePack unchanged. Provider wire formats are mapped to and from these types in
the adapters, never above them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

import msgspec

Role = Literal["system", "user", "assistant", "tool"]
Sensitivity = Literal["public", "internal", "pii"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "cancelled"]


# -- message content -------------------------------------------------------------------------


class TextPart(msgspec.Struct, frozen=True, tag="text"):
    """Plain text."""

    text: str


class ImagePart(msgspec.Struct, frozen=True, tag="image"):
    """An image, by URL or as base64 data with its media type."""

    url: str | None = None
    data: str | None = None
    media_type: str = "image/png"


class ToolCallPart(msgspec.Struct, frozen=True, tag="tool_call"):
    """A tool call the assistant made; ``arguments`` is the JSON text of the arguments.

    ``signature`` is the provider's opaque reasoning signature for the call (Gemini's
    ``thoughtSignature``), which must be sent back unchanged on later turns.
    """

    id: str
    name: str
    arguments: str
    signature: str = ""


class ToolResultPart(msgspec.Struct, frozen=True, tag="tool_result"):
    """The result of a tool call, sent back to the model."""

    tool_call_id: str
    content: str
    is_error: bool = False


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart


class Message(msgspec.Struct, frozen=True):
    """One turn of a conversation; ``cache_breakpoint`` marks the end of a cacheable prefix."""

    role: Role
    content: tuple[Part, ...]
    cache_breakpoint: bool = False

    @classmethod
    def text(cls, role: Role, text: str, *, cache_breakpoint: bool = False) -> Message:
        """A message with a single text part."""
        return cls(role=role, content=(TextPart(text),), cache_breakpoint=cache_breakpoint)

    @property
    def plain_text(self) -> str:
        """The concatenated text parts of this message."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


# -- tools and formats -----------------------------------------------------------------------


class ToolSpec(msgspec.Struct, frozen=True):
    """A tool the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolChoiceMode(msgspec.Struct, frozen=True, tag="mode"):
    """``auto`` (model decides), ``none`` (no tools) or ``required`` (some tool)."""

    mode: Literal["auto", "none", "required"] = "auto"


class ToolChoiceNamed(msgspec.Struct, frozen=True, tag="named"):
    """Force a call to the named tool."""

    name: str


ToolChoice = ToolChoiceMode | ToolChoiceNamed


class TextFormat(msgspec.Struct, frozen=True, tag="text"):
    """Free text output."""


class JsonObjectFormat(msgspec.Struct, frozen=True, tag="json_object"):
    """Any JSON object."""


class JsonSchemaFormat(msgspec.Struct, frozen=True, tag="json_schema"):
    """JSON output that must match ``schema``."""

    name: str
    schema: dict[str, Any]
    strict: bool = True


ResponseFormat = TextFormat | JsonObjectFormat | JsonSchemaFormat


ReasoningEffort = Literal["minimal", "low", "medium", "high"]


class Reasoning(msgspec.Struct, frozen=True, kw_only=True):
    """How hard the model should think before answering: an ``effort``, or a ``budget_tokens``.

    Either may be given; each provider gets the one it takes (OpenAI ``reasoning_effort``,
    Anthropic ``thinking.budget_tokens``, Gemini ``thinkingConfig.thinkingBudget``), the other
    derived (``policies._reasoning``). Only models marked ``reasoning = true`` take it.
    """

    effort: ReasoningEffort | None = None
    budget_tokens: int | None = None


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a caller asks for; routing fields (task, model, tenant...) ride along with the prompt.

    ``cache_system`` and ``cache_tools`` mark provider prompt-cache breakpoints after the system
    prompt and after the tool list; a message's own ``cache_breakpoint`` marks a prefix.
    ``reasoning`` asks for the model's extended thinking (routed only to models that take it).
    """

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    max_tokens: int | None = None
    task: str | None = None
    model: str | None = None
    model_class: str | None = None
    tenant: str = "default"
    caller: str = "default"
    sensitivity: Sensitivity = "internal"
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    cache_system: bool = False
    cache_tools: bool = False
    request_id: str = ""
    reasoning: Reasoning | None = None


class RequestOptions(TypedDict, total=False):
    """The keyword options of ``door.ask`` / ``door.stream``: every ``ChatRequest`` field but the messages.

    ``tools`` also takes plain JSON-shaped dicts, converted to ``ToolSpec`` at the door.
    """

    tools: Sequence[ToolSpec | Mapping[str, Any]]
    tool_choice: ToolChoice | None
    parallel_tool_calls: bool | None
    response_format: ResponseFormat | None
    temperature: float | None
    top_p: float | None
    stop: tuple[str, ...]
    seed: int | None
    max_tokens: int | None
    task: str | None
    model: str | None
    model_class: str | None
    tenant: str
    caller: str
    sensitivity: Sensitivity
    metadata: dict[str, str]
    cache_system: bool
    cache_tools: bool
    request_id: str
    reasoning: Reasoning | None


# -- stream events ---------------------------------------------------------------------------


class Usage(msgspec.Struct, frozen=True):
    """Token counts kept apart so cost never double counts: ``input_tokens`` excludes cached input."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        """Every prompt token, cached or not."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


class TextDelta(msgspec.Struct, frozen=True, tag="text_delta"):
    """A piece of the answer's text."""

    text: str


class ThinkingDelta(msgspec.Struct, frozen=True, tag="thinking_delta"):
    """A piece of the model's reasoning, or the signature that closes a thinking block."""

    text: str = ""
    signature: str = ""


class RefusalDelta(msgspec.Struct, frozen=True, tag="refusal_delta"):
    """A piece of the model's refusal to answer (OpenAI's ``delta.refusal``): never part of the text."""

    text: str


class ToolCallDelta(msgspec.Struct, frozen=True, tag="tool_call_delta"):
    """A fragment of a tool call; ``index`` keys fragments of parallel calls."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ToolCallDone(msgspec.Struct, frozen=True, tag="tool_call_done"):
    """A complete tool call, its arguments assembled from every fragment (and its signature, if any)."""

    index: int
    id: str
    name: str
    arguments: str
    signature: str = ""


class UsageEvent(msgspec.Struct, frozen=True, tag="usage"):
    """Token usage, as reported by the provider (or estimated where it reports none)."""

    usage: Usage


class Finish(msgspec.Struct, frozen=True, tag="finish"):
    """The end of the answer, with why it ended.

    ``skipped_events`` counts the malformed stream events the provider's decoder skipped on the
    way (each one a glitch in an otherwise healthy stream); it defaults to 0, so a ``Finish``
    encoded before the field existed still decodes. ``provider_reason`` is the provider's own
    finish reason as it sent it (``end_turn``, ``SAFETY``, ``refusal``...), ``""`` if it sent none;
    ``served_model`` is the model id the provider says answered (its response's ``model``), ``""``
    if it did not say.
    """

    reason: FinishReason
    skipped_events: int = 0
    provider_reason: str = ""
    served_model: str = ""


StreamEvent = TextDelta | ThinkingDelta | RefusalDelta | ToolCallDelta | ToolCallDone | UsageEvent | Finish


# -- responses -------------------------------------------------------------------------------


class ToolCall(msgspec.Struct, frozen=True):
    """A complete tool call in a final response; send it back as a ``ToolCallPart`` with its signature."""

    id: str
    name: str
    arguments: str
    signature: str = ""

    def as_part(self) -> ToolCallPart:
        """The part that replays this call in the next turn's assistant message."""
        return ToolCallPart(self.id, self.name, self.arguments, self.signature)


class AttemptSummary(msgspec.Struct, frozen=True):
    """One attempt of a request, as the caller sees it in ``Route.attempts``."""

    model: str
    provider: str
    outcome: Literal["ok", "error", "cancelled", "skipped"]
    error: str | None = None
    hedge: bool = False
    ttft_ms: float | None = None
    ttlt_ms: float | None = None
    cost_cents: float = 0.0
    # Why the call was made: "" for the answer itself, else "review", "classify", "judge"...
    purpose: str = ""
    # The model id the provider says answered ("" when it did not say).
    served_model: str = ""


class SkippedCandidate(msgspec.Struct, frozen=True):
    """A candidate of the job's chain that was never called, and why.

    ``reason`` is a routing gate's (``capability``, ``sensitivity``, ``rule``, ``tenant_allow_list``,
    ``context_window``, ``costlier_not_allowed``: ``policies._routing``) or an admission refusal's
    at run time (``budget``, ``breaker_open``, ``cooling_down``, ``unhealthy``, ``no_slot``,
    ``disabled``); ``detail`` says more.
    """

    model: str
    reason: str
    detail: str = ""


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """How a request was served: which model, which attempts, what was degraded and what it cost."""

    model: str
    provider: str
    model_class: str = ""
    task: str = ""
    attempts: tuple[AttemptSummary, ...] = ()
    degraded: bool = False
    degraded_reason: str | None = None
    hedged: bool = False
    cache_hit: bool = False
    cost_cents: float = 0.0
    ttft_ms: float | None = None
    ttlt_ms: float | None = None
    verdict: str | None = None
    # The job's first choice: an answer from any other model is degraded, with a reason.
    first_choice: str = ""
    # The model id the provider says answered (its response's ``model``), beside the config name.
    served_model: str = ""
    skipped: tuple[SkippedCandidate, ...] = ()
    # The provider sent no usage for the answer: ``cost_cents`` was billed from an estimate.
    usage_estimated: bool = False
    # The part of ``cost_cents`` spent on auxiliary calls (reviews, classifier, judge) in ``attempts``.
    aux_cost_cents: float = 0.0


class RouteEvent(msgspec.Struct, frozen=True, tag="route"):
    """The last event of a routed stream: how the answer was served."""

    route: Route


class ChatResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A complete answer: text, reasoning, refusal, tool calls, finish reason, usage and route.

    ``usage`` is None when the provider reported none (unknown, never zeros; the route says how it
    was billed). ``refusal`` is the model's refusal, kept out of ``content``.
    ``provider_finish_reason`` is the provider's own reason beside the mapped ``finish_reason``.
    """

    content: str
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None
    route: Route | None = None
    refusal: str = ""
    provider_finish_reason: str = ""
