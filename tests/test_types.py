"""Canonical types: every one round-trips through JSON and MessagePack unchanged."""

from __future__ import annotations

import msgspec
import pytest

import interlock
from interlock import (
    AttemptRecord,
    AttemptSummary,
    ChatRequest,
    ChatResponse,
    Finish,
    ImagePart,
    JsonSchemaFormat,
    Message,
    RequestRecord,
    Route,
    RouteEvent,
    Secret,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallDone,
    ToolCallPart,
    ToolChoiceNamed,
    ToolResultPart,
    ToolSpec,
    Usage,
    UsageEvent,
)

REQUEST = ChatRequest(
    messages=(
        Message.text("system", "be brief", cache_breakpoint=True),
        Message(role="user", content=(interlock.TextPart("hi"), ImagePart(url="https://example.invalid/a.png"))),
        Message(role="assistant", content=(ToolCallPart("c1", "lookup", '{"q": "x"}'),)),
        Message(role="tool", content=(ToolResultPart("c1", "42", is_error=False),)),
    ),
    tools=(ToolSpec("lookup", "find things", {"type": "object", "properties": {"q": {"type": "string"}}}),),
    tool_choice=ToolChoiceNamed("lookup"),
    response_format=JsonSchemaFormat("answer", {"type": "object"}),
    temperature=0.2,
    stop=("END",),
    max_tokens=100,
    task="cheap_bulk",
    tenant="acme",
    caller="svc",
    sensitivity="pii",
    metadata={"k": "v"},
)

ROUTE = Route(
    model="mini",
    provider="openai",
    attempts=(AttemptSummary("big", "anthropic", "error", error="overloaded"), AttemptSummary("mini", "openai", "ok")),
    degraded=True,
    degraded_reason="overloaded",
    cost_cents=0.12,
    ttft_ms=120.0,
    ttlt_ms=900.0,
)

VALUES: list[object] = [
    REQUEST,
    TextDelta("a"),
    ThinkingDelta("hmm", signature="sig"),
    ToolCallDelta(0, id="c1", name="lookup", arguments='{"q"'),
    ToolCallDone(0, "c1", "lookup", '{"q": "x"}'),
    UsageEvent(Usage(10, 5, 3, 1)),
    Finish("tool_calls"),
    RouteEvent(ROUTE),
    ChatResponse(content="hi", tool_calls=(ToolCall("c1", "f", "{}"),), usage=Usage(1, 2), route=ROUTE),
    AttemptRecord(
        request_id="r1", attempt=1, ts=1.0, tenant="t", caller="c", task="j", model_class="fast",
        model="m", provider="p", outcome="error", error="rate_limit", status=429, hedge=True,
    ),
    RequestRecord(request_id="r1", ts=1.0, tenant="t", caller="c", task="j", degraded=True, attempts=2),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_json_round_trip(value: object) -> None:
    """A canonical value decodes from its JSON back to an equal value."""
    data = msgspec.json.encode(value)
    assert msgspec.json.decode(data, type=type(value)) == value


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_msgpack_round_trip(value: object) -> None:
    """A canonical value decodes from MessagePack back to an equal value."""
    data = msgspec.msgpack.encode(value)
    assert msgspec.msgpack.decode(data, type=type(value)) == value


def test_stream_event_union_is_tagged() -> None:
    """The stream event union decodes each member by its tag."""
    events = [e for e in VALUES if isinstance(e, (TextDelta, ThinkingDelta, ToolCallDelta, Finish, UsageEvent))]
    data = msgspec.json.encode(events)
    assert msgspec.json.decode(data, type=list[interlock.StreamEvent]) == events


def test_usage_arithmetic_keeps_cache_apart() -> None:
    """Usage adds field by field and totals input including cache reads and writes."""
    total = Usage(10, 5, 3, 1) + Usage(1, 1, 1, 1)
    assert total == Usage(11, 6, 4, 2)
    assert total.total_input_tokens == 17


def test_types_are_frozen() -> None:
    """Canonical values cannot be mutated after construction."""
    with pytest.raises(AttributeError):
        REQUEST.task = "other"  # type: ignore[misc]


def test_secret_never_shows_itself() -> None:
    """A Secret's repr and str hide the value, and it refuses pickling."""
    secret = Secret.from_env("K", {"K": "sk-very-secret"})
    assert "sk-very" not in repr(secret)
    assert "sk-very" not in str(secret)
    assert secret.reveal() == "sk-very-secret"
    with pytest.raises(interlock.ConfigError, match="MISSING"):
        Secret.from_env("MISSING", {})
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(secret)
