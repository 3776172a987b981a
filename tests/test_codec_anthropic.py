"""Tests of the Anthropic Messages codec on recorded byte streams and hand-built requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlock._errors import ErrorClass, MidStreamError, ProviderError, RequestError
from interlock._secret import Secret
from interlock._types import (
    ChatRequest,
    Finish,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
    StreamEvent,
    TextDelta,
    TextFormat,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolChoiceNamed,
    ToolResultPart,
    ToolSpec,
    Usage,
    UsageEvent,
)
from interlock.adapters.providers.anthropic._codec import AnthropicCodec

DATA = Path(__file__).parent / "data"
KEY = "sk-ant-api03-SECRETSECRETSECRET"
MODEL = "claude-sonnet-4-5-20250929"
END_TURN = Finish("stop", provider_reason="end_turn", served_model=MODEL)
STREAMS = ["anthropic_text.sse", "anthropic_thinking.sse", "anthropic_tools.sse", "anthropic_cache.sse"]


def codec(**kwargs: Any) -> AnthropicCodec:
    """A codec with a recognisable key."""
    return AnthropicCodec("anthropic", Secret(KEY), **kwargs)


def recorded(name: str) -> bytes:
    """The bytes of a recorded stream."""
    return (DATA / name).read_bytes()


def decode_all(data: bytes, chunks: list[bytes] | None = None) -> list[StreamEvent]:
    """Feed ``data`` (or the given chunks of it) to a fresh decoder and close it."""
    decoder = codec().stream_decoder(MODEL)
    events: list[StreamEvent] = []
    for chunk in chunks if chunks is not None else [data]:
        events += decoder.feed(chunk)
    return events + decoder.close()


def body(request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
    """The JSON body the codec builds for ``request``."""
    result: dict[str, Any] = json.loads(codec().encode(request, MODEL, stream=stream).body)
    return result


def sse(*events: dict[str, Any]) -> bytes:
    """An SSE byte stream of the given event payloads, named by their type."""
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def minimal_stream(stop_reason: str) -> bytes:
    """A complete one-word stream ending with ``stop_reason``."""
    return sse(
        {"type": "message_start", "message": {"content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    )


# -- stream decoding -------------------------------------------------------------------------


def test_text_stream_events() -> None:
    """A plain text stream gives its deltas, then one usage event and one finish."""
    assert decode_all(recorded("anthropic_text.sse")) == [
        TextDelta("Hello"),
        TextDelta(", wörld — ✓"),
        TextDelta("!\n"),
        UsageEvent(Usage(input_tokens=25, output_tokens=15)),
        Finish("stop", provider_reason="end_turn", served_model=MODEL),
    ]


def test_thinking_stream_keeps_text_and_signature_apart() -> None:
    """Thinking deltas become thinking text and the signature delta a signature-only event."""
    events = decode_all(recorded("anthropic_thinking.sse"))
    assert events[:3] == [
        ThinkingDelta(text="27 * 453: 27 * 400 = 10800, "),
        ThinkingDelta(text="27 * 53 = 1431, sum 12231."),
        ThinkingDelta(signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds3v8FT+aN/bi0fLeaKt6r0DB4Aq=="),
    ]
    assert events[3:] == [TextDelta("27 * 453 = 12,231"), UsageEvent(Usage(48, 93)), END_TURN]


def test_parallel_tool_use_blocks() -> None:
    """Each tool_use block streams deltas keyed by its block index and closes with its assembled JSON."""
    events = decode_all(recorded("anthropic_tools.sse"))
    first, second, third = (
        "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "toolu_01Ab2cD3eF4gH5iJ6kL7mN8o",
        "toolu_01Zz9yX8wV7uT6sR5qP4oN3m",
    )
    assert events == [
        TextDelta("Checking both cities."),
        ToolCallDelta(1, first, "get_weather"),
        ToolCallDelta(1, arguments='{"location":'),
        ToolCallDelta(1, arguments=' "San Francisco, CA"}'),
        ToolCallDone(1, first, "get_weather", '{"location": "San Francisco, CA"}'),
        ToolCallDelta(2, second, "get_weather"),
        ToolCallDelta(2, arguments='{"location": "Paris'),
        ToolCallDelta(2, arguments=', FR"}'),
        ToolCallDone(2, second, "get_weather", '{"location": "Paris, FR"}'),
        ToolCallDelta(3, third, "get_time"),
        ToolCallDone(3, third, "get_time", "{}"),
        UsageEvent(Usage(input_tokens=472, output_tokens=89)),
        Finish("tool_calls", provider_reason="tool_use", served_model=MODEL),
    ]
    for done in (e for e in events if isinstance(e, ToolCallDone)):
        assert isinstance(json.loads(done.arguments), dict)


def test_cache_usage_is_not_double_counted() -> None:
    """input_tokens excludes cache writes and reads, which land in their own fields unchanged."""
    events = decode_all(recorded("anthropic_cache.sse"))
    usage = next(e.usage for e in events if isinstance(e, UsageEvent))
    assert usage == Usage(input_tokens=21, output_tokens=12, cache_read_tokens=2051, cache_write_tokens=188)
    assert usage.total_input_tokens == 21 + 188 + 2051
    assert events[-1] == Finish("length", provider_reason="max_tokens", served_model=MODEL)


def test_message_delta_usage_overrides_only_what_it_carries() -> None:
    """Cumulative counts in message_delta replace message_start's; counts it omits are kept."""
    data = sse(
        {
            "type": "message_start",
            "message": {"usage": {"input_tokens": 9, "cache_read_input_tokens": 4, "output_tokens": 1}},
        },
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
        {"type": "message_delta", "delta": {}, "usage": {"input_tokens": 10, "output_tokens": 8}},
        {"type": "message_stop"},
    )
    end = Finish("stop", provider_reason="end_turn")
    assert decode_all(data)[-2:] == [UsageEvent(Usage(10, 8, cache_read_tokens=4)), end]


@pytest.mark.parametrize("name", STREAMS)
def test_every_stream_ends_with_one_usage_then_finish(name: str) -> None:
    """A decoder emits exactly one UsageEvent and one Finish, last and in that order."""
    events = decode_all(recorded(name))
    assert [type(e) for e in events].count(UsageEvent) == 1
    assert [type(e) for e in events].count(Finish) == 1
    assert isinstance(events[-2], UsageEvent)
    assert isinstance(events[-1], Finish)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    """Every Anthropic stop reason maps to its canonical finish reason, streamed or not."""
    expected = Finish(finish, provider_reason=stop_reason)  # type: ignore[arg-type]
    assert decode_all(minimal_stream(stop_reason))[-1] == expected
    whole = {"content": [{"type": "text", "text": "Hi"}], "stop_reason": stop_reason, "usage": {}}
    assert codec().decode_response(json.dumps(whole).encode(), MODEL)[-1] == expected


def test_ping_unknown_events_and_blocks_are_skipped() -> None:
    """Pings, event types added later and block types we do not map yield nothing."""
    base = minimal_stream("end_turn")
    noise = sse(
        {"type": "ping"},
        {"type": "brand_new_event", "payload": [1, 2]},
        {"type": "content_block_start", "index": 5, "content_block": {"type": "redacted_thinking", "data": "x"}},
        {"type": "content_block_delta", "index": 5, "delta": {"type": "citations_delta", "citation": {}}},
        {"type": "content_block_stop", "index": 5},
    )
    assert decode_all(noise + base) == decode_all(base)


def test_events_after_message_stop_are_ignored() -> None:
    """Nothing after message_stop belongs to the answer, not even a second message_stop."""
    base = minimal_stream("end_turn")
    assert decode_all(base + base) == decode_all(base)


# -- stream failures -------------------------------------------------------------------------


def test_in_band_overloaded_error_keeps_partial_text() -> None:
    """An error event mid-stream raises MidStreamError(overloaded) carrying the text so far.

    The events decoded before the error in the same chunk are handed over first; the error follows
    on the next call, so a caller never loses text it was due.
    """
    decoder = codec().stream_decoder(MODEL)
    delivered = decoder.feed(recorded("anthropic_overloaded.sse"))
    assert "".join(e.text for e in delivered if isinstance(e, TextDelta)) == "Once upon a time"
    with pytest.raises(MidStreamError) as info:
        decoder.close()
    err = info.value
    assert err.kind is ErrorClass.OVERLOADED
    assert err.partial == "Once upon a time"
    assert (err.provider, err.model) == ("anthropic", MODEL)
    assert "overloaded_error" in err.detail


@pytest.mark.parametrize(
    ("error_type", "kind"),
    [
        ("rate_limit_error", ErrorClass.RATE_LIMIT),
        ("billing_error", ErrorClass.QUOTA),
        ("api_error", ErrorClass.SERVER_ERROR),
        ("timeout_error", ErrorClass.TIMEOUT),
        ("something_new", ErrorClass.SERVER_ERROR),
    ],
)
def test_in_band_error_uses_the_error_type_table(error_type: str, kind: ErrorClass) -> None:
    """The in-band error event is classified by the same table as HTTP error bodies."""
    data = sse({"type": "error", "error": {"type": error_type, "message": "boom"}})
    with pytest.raises(MidStreamError) as info:
        decode_all(data)
    assert info.value.kind is kind
    assert info.value.partial == ""


@pytest.mark.parametrize("cut", [1, 40, 300, 420, 700, 900, -30, -3])
def test_cut_stream_raises_with_partial_text(cut: int) -> None:
    """A body that stops anywhere before message_stop raises MidStreamError(server_error) with the text so far."""
    data = recorded("anthropic_text.sse")
    head = data[:cut]
    decoder = codec().stream_decoder(MODEL)
    events = decoder.feed(head)
    with pytest.raises(MidStreamError) as info:
        decoder.close()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert info.value.kind is ErrorClass.SERVER_ERROR
    assert info.value.partial == text == decoder.partial_text


def test_closed_without_message_stop_raises() -> None:
    """Whole events that never reach message_stop are a broken stream, not a short answer."""
    data = minimal_stream("end_turn").rsplit(b"event: message_stop", 1)[0]
    with pytest.raises(MidStreamError) as info:
        decode_all(data)
    assert info.value.kind is ErrorClass.SERVER_ERROR
    assert info.value.partial == "Hi"
    assert "message_stop" in info.value.detail


def test_cut_mid_event_is_reported_as_a_cut() -> None:
    """A body ending inside an event's JSON says it was cut, not that the provider sent bad JSON."""
    data = recorded("anthropic_text.sse")
    end = data.index(b'"text":"Hello"')
    with pytest.raises(MidStreamError) as info:
        decode_all(data[:end])
    assert "cut mid-event" in info.value.detail


def test_malformed_structural_event_names_provider_and_offset() -> None:
    """Bad JSON in a content_block_start raises MidStreamError(server_error) naming the provider and byte offset."""
    good = minimal_stream("end_turn").split(b"event: content_block_stop")[0]
    data = good + b'event: content_block_start\ndata: {"type": "content_block_start", "index": 1,,}\n\n'
    decoder = codec().stream_decoder(MODEL)
    assert [e for e in decoder.feed(data) if isinstance(e, TextDelta)] == [TextDelta("Hi")]
    with pytest.raises(MidStreamError) as info:
        decoder.feed(b"")
    assert info.value.kind is ErrorClass.SERVER_ERROR
    assert info.value.partial == "Hi"
    assert info.value.detail == (
        f"anthropic: malformed event content_block_start near byte {len(data)}: what it carried cannot be recovered"
    )


def test_malformed_ping_and_unknown_events_are_skipped_and_counted() -> None:
    """A malformed ping, an unnamed and an unknown malformed event lose nothing: skipped, and counted on the Finish."""
    good = minimal_stream("end_turn")
    cut = good.index(b"event: content_block_stop")
    junk = b"event: ping\ndata: {nope\n\n" + b"data: {nope\n\n" + b"event: future_event\ndata: [\n\n"
    events = decode_all(good[:cut] + junk + good[cut:])
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hi")]
    assert events[-1] == Finish("stop", skipped_events=3, provider_reason="end_turn")


def test_malformed_delta_in_a_thinking_block_fails() -> None:
    """A malformed delta while a thinking block is open fails: the signed thinking text would be corrupted."""
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}
    data = sse(start) + b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{\n\n'
    with pytest.raises(MidStreamError) as info:
        decode_all(data)
    assert "cannot be recovered" in info.value.detail


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(STREAMS), crlf=st.booleans(), data=st.data())
def test_chunking_never_changes_events(name: str, crlf: bool, data: st.DataObject) -> None:
    """However a recorded stream is split into chunks, the events equal the single-chunk parse."""
    raw = recorded(name)
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=40), label="cuts"))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    assert decode_all(raw, chunks) == decode_all(raw)


@settings(max_examples=30, deadline=None)
@given(cut=st.integers(0, len(recorded("anthropic_overloaded.sse"))), data=st.data())
def test_chunking_never_changes_the_mid_stream_error(cut: int, data: st.DataObject) -> None:
    """Split anywhere, the overloaded stream still fails with the same kind and partial text."""
    raw = recorded("anthropic_overloaded.sse")
    decoder = codec().stream_decoder(MODEL)

    def run() -> None:
        decoder.feed(raw[:cut])
        decoder.feed(raw[cut:])
        decoder.close()

    with pytest.raises(MidStreamError) as info:
        run()
    assert info.value.kind is ErrorClass.OVERLOADED
    assert info.value.partial == "Once upon a time"


# -- whole responses -------------------------------------------------------------------------


def test_decode_response_gives_stream_shaped_events() -> None:
    """A non-streamed Message decodes to deltas per block, a complete tool call, usage and finish."""
    events = codec().decode_response(recorded("anthropic_message.json"), MODEL)
    args = '{"location":"San Francisco, CA","unit":"celsius"}'
    call = "toolu_01A09q90qw90lq917835lq9"
    assert events == [
        ThinkingDelta(text="Need the weather first."),
        ThinkingDelta(signature="ErUBCkYIAxgCIkB0c2lnbmF0dXJl"),
        TextDelta("Let me check."),
        ToolCallDelta(2, call, "get_weather", args),
        ToolCallDone(2, call, "get_weather", args),
        UsageEvent(Usage(input_tokens=30, output_tokens=55, cache_read_tokens=2000, cache_write_tokens=100)),
        Finish("tool_calls", provider_reason="tool_use", served_model=MODEL),
    ]


def test_decode_response_matches_the_equivalent_stream() -> None:
    """Streamed and whole answers with the same content give the same text, calls, usage and finish."""
    streamed = decode_all(recorded("anthropic_tools.sse"))
    message = {
        "content": [
            {"type": "text", "text": "Checking both cities."},
            {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}},
            {"type": "tool_use", "id": "toolu_01Ab2cD3eF4gH5iJ6kL7mN8o", "name": "get_weather", "input": {}},
            {"type": "tool_use", "id": "toolu_01Zz9yX8wV7uT6sR5qP4oN3m", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 472, "output_tokens": 89},
        "model": MODEL,
    }
    whole = codec().decode_response(json.dumps(message).encode(), MODEL)

    def summary(events: list[StreamEvent]) -> tuple[object, ...]:
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        calls = [(e.index, e.id, e.name) for e in events if isinstance(e, ToolCallDone)]
        return text, calls, events[-2:]

    assert summary(whole) == summary(streamed)


def test_decode_response_rejects_bad_json() -> None:
    """A 2xx body that is not a Message is a typed server error, not a crash."""
    with pytest.raises(ProviderError) as info:
        codec().decode_response(b"<html>oops</html>", MODEL)
    assert info.value.kind is ErrorClass.SERVER_ERROR
    assert info.value.model == MODEL


# -- request encoding ------------------------------------------------------------------------


def test_wire_request_shape_and_headers() -> None:
    """A request goes to POST /v1/messages with the key, version and JSON content type."""
    wire = codec(extra_headers={"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"}).encode(
        ChatRequest(messages=(Message.text("user", "hi"),)), MODEL, stream=True
    )
    assert (wire.method, wire.path) == ("POST", "/v1/messages")
    assert wire.headers == {
        "x-api-key": KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "anthropic-beta": "fine-grained-tool-streaming-2025-05-14",
    }
    assert json.loads(wire.body) == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stream": True,
    }


def test_sampling_fields_and_max_tokens() -> None:
    """max_tokens, temperature, top_p and stop sequences pass through; stream is absent when not streaming."""
    request = ChatRequest(
        messages=(Message.text("user", "hi"),), max_tokens=77, temperature=0.2, top_p=0.9, stop=("END", "##")
    )
    sent = body(request)
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (77, 0.2, 0.9)
    assert sent["stop_sequences"] == ["END", "##"]
    assert "stream" not in sent
    assert body(ChatRequest(messages=(Message.text("user", "hi"),)), stream=False)["max_tokens"] == 4096
    other = AnthropicCodec("a", None, default_max_tokens=123)
    assert json.loads(other.encode(ChatRequest(messages=()), MODEL, stream=False).body)["max_tokens"] == 123


def test_system_messages_are_lifted_and_turns_merged() -> None:
    """System text moves to top-level blocks; adjacent same-role turns (tool results included) merge."""
    request = ChatRequest(
        messages=(
            Message.text("system", "Be brief."),
            Message.text("user", "Weather?"),
            Message.text("user", "In Paris."),
            Message(role="assistant", content=(TextPart("Looking."), ToolCallPart("tu_1", "get", '{"city": "Paris"}'))),
            Message(role="tool", content=(ToolResultPart("tu_1", "rain", is_error=False),)),
            Message(role="tool", content=(ToolResultPart("tu_2", "no such tool", is_error=True),)),
            Message.text("system", "Answer in French."),
            Message.text("user", "Thanks"),
        )
    )
    sent = body(request)
    assert sent["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in French."}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}, {"type": "text", "text": "In Paris."}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "tu_1", "name": "get", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "tu_1", "content": "rain"},
                {"type": "tool_result", "tool_use_id": "tu_2", "content": "no such tool", "is_error": True},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_tool_call_arguments_become_a_json_object() -> None:
    """Tool-call arguments are sent as parsed JSON; empty ones as {} and non-objects are refused."""

    def assistant(arguments: str) -> ChatRequest:
        return ChatRequest(messages=(Message(role="assistant", content=(ToolCallPart("t", "f", arguments),)),))

    assert body(assistant(""))["messages"][0]["content"][0]["input"] == {}
    assert body(assistant('{"n": [1, 2]}'))["messages"][0]["content"][0]["input"] == {"n": [1, 2]}
    for bad in ("[1]", "{not json", "3"):
        with pytest.raises(RequestError) as info:
            body(assistant(bad))
        assert info.value.field == "messages"


def test_images_as_base64_url_and_data_url() -> None:
    """Images become base64 or url sources; a data URL is sent as inline base64."""
    parts = (
        ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
        ImagePart(url="https://example.com/cat.jpg"),
        ImagePart(url="data:image/webp;base64,UklGRg=="),
    )
    content = body(ChatRequest(messages=(Message(role="user", content=parts),)))["messages"][0]["content"]
    assert [c["source"] for c in content] == [
        {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        {"type": "url", "url": "https://example.com/cat.jpg"},
        {"type": "base64", "media_type": "image/webp", "data": "UklGRg=="},
    ]
    with pytest.raises(RequestError):
        body(ChatRequest(messages=(Message(role="user", content=(ImagePart(),)),)))


@pytest.mark.parametrize(
    ("role", "part"),
    [
        ("assistant", ImagePart(url="https://example.com/a.png")),
        ("assistant", ToolResultPart("t", "x")),
        ("user", ToolCallPart("t", "f", "{}")),
        ("system", ImagePart(url="https://example.com/a.png")),
    ],
)
def test_parts_a_role_cannot_hold_are_refused(role: str, part: Any) -> None:
    """A part Anthropic does not accept in that role raises RequestError naming the messages field."""
    with pytest.raises(RequestError) as info:
        body(ChatRequest(messages=(Message(role=role, content=(part,)),)))  # type: ignore[arg-type]
    assert info.value.field == "messages"


def test_empty_text_parts_are_dropped() -> None:
    """Empty text (which Anthropic rejects) is left out, and a turn with nothing else is skipped."""
    request = ChatRequest(
        messages=(Message.text("user", "hi"), Message.text("assistant", ""), Message.text("user", ""))
    )
    assert body(request)["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_cache_control_placement() -> None:
    """Breakpoints sit on the last system block, the last tool and the last block of a marked message."""
    request = ChatRequest(
        messages=(
            Message.text("system", "rules one"),
            Message.text("system", "rules two"),
            Message(role="user", content=(TextPart("doc"), TextPart("question")), cache_breakpoint=True),
            Message.text("user", "follow-up"),
        ),
        tools=(ToolSpec("a"), ToolSpec("b", "second")),
        cache_system=True,
        cache_tools=True,
    )
    sent = body(request)
    ephemeral = {"type": "ephemeral"}
    assert [b.get("cache_control") for b in sent["system"]] == [None, ephemeral]
    assert [t.get("cache_control") for t in sent["tools"]] == [None, ephemeral]
    assert [b.get("cache_control") for b in sent["messages"][0]["content"]] == [None, ephemeral, None]


def test_cache_breakpoint_on_a_system_message() -> None:
    """A breakpoint on a system message lands on its own block even without cache_system."""
    request = ChatRequest(
        messages=(Message.text("system", "long rules", cache_breakpoint=True), Message.text("system", "today"))
    )
    assert [b.get("cache_control") for b in body(request)["system"]] == [{"type": "ephemeral"}, None]


def test_no_cache_control_unless_asked() -> None:
    """Without cache flags or breakpoints, no block carries cache_control."""
    request = ChatRequest(messages=(Message.text("system", "s"), Message.text("user", "u")), tools=(ToolSpec("a"),))
    assert "cache_control" not in json.dumps(body(request))


def test_tools_are_sent_with_input_schema() -> None:
    """A tool goes out as name, description and input_schema."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    request = ChatRequest(messages=(Message.text("user", "x"),), tools=(ToolSpec("get", "Get weather", schema),))
    assert body(request)["tools"] == [{"name": "get", "description": "Get weather", "input_schema": schema}]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        (ToolChoiceMode("auto"), None, {"type": "auto"}),
        (ToolChoiceMode("required"), None, {"type": "any"}),
        (ToolChoiceMode("none"), None, {"type": "none"}),
        (ToolChoiceNamed("get"), None, {"type": "tool", "name": "get"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoiceMode("required"), False, {"type": "any", "disable_parallel_tool_use": True}),
        (ToolChoiceNamed("get"), False, {"type": "tool", "name": "get", "disable_parallel_tool_use": True}),
        (ToolChoiceMode("none"), False, {"type": "none"}),
        (None, True, None),
    ],
)
def test_tool_choice_mapping(choice: ToolChoice | None, parallel: bool | None, expected: Any) -> None:
    """Tool choices map to auto/any/tool/none, and parallel_tool_calls=False to disable_parallel_tool_use."""
    request = ChatRequest(
        messages=(Message.text("user", "x"),),
        tools=(ToolSpec("get"),),
        tool_choice=choice,
        parallel_tool_calls=parallel,
    )
    assert body(request).get("tool_choice") == expected


def test_tool_choice_errors() -> None:
    """A named tool that is not offered, or a forced choice without tools, is refused."""
    no_such = ChatRequest(messages=(), tools=(ToolSpec("get"),), tool_choice=ToolChoiceNamed("put"))
    without_tools = ChatRequest(messages=(), tool_choice=ToolChoiceMode("required"))
    for request in (no_such, without_tools):
        with pytest.raises(RequestError) as info:
            body(request)
        assert info.value.field == "tool_choice"
    assert "tool_choice" not in body(ChatRequest(messages=(), tool_choice=ToolChoiceMode("none")))


def test_response_format_mapping() -> None:
    """json_schema maps to output_config.format; text sends nothing; json_object is refused naming the provider."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    sent = body(ChatRequest(messages=(), response_format=JsonSchemaFormat("thing", schema)))
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in body(ChatRequest(messages=(), response_format=TextFormat()))
    with pytest.raises(RequestError) as info:
        body(ChatRequest(messages=(), response_format=JsonObjectFormat()))
    assert info.value.field == "response_format"
    assert "anthropic" in str(info.value)


def test_probe_request() -> None:
    """The probe is an authenticated GET /v1/models without a body."""
    probe = codec().probe_request()
    assert (probe.method, probe.path, probe.body) == ("GET", "/v1/models", b"")
    assert probe.headers["x-api-key"] == KEY
    assert probe.headers["anthropic-version"] == "2023-06-01"


def test_no_key_header_without_a_key() -> None:
    """A codec built without a key (a keyless gateway) sends no x-api-key header."""
    wire = AnthropicCodec("gw", None).encode(ChatRequest(messages=()), MODEL, stream=False)
    assert "x-api-key" not in wire.headers


# -- error classification --------------------------------------------------------------------


def error_body(error_type: str, message: str = "x") -> bytes:
    """An Anthropic HTTP error body."""
    return msgspec.json.encode(
        {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
        }
    )


SPEND_CAP = msgspec.json.encode(
    {"type": "error", "error": {"type": "rate_limit_error", "details": {"error_code": "enforced_spend_limit_reached"}}}
)


@pytest.mark.parametrize(
    ("status", "payload", "kind"),
    [
        (400, error_body("invalid_request_error", "messages: roles must alternate"), ErrorClass.BAD_REQUEST),
        (
            400,
            error_body("invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum"),
            ErrorClass.CONTEXT_LENGTH,
        ),
        (
            400,
            error_body("invalid_request_error", "input length and `max_tokens` exceed context limit: 1 + 2 > 3"),
            ErrorClass.CONTEXT_LENGTH,
        ),
        (401, error_body("authentication_error", "invalid x-api-key"), ErrorClass.AUTH),
        (402, error_body("billing_error"), ErrorClass.QUOTA),
        (403, error_body("permission_error"), ErrorClass.AUTH),
        (404, error_body("not_found_error", "model: claude-nope"), ErrorClass.BAD_REQUEST),
        (413, error_body("request_too_large"), ErrorClass.BAD_REQUEST),
        (413, b"<html>413 Request Entity Too Large</html>", ErrorClass.BAD_REQUEST),
        (429, error_body("rate_limit_error"), ErrorClass.RATE_LIMIT),
        (400, error_body("invalid_request_error", "Your credit balance is too low to access it."), ErrorClass.QUOTA),
        (400, error_body("invalid_request_error", "You reached your specified API usage limits"), ErrorClass.QUOTA),
        (429, SPEND_CAP, ErrorClass.QUOTA),
        (500, error_body("api_error"), ErrorClass.SERVER_ERROR),
        (529, error_body("overloaded_error", "Overloaded"), ErrorClass.OVERLOADED),
        (529, b"", ErrorClass.OVERLOADED),
        (503, b"upstream connect error", ErrorClass.OVERLOADED),
        (504, error_body("timeout_error"), ErrorClass.TIMEOUT),
        (504, b"", ErrorClass.TIMEOUT),
        (502, b"bad gateway", ErrorClass.SERVER_ERROR),
        (418, b"teapot", ErrorClass.BAD_REQUEST),
        (599, b"", ErrorClass.SERVER_ERROR),
    ],
)
def test_error_table(status: int, payload: bytes, kind: ErrorClass) -> None:
    """HTTP status and error body map to one error class, with provider, model and status filled in."""
    err = codec().classify(status, {}, payload, MODEL)
    assert err.kind is kind
    assert (err.provider, err.model, err.status) == ("anthropic", MODEL, status)


def test_error_detail_carries_type_and_message() -> None:
    """The error detail names Anthropic's error type and message."""
    err = codec().classify(404, {}, error_body("not_found_error", "model: claude-nope"), None)
    assert err.detail == "not_found_error: model: claude-nope"
    assert err.model is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "7"}, 7.0), ({"Retry-After": "0.5"}, 0.5), ({"retry-after-ms": "1500"}, 1.5), ({}, None)],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """A 429's retry hint comes from the retry-after headers."""
    err = codec().classify(429, headers, error_body("rate_limit_error"), MODEL)
    assert err.kind is ErrorClass.RATE_LIMIT
    assert err.retry_after == expected


def test_key_never_in_reprs_or_errors() -> None:
    """The API key appears in no repr and no error, even when an error body echoes it."""
    c = codec()
    wire = c.encode(ChatRequest(messages=(Message.text("user", "hi"),)), MODEL, stream=True)
    echoed = error_body("authentication_error", f"invalid x-api-key: {KEY}")
    err = c.classify(401, {"x-api-key": KEY}, echoed, MODEL)
    raw_err = c.classify(401, {}, f"bad key {KEY}".encode(), MODEL)
    texts = [repr(c), str(c), repr(wire), repr(c.probe_request()), str(err), repr(err), err.detail, str(raw_err)]
    assert all(KEY not in text for text in texts)
    assert err.kind is ErrorClass.AUTH
    assert KEY not in wire.body.decode()
