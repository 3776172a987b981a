"""Tests of the OpenAI Chat Completions codec on recorded byte streams, bodies and error responses."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
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
    RefusalDelta,
    StreamEvent,
    TextDelta,
    TextFormat,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallPart,
    ToolChoiceMode,
    ToolChoiceNamed,
    ToolResultPart,
    ToolSpec,
    Usage,
    UsageEvent,
)
from interlock.adapters.providers.openai._codec import OpenAICodec

DATA = Path(__file__).parent / "data"
KEY = "sk-proj-TESTKEY0123456789abcdef"
MODEL = "gpt-4.1"


def _codec(*, compatible: bool = False, key: str | None = KEY) -> OpenAICodec:
    return OpenAICodec("openai", Secret(key) if key else None, compatible=compatible)


def _recorded(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    body["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body.update(top)
    return body


def _sse(*payloads: dict[str, Any] | str) -> bytes:
    lines = [p if isinstance(p, str) else json.dumps(p) for p in payloads]
    return b"".join(f"data: {line}\n\n".encode() for line in lines)


def _usage(prompt: int = 10, completion: int = 5, cached: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage["total_tokens"] = prompt + completion
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def _decode(raw: bytes, *, compatible: bool = False, pieces: list[int] | None = None) -> list[StreamEvent]:
    decoder = _codec(compatible=compatible).stream_decoder(MODEL)
    cuts = sorted(set(pieces or []))
    events: list[StreamEvent] = []
    start = 0
    for cut in [*cuts, len(raw)]:
        events += decoder.feed(raw[start:cut])
        start = cut
    return events + decoder.close()


def _fails(raw: bytes, *, compatible: bool = False) -> MidStreamError:
    with pytest.raises(MidStreamError) as info:
        _decode(raw, compatible=compatible)
    return info.value


def _body(request: ChatRequest, *, stream: bool = False, compatible: bool = False) -> dict[str, Any]:
    wire = _codec(compatible=compatible).encode(request, MODEL, stream=stream)
    decoded: dict[str, Any] = json.loads(wire.body)
    return decoded


def _ask(*messages: Message, **fields: Any) -> ChatRequest:
    return ChatRequest(messages=messages or (Message.text("user", "hi"),), **fields)


# -- recorded streams ------------------------------------------------------------------------


def test_text_stream_decodes_to_deltas_usage_and_finish() -> None:
    """A recorded OpenAI text stream yields its text deltas, then one usage event, then one finish."""
    events = _decode(_recorded("openai_text_stream.sse"))
    assert events == [
        TextDelta("Bonjour"),
        TextDelta(", ça"),
        TextDelta(" va ? 👋"),
        UsageEvent(Usage(input_tokens=86, output_tokens=300, cache_read_tokens=1920)),
        Finish("stop", provider_reason="stop", served_model="gpt-4.1-2025-04-14"),
    ]


def test_recorded_chunks_match_the_openai_sdk_schema() -> None:
    """Every recorded chunk validates as openai-python's ChatCompletionChunk, so the recordings are realistic."""
    from openai.types.chat import ChatCompletionChunk

    for name in ("openai_text_stream.sse", "openai_parallel_tools.sse", "openai_compat_reasoning.sse"):
        for line in _recorded(name).decode().splitlines():
            if line.startswith("data: {"):
                chunk = ChatCompletionChunk.model_validate_json(line.removeprefix("data: "))
                assert chunk.object == "chat.completion.chunk"


def test_parallel_tool_calls_interleaved_by_index() -> None:
    """Fragments of two calls interleaved by index give one delta each and one assembled done per call."""
    events = _decode(_recorded("openai_parallel_tools.sse"))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas == [
        ToolCallDelta(0, id="call_Wx1a", name="get_weather", arguments=""),
        ToolCallDelta(0, arguments='{"ci'),
        ToolCallDelta(1, id="call_Tm2b", name="get_time", arguments=""),
        ToolCallDelta(1, arguments='{"tz":'),
        ToolCallDelta(0, arguments='ty":"Paris"}'),
        ToolCallDelta(1, arguments='"CET"}'),
    ]
    assert events[len(deltas) :] == [
        ToolCallDone(0, "call_Wx1a", "get_weather", '{"city":"Paris"}'),
        ToolCallDone(1, "call_Tm2b", "get_time", '{"tz":"CET"}'),
        UsageEvent(Usage(input_tokens=82, output_tokens=41)),
        Finish("tool_calls", provider_reason="tool_calls", served_model="gpt-4o-2024-08-06"),
    ]


def test_compatible_reasoning_stream_gives_thinking_then_text() -> None:
    """DeepSeek's reasoning_content deltas become ThinkingDelta; usage on the finish chunk still ends the stream."""
    events = _decode(_recorded("openai_compat_reasoning.sse"), compatible=True)
    assert events == [
        ThinkingDelta("The user wants 2+2."),
        ThinkingDelta(" That is 4."),
        TextDelta("4"),
        UsageEvent(Usage(input_tokens=13, output_tokens=25)),
        Finish("stop", provider_reason="stop", served_model="deepseek-reasoner"),
    ]


@pytest.mark.parametrize(
    ("wire", "canonical"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("function_call", "tool_calls"),
        ("eos_token", "stop"),
    ],
)
def test_every_finish_reason_maps(wire: str, canonical: str) -> None:
    """Each wire finish reason maps to its canonical one; legacy function_call means tool_calls."""
    raw = _sse(_chunk({"content": "x"}), _chunk({}, wire), _chunk(usage=_usage()), "[DONE]")
    assert _decode(raw)[-1] == Finish(canonical, provider_reason=wire, served_model=MODEL)  # type: ignore[arg-type]


def test_stop_with_tool_calls_is_reported_as_tool_calls() -> None:
    """A forced named tool ends with finish_reason stop on the wire; the canonical finish is tool_calls."""
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    raw = _sse(_chunk({"tool_calls": [call]}), _chunk({}, "stop"), "[DONE]")
    assert _decode(raw)[-1:] == [Finish("tool_calls", provider_reason="stop", served_model=MODEL)]


def test_legacy_function_call_delta_is_tool_call_zero() -> None:
    """A legacy function_call delta streams as tool call 0 with a synthesized id."""
    raw = _sse(
        _chunk({"function_call": {"name": "lookup", "arguments": ""}}),
        _chunk({"function_call": {"arguments": '{"q":1}'}}),
        _chunk({}, "function_call"),
        "[DONE]",
    )
    events = _decode(raw)
    assert ToolCallDone(0, "call_0", "lookup", '{"q":1}') in events
    assert events[-1] == Finish("tool_calls", provider_reason="function_call", served_model=MODEL)


def test_tool_fragments_without_index_are_keyed_by_id() -> None:
    """A compatible server that omits index gets calls numbered by new ids, in order."""
    first = {"id": "a", "function": {"name": "f", "arguments": '{"x":'}}
    second = {"id": "b", "function": {"name": "g", "arguments": "{}"}}
    raw = _sse(
        _chunk({"tool_calls": [first]}),
        _chunk({"tool_calls": [{"function": {"arguments": "1}"}}]}),
        _chunk({"tool_calls": [second]}),
        _chunk({}, "tool_calls"),
        "[DONE]",
    )
    done = [e for e in _decode(raw, compatible=True) if isinstance(e, ToolCallDone)]
    assert done == [ToolCallDone(0, "a", "f", '{"x":1}'), ToolCallDone(1, "b", "g", "{}")]


def test_reasoning_field_also_gives_thinking() -> None:
    """The ``reasoning`` delta field (OpenRouter, Ollama) is thinking like ``reasoning_content``."""
    raw = _sse(_chunk({"reasoning": "hmm"}), _chunk({"content": "ok"}, "stop"), "[DONE]")
    assert _decode(raw, compatible=True)[:2] == [ThinkingDelta("hmm"), TextDelta("ok")]


def test_refusal_is_its_own_channel() -> None:
    """A structured-output refusal streams as ``RefusalDelta``, never as answer text."""
    raw = _sse(_chunk({"refusal": "I can't help with that."}), _chunk({}, "stop"), "[DONE]")
    events = _decode(raw)
    assert events[0] == RefusalDelta("I can't help with that.")
    assert not [e for e in events if isinstance(e, TextDelta)]


def test_usage_before_finish_still_ends_with_usage_then_finish() -> None:
    """Whatever order the wire used, the stream ends with exactly one UsageEvent then one Finish."""
    raw = _sse(_chunk({"content": "a"}), _chunk(usage=_usage(7, 3)), _chunk({}, "length"), "[DONE]")
    events = _decode(raw)
    usage = UsageEvent(Usage(input_tokens=7, output_tokens=3))
    assert events == [TextDelta("a"), usage, Finish("length", provider_reason="length", served_model=MODEL)]


def test_stream_without_usage_chunk_reports_no_usage() -> None:
    """A server that ignores stream_options ends with one Finish and no UsageEvent: unknown, not zeros."""
    events = _decode(_sse(_chunk({"content": "a"}, "stop"), "[DONE]"))
    finish = Finish("stop", provider_reason="stop", served_model=MODEL)
    assert [e for e in events if isinstance(e, UsageEvent | Finish)] == [finish]


def test_bytes_after_done_are_ignored() -> None:
    """Nothing after data: [DONE] produces events or errors."""
    raw = _sse(_chunk({"content": "a"}, "stop"), "[DONE]") + b"data: {garbage\n\n"
    assert _decode(raw)[-1] == Finish("stop", provider_reason="stop", served_model=MODEL)


# -- usage normalization ---------------------------------------------------------------------


def test_cached_tokens_are_subtracted_from_prompt_tokens() -> None:
    """prompt_tokens includes cached_tokens: input is the uncached rest, so cost never double counts."""
    raw = _sse(_chunk({"content": "a"}, "stop"), _chunk(usage=_usage(2006, 300, cached=1920)), "[DONE]")
    usage = next(e.usage for e in _decode(raw) if isinstance(e, UsageEvent))
    assert usage == Usage(input_tokens=86, output_tokens=300, cache_read_tokens=1920, cache_write_tokens=0)
    assert usage.total_input_tokens == 2006
    price_in, price_cached = 2.0, 0.5  # per token, cached cheaper
    cost = usage.input_tokens * price_in + usage.cache_read_tokens * price_cached
    assert cost == 86 * 2.0 + 1920 * 0.5 < 2006 * 2.0


def test_usage_without_prompt_details_has_no_cache_reads() -> None:
    """A compatible server's usage without prompt_tokens_details counts every prompt token as input."""
    raw = _sse(_chunk({"content": "a"}, "stop"), _chunk(usage=_usage(50, 9)), "[DONE]")
    assert UsageEvent(Usage(input_tokens=50, output_tokens=9)) in _decode(raw, compatible=True)


def test_deepseek_cache_hits_count_as_cache_reads() -> None:
    """DeepSeek's prompt_cache_hit_tokens stands in for cached_tokens when no details are sent."""
    usage = {"prompt_tokens": 100, "completion_tokens": 2, "prompt_cache_hit_tokens": 64}
    raw = _sse(_chunk({"content": "a"}, "stop"), _chunk(usage=usage), "[DONE]")
    assert UsageEvent(Usage(input_tokens=36, output_tokens=2, cache_read_tokens=64)) in _decode(raw, compatible=True)


def test_groq_usage_in_x_groq_is_used() -> None:
    """Groq's x_groq.usage is read when the chunk has no top-level usage."""
    raw = _sse(_chunk({"content": "a"}, "stop", x_groq={"id": "req_1", "usage": _usage(11, 4)}), "[DONE]")
    assert UsageEvent(Usage(input_tokens=11, output_tokens=4)) in _decode(raw, compatible=True)


def test_cached_tokens_above_prompt_tokens_never_go_negative() -> None:
    """A server reporting more cached than prompt tokens is clamped, never a negative input count."""
    raw = _sse(_chunk({}, "stop"), _chunk(usage=_usage(10, 1, cached=12)), "[DONE]")
    assert UsageEvent(Usage(input_tokens=0, output_tokens=1, cache_read_tokens=10)) in _decode(raw)


# -- broken streams --------------------------------------------------------------------------


def test_missing_done_is_an_error_in_strict_mode() -> None:
    """OpenAI proper always sends [DONE]: a body that ends after the finish is a mid-stream error."""
    raw = _sse(_chunk({"content": "half"}), _chunk({}, "stop"))
    err = _fails(raw)
    assert (err.kind, err.partial, err.provider, err.model) == (ErrorClass.SERVER_ERROR, "half", "openai", MODEL)
    assert "[DONE]" in err.detail


def test_missing_done_ends_normally_in_compatible_mode() -> None:
    """A compatible server that closes after the finish reason without [DONE] ends the answer normally."""
    raw = _sse(_chunk({"content": "whole"}), _chunk({}, "stop"), _chunk(usage=_usage(3, 1)))
    events = _decode(raw, compatible=True)
    finish = Finish("stop", provider_reason="stop", served_model=MODEL)
    assert events == [TextDelta("whole"), UsageEvent(Usage(input_tokens=3, output_tokens=1)), finish]


@pytest.mark.parametrize("compatible", [False, True])
def test_close_without_finish_is_an_error(compatible: bool) -> None:
    """A body that ends before any finish reason fails in both modes, carrying the partial text."""
    err = _fails(_sse(_chunk({"content": "Hel"}), _chunk({"content": "lo"})), compatible=compatible)
    assert (err.kind, err.partial) == (ErrorClass.SERVER_ERROR, "Hello")


def test_done_without_finish_is_an_error() -> None:
    """[DONE] before any finish reason is not a finished answer."""
    err = _fails(_sse(_chunk({"content": "Hel"}), "[DONE]"))
    assert (err.kind, err.partial) == (ErrorClass.SERVER_ERROR, "Hel")


@pytest.mark.parametrize("compatible", [False, True])
def test_stream_cut_mid_event_is_an_error(compatible: bool) -> None:
    """A connection cut inside an event fails with the text so far, in both modes."""
    whole = _sse(_chunk({"content": "Hel"}), _chunk({}, "stop"), _chunk(usage=_usage()), "[DONE]")
    cut = whole[: whole.index(b'"usage": {') + 12]
    err = _fails(cut, compatible=compatible)
    assert (err.kind, err.partial) == (ErrorClass.SERVER_ERROR, "Hel")
    assert "cut mid-event" in err.detail


def test_malformed_chunk_mid_tool_call_names_provider_and_byte_offset() -> None:
    """A chunk that is not JSON while a tool call streams fails, naming the provider and the stream byte offset."""
    call = {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{"}}]}
    good = _sse(_chunk({"content": "ok"}), _chunk(call))
    bad = b'data: {"choices": [}\n\n'
    decoder = _codec().stream_decoder(MODEL)
    assert TextDelta("ok") in decoder.feed(good)
    with pytest.raises(MidStreamError) as info:
        decoder.feed(bad)
    err = info.value
    assert err.kind is ErrorClass.SERVER_ERROR
    assert err.partial == "ok"
    assert "openai" in err.detail
    assert "cannot be recovered" in err.detail
    assert f"byte offset {len(good) + len(bad)}" in err.detail


def test_chunk_of_the_wrong_shape_is_a_mid_stream_error() -> None:
    """Valid JSON of the wrong shape is a server error, not a validation exception."""
    err = _fails(_sse({"choices": "nope"}))
    assert err.kind is ErrorClass.SERVER_ERROR


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"error": {"message": "The server had an error", "type": "server_error", "code": None}}, "server_error"),
        (
            {"error": {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}},
            "context_length",
        ),
        ({"error": {"message": "slow", "type": "requests", "code": "rate_limit_exceeded"}}, "rate_limit"),
        ({"error": {"message": "no credit", "type": "insufficient_quota", "code": "insufficient_quota"}}, "quota"),
        (
            {"error": {"message": "flagged", "type": "invalid_request_error", "code": "content_filter"}},
            "content_filter",
        ),
        ({"error": {"message": "Overloaded", "code": 503}}, "overloaded"),
        ({"error": "model crashed"}, "server_error"),
        ({"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}, "bad_request"),
    ],
)
def test_in_band_error_is_classified(payload: dict[str, Any], kind: str) -> None:
    """An in-band error chunk fails the stream with a class from its code, type or numeric code."""
    err = _fails(_sse(_chunk({"content": "par"}), payload))
    assert (err.kind, err.partial) == (ErrorClass(kind), "par")


def test_decoder_raises_only_mid_stream_errors() -> None:
    """Whatever bytes arrive, the decoder either finishes or raises MidStreamError, nothing else."""

    @given(st.binary(max_size=300))
    @settings(max_examples=300, deadline=None)
    def check(raw: bytes) -> None:
        with contextlib.suppress(MidStreamError):
            _decode(b"data: " + raw)

    check()


# -- chunking property -----------------------------------------------------------------------

_RECORDED = [
    ("openai_text_stream.sse", False),
    ("openai_parallel_tools.sse", False),
    ("openai_compat_reasoning.sse", True),
]


@pytest.mark.parametrize(("name", "compatible"), _RECORDED)
@pytest.mark.parametrize("crlf", [False, True])
def test_any_chunking_gives_the_single_chunk_events(name: str, compatible: bool, crlf: bool) -> None:
    """However the byte stream is split into chunks (LF or CRLF lines), the events equal the one-chunk parse."""
    raw = _recorded(name)
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    expected = _decode(raw, compatible=compatible)

    @given(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=40))
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def check(cuts: list[int]) -> None:
        assert _decode(raw, compatible=compatible, pieces=cuts) == expected

    check()


def test_any_chunking_of_a_cut_stream_gives_the_same_error() -> None:
    """A stream cut mid-event fails the same way (kind and partial) however it was chunked."""
    whole = _recorded("openai_text_stream.sse")
    raw = whole[: whole.index(b"[DONE]") - 300]

    @given(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=30))
    @settings(max_examples=100, deadline=None)
    def check(cuts: list[int]) -> None:
        with pytest.raises(MidStreamError) as info:
            _decode(raw, pieces=cuts)
        assert (info.value.kind, info.value.partial) == (ErrorClass.SERVER_ERROR, "Bonjour, ça va ? 👋")

    check()


# -- non-streamed responses ------------------------------------------------------------------


def _completion(message: dict[str, Any], finish: str | None = "stop", usage: dict[str, Any] | None = None) -> bytes:
    body = {
        "id": "chatcmpl-y",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "logprobs": None, "finish_reason": finish}
        ],
        "usage": usage or _usage(1200, 40, cached=1024),
        "service_tier": "default",
    }
    return json.dumps(body).encode()


def test_completion_body_gives_the_stream_end_events() -> None:
    """A chat.completion body decodes to its whole text, usage (cached split out) and finish."""
    body = _completion({"content": "Hi there", "refusal": None, "annotations": []})
    from openai.types.chat import ChatCompletion

    assert ChatCompletion.model_validate_json(body).choices[0].message.content == "Hi there"
    assert _codec().decode_response(body, MODEL) == [
        TextDelta("Hi there"),
        UsageEvent(Usage(input_tokens=176, output_tokens=40, cache_read_tokens=1024)),
        Finish("stop", provider_reason="stop", served_model=MODEL),
    ]


def test_completion_with_tool_calls_and_reasoning() -> None:
    """Reasoning, tool calls and the tool_calls finish of a body come out as thinking and done events."""
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    body = _completion({"content": None, "reasoning_content": "think", "tool_calls": calls}, "tool_calls")
    events = _codec(compatible=True).decode_response(body, MODEL)
    assert events[:3] == [
        ThinkingDelta("think"),
        ToolCallDone(0, "call_a", "f", '{"a":1}'),
        ToolCallDone(1, "call_b", "g", "{}"),
    ]
    assert events[-1] == Finish("tool_calls", provider_reason="tool_calls", served_model=MODEL)


def test_completion_with_legacy_function_call() -> None:
    """A legacy function_call message is tool call 0 and finishes as tool_calls."""
    body = _completion({"content": None, "function_call": {"name": "f", "arguments": "{}"}}, "function_call")
    events = _codec().decode_response(body, MODEL)
    assert events[0] == ToolCallDone(0, "call_0", "f", "{}")
    assert events[-1] == Finish("tool_calls", provider_reason="function_call", served_model=MODEL)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"<html>502</html>", ErrorClass.SERVER_ERROR),
        (b'{"id":"x","choices":[]}', ErrorClass.SERVER_ERROR),
        (b'{"error":{"message":"ctx","code":"context_length_exceeded"}}', ErrorClass.CONTEXT_LENGTH),
    ],
)
def test_bad_completion_body_raises_provider_error(body: bytes, kind: ErrorClass) -> None:
    """A body that is not JSON, has no choices, or carries an error raises a typed ProviderError."""
    with pytest.raises(ProviderError) as info:
        _codec().decode_response(body, MODEL)
    assert (info.value.kind, info.value.provider, info.value.model) == (kind, "openai", MODEL)


# -- error classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "bad_request"),
        (401, "auth"),
        (403, "auth"),
        (404, "bad_request"),
        (408, "timeout"),
        (413, "bad_request"),
        (418, "bad_request"),
        (422, "bad_request"),
        (402, "quota"),
        (429, "rate_limit"),
        (500, "server_error"),
        (501, "server_error"),
        (502, "server_error"),
        (503, "overloaded"),
        (504, "timeout"),
        (529, "overloaded"),
        (599, "server_error"),
    ],
)
def test_status_table(status: int, kind: str) -> None:
    """Each HTTP status maps to its error class, with provider, model and status filled in."""
    body = b'{"error":{"message":"nope","type":"some_type","param":null,"code":null}}'
    err = _codec().classify(status, {}, body, MODEL)
    assert (err.kind, err.status, err.provider, err.model) == (ErrorClass(kind), status, "openai", MODEL)
    assert err.detail == "some_type: nope"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}, "context_length"),
        ({"message": "refused", "type": "invalid_request_error", "code": "content_policy_violation"}, "content_policy"),
        ({"message": "filtered", "type": "invalid_request_error", "code": "content_filter"}, "content_policy"),
        ({"message": "bad param", "type": "invalid_request_error", "code": "invalid_value"}, "bad_request"),
    ],
)
def test_400_refined_by_error_code(error: dict[str, Any], kind: str) -> None:
    """A 400's error code picks context_length or content_policy; any other code stays bad_request."""
    err = _codec().classify(400, {}, json.dumps({"error": error}).encode(), MODEL)
    assert err.kind is ErrorClass(kind)
    assert err.detail == f"{error['code']}: {error['message']}"


def test_insufficient_quota_is_quota_without_a_retry_hint() -> None:
    """A 429 whose error type or code is insufficient_quota is quota, and its Retry-After is not a hint."""
    for code in ("insufficient_quota", None):
        error = {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": code}
        err = _codec().classify(429, {"retry-after": "20"}, json.dumps({"error": error}).encode(), MODEL)
        assert (err.kind, err.retry_after, err.status) == (ErrorClass.QUOTA, None, 429)


def test_retry_after_seconds_on_rate_limit() -> None:
    """A 429's retry-after header becomes retry_after in seconds."""
    err = _codec().classify(429, {"Retry-After": "7"}, b"{}", MODEL)
    assert (err.kind, err.retry_after) == (ErrorClass.RATE_LIMIT, 7.0)


def test_retry_after_ms_wins_over_seconds() -> None:
    """retry-after-ms is more precise than retry-after and wins."""
    err = _codec().classify(429, {"retry-after-ms": "1500", "retry-after": "2"}, b"{}", MODEL)
    assert err.retry_after == 1.5


def test_retry_after_on_overloaded_but_not_on_bad_request() -> None:
    """A retry hint rides on retryable classes only; a 400 never carries one."""
    headers = {"retry-after": "3"}
    assert _codec().classify(503, headers, b"", MODEL).retry_after == 3.0
    assert _codec().classify(400, headers, b"", MODEL).retry_after is None


def test_non_json_error_body_detail_is_truncated() -> None:
    """A non-JSON error body goes into detail cut to about 200 characters."""
    err = _codec().classify(502, {}, b"<html>" + b"x" * 1000 + b"</html>", None)
    assert err.detail.startswith("<html>xxx")
    assert len(err.detail) == 200
    assert err.model is None


def test_ollama_string_error_body() -> None:
    """An error body of the form {"error": "text"} gives its text as detail."""
    err = _codec(compatible=True).classify(404, {}, b'{"error":"model \\"llama9\\" not found"}', "llama9")
    assert (err.kind, err.detail) == (ErrorClass.BAD_REQUEST, 'model "llama9" not found')


# -- secrets ---------------------------------------------------------------------------------


def test_key_never_in_reprs() -> None:
    """Neither the codec's repr nor a wire request's repr shows the API key."""
    codec = OpenAICodec("openai", Secret(KEY), extra_headers={"OpenAI-Organization": "org-123"})
    wire = codec.encode(_ask(), MODEL, stream=True)
    assert wire.headers["Authorization"] == f"Bearer {KEY}"
    for text in (repr(codec), str(codec), repr(wire), repr(codec.probe_request())):
        assert KEY not in text
    assert "org-123" not in repr(codec)


def test_key_echoed_by_server_is_redacted_from_errors() -> None:
    """A server error that echoes the key has it replaced, in HTTP and in-band errors alike."""
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}})
    err = _codec().classify(401, {}, body.encode(), MODEL)
    assert err.kind is ErrorClass.AUTH
    assert KEY not in str(err)
    assert "****" in err.detail
    in_band = _fails(_sse(json.loads(body)))
    assert in_band.kind is ErrorClass.AUTH
    assert KEY not in str(in_band)
    raw = b"Bearer " + KEY.encode()
    assert KEY not in str(_codec().classify(500, {}, raw, MODEL))


# -- request encoding ------------------------------------------------------------------------


def test_stream_request_shape_and_headers() -> None:
    """A streamed request posts to /chat/completions with stream options, bearer auth and SSE accept."""
    wire = _codec().encode(_ask(max_tokens=64), MODEL, stream=True)
    assert (wire.method, wire.path) == ("POST", "/chat/completions")
    assert wire.headers["Accept"] == "text/event-stream"
    assert wire.headers["Content-Type"] == "application/json"
    assert json.loads(wire.body) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_non_stream_request_has_no_stream_fields() -> None:
    """A whole-response request sends neither stream nor stream_options."""
    body = _body(_ask())
    assert "stream" not in body
    assert "stream_options" not in body


def test_compatible_mode_uses_max_tokens() -> None:
    """Compatible servers get the older max_tokens field instead of max_completion_tokens."""
    body = _body(_ask(max_tokens=64), compatible=True)
    assert body["max_tokens"] == 64
    assert "max_completion_tokens" not in body


def test_no_key_no_authorization_and_extra_headers_kept() -> None:
    """Without a key no Authorization header is sent; configured extra headers are."""
    codec = OpenAICodec("local", None, compatible=True, extra_headers={"HTTP-Referer": "https://x.test"})
    wire = codec.encode(_ask(), "llama3", stream=False)
    assert "Authorization" not in wire.headers
    assert wire.headers["HTTP-Referer"] == "https://x.test"
    assert wire.headers["Accept"] == "application/json"


def test_probe_is_get_models() -> None:
    """The health probe lists models, authenticated."""
    probe = _codec().probe_request()
    assert (probe.method, probe.path, probe.body) == ("GET", "/models", b"")
    assert probe.headers["Authorization"] == f"Bearer {KEY}"


def test_sampling_fields() -> None:
    """temperature, top_p, stop and seed pass through; unset ones are not sent."""
    body = _body(_ask(temperature=0.2, top_p=0.9, stop=("END", "##"), seed=42))
    assert (body["temperature"], body["top_p"], body["stop"], body["seed"]) == (0.2, 0.9, ["END", "##"], 42)
    assert not {"tools", "tool_choice", "parallel_tool_calls", "response_format"} & body.keys()


def test_tools_and_tool_choice_modes() -> None:
    """Tools are function tools; tool_choice modes and parallel_tool_calls pass through when tools exist."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = (ToolSpec("get_weather", "Weather now", schema), ToolSpec("ping"))
    for mode in ("auto", "none", "required"):
        body = _body(_ask(tools=tools, tool_choice=ToolChoiceMode(mode), parallel_tool_calls=False))  # type: ignore[arg-type]
        assert body["tool_choice"] == mode
        assert body["parallel_tool_calls"] is False
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": schema}},
        {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}},
    ]


def test_named_tool_choice() -> None:
    """A named tool choice forces that function."""
    body = _body(_ask(tools=(ToolSpec("f"),), tool_choice=ToolChoiceNamed("f")))
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}


def test_named_tool_choice_for_unknown_tool_is_a_request_error() -> None:
    """Naming a tool the request does not offer is rejected before anything is sent."""
    with pytest.raises(RequestError) as info:
        _codec().encode(_ask(tools=(ToolSpec("f"),), tool_choice=ToolChoiceNamed("g")), MODEL, stream=False)
    assert info.value.field == "tool_choice"


def test_tool_options_dropped_without_tools() -> None:
    """OpenAI rejects tool_choice and parallel_tool_calls without tools, so they are not sent."""
    body = _body(_ask(tool_choice=ToolChoiceMode("auto"), parallel_tool_calls=True))
    assert not {"tool_choice", "parallel_tool_calls"} & body.keys()


def test_response_formats() -> None:
    """json_object and json_schema (name, schema, strict) map to response_format; text sends none."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert _body(_ask(response_format=JsonObjectFormat()))["response_format"] == {"type": "json_object"}
    assert _body(_ask(response_format=JsonSchemaFormat("answer", schema, strict=False)))["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": False},
    }
    assert "response_format" not in _body(_ask(response_format=TextFormat()))


def test_images_by_url_and_base64() -> None:
    """Images go as image_url parts: a URL as is, base64 data as a data: URL with its media type."""
    message = Message(
        role="user",
        content=(
            TextPart("What is in these?"),
            ImagePart(url="https://example.test/cat.png"),
            ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
        ),
    )
    assert _body(_ask(message))["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


def test_tool_conversation_round_trip() -> None:
    """Assistant tool calls and their results (tool or user messages) become tool_calls and role tool turns."""
    messages = (
        Message.text("system", "Be brief."),
        Message.text("user", "Weather in Paris and Rome?"),
        Message(
            role="assistant",
            content=(
                ToolCallPart("call_1", "get_weather", '{"city":"Paris"}'),
                ToolCallPart("call_2", "get_weather", '{"city":"Rome"}'),
            ),
        ),
        Message(role="tool", content=(ToolResultPart("call_1", "18C"),)),
        Message(role="user", content=(ToolResultPart("call_2", "timeout", is_error=True), TextPart("And?"))),
    )
    assert _body(_ask(*messages))["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_1",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "type": "function",
                    "id": "call_2",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
        {"role": "tool", "content": "Error: timeout", "tool_call_id": "call_2"},
        {"role": "user", "content": "And?"},
    ]


def test_assistant_text_with_tool_call() -> None:
    """An assistant turn keeps its text next to its tool calls."""
    message = Message(role="assistant", content=(TextPart("Let me check."), ToolCallPart("c", "f", "{}")))
    wire = _body(_ask(message))["messages"][0]
    assert (wire["content"], wire["tool_calls"][0]["id"]) == ("Let me check.", "c")


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (Message(role="system", content=(ImagePart(url="https://x.test/a.png"),)), "messages[0].content"),
        (Message(role="user", content=(ToolCallPart("c", "f", "{}"),)), "messages[0].content"),
        (Message(role="assistant", content=(ToolResultPart("c", "r"),)), "messages[0].content"),
        (Message(role="tool", content=(TextPart("loose text"),)), "messages[0].content"),
        (Message(role="user", content=(ImagePart(),)), "messages[0].content[0]"),
    ],
)
def test_unsendable_messages_are_request_errors(message: Message, field: str) -> None:
    """Parts the wire cannot carry in that role raise RequestError naming the field."""
    with pytest.raises(RequestError) as info:
        _codec().encode(_ask(message), MODEL, stream=False)
    assert info.value.field == field


def test_request_body_is_valid_json_for_the_sdk_types() -> None:
    """The encoded body has only keys that openai-python's create() parameters declare."""
    from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming as Params

    request = _ask(
        tools=(ToolSpec("f"),),
        tool_choice=ToolChoiceMode("auto"),
        parallel_tool_calls=True,
        response_format=JsonObjectFormat(),
        temperature=0.1,
        top_p=1.0,
        stop=("x",),
        seed=1,
        max_tokens=5,
    )
    body = msgspec.json.decode(_codec().encode(request, MODEL, stream=True).body)
    assert set(body) <= Params.__required_keys__ | Params.__optional_keys__
