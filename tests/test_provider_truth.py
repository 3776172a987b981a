"""What the three provider decoders say about refusals, finish reasons, served models and usage.

Each dialect's documented wire is written out inline: OpenAI ``chat.completion.chunk`` data lines
ending in ``data: [DONE]`` (a refusal as ``delta.refusal``, usage in a last chunk with no choices,
an in-band ``{"error": ...}`` chunk); Anthropic's named Messages events (``stop_reason:
"refusal"``, ``event: error``); Gemini's ``alt=sse`` data lines with CRLF (``finishReason:
"SAFETY"``, ``promptFeedback.blockReason``, an ``{"error": ...}`` chunk). Every stream is fed
whole, one byte per chunk, cut inside every multi-byte UTF-8 character and cut inside every
``data:`` line, and must decode the same way. Then each dialect goes once through a real
loopback simulator scripted with ``Refusal``, ``NoUsage`` and ``ErrorAfterUsage``.

What must hold: a refusal is ``RefusalDelta`` and never text; every ``Finish`` keeps the
provider's raw reason and the model the response names; a stream without usage has no
``UsageEvent`` (unknown, not zeros); usage reported before a failure rides on the error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from loopback import adapter, run

from interlock._errors import ErrorClass, MidStreamError, ProviderError
from interlock._secret import Secret
from interlock._types import (
    Finish,
    RefusalDelta,
    StreamEvent,
    TextDelta,
    Usage,
    UsageEvent,
)
from interlock.adapters.providers._codec import Codec
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.providers.gemini._codec import GeminiCodec
from interlock.adapters.providers.openai._codec import OpenAICodec
from interlock.adapters.simulator._server import (
    Behaviour,
    ErrorAfterUsage,
    Fixed,
    NoUsage,
    Refusal,
    SimConfig,
    Simulator,
)

KEY = Secret("sk-TESTKEY-0123456789abcdefghij")
OPENAI_MODEL = "gpt-4o-2024-08-06"
CLAUDE_MODEL = "claude-sonnet-4-5-20250929"
GEMINI_MODEL = "gemini-2.5-flash-preview-05-20"
REFUSAL = ["I'm sorry, ", "I can't help with that — désolé 🙅."]
TEXT = ["Voilà, ", "the first part — ", "naïve 👋"]


# -- adversarial chunking --------------------------------------------------------------------


def _whole(raw: bytes) -> list[int]:
    return []


def _bytes(raw: bytes) -> list[int]:
    return list(range(1, len(raw)))


def _inside_utf8(raw: bytes) -> list[int]:
    """A cut before every continuation byte: each multi-byte character is split."""
    cuts = [i for i, b in enumerate(raw) if b & 0xC0 == 0x80]
    assert cuts, "the stream must hold multi-byte characters for this cut to mean anything"
    return cuts


def _inside_data(raw: bytes) -> list[int]:
    """Cuts inside every ``data:`` field name and in the middle of every data line."""
    cuts: list[int] = []
    at = raw.find(b"data:")
    while at >= 0:
        end = raw.find(b"\n", at)
        cuts += [at + 2, (at + end) // 2]
        at = raw.find(b"data:", at + 1)
    assert cuts
    return sorted(set(cuts))


CUTS: dict[str, Callable[[bytes], list[int]]] = {
    "whole": _whole,
    "byte_by_byte": _bytes,
    "inside_utf8": _inside_utf8,
    "inside_data_line": _inside_data,
}


@pytest.fixture(params=sorted(CUTS))
def cut(request: pytest.FixtureRequest) -> Callable[[bytes], list[int]]:
    """One way to split a body into network chunks."""
    return CUTS[str(request.param)]


def feed(codec: Codec, raw: bytes, cuts: list[int], model: str) -> tuple[list[StreamEvent], ProviderError | None]:
    """Every event the codec's stream decoder gives for ``raw`` split at ``cuts``, and the error that ended it."""
    decoder = codec.stream_decoder(model)
    events: list[StreamEvent] = []
    start = 0
    try:
        for end in [*cuts, len(raw)]:
            events += decoder.feed(raw[start:end])
            start = end
        events += decoder.close()
    except ProviderError as err:
        return events, err
    return events, None


def texts(events: list[StreamEvent], kind: type[TextDelta] | type[RefusalDelta]) -> str:
    return "".join(e.text for e in events if isinstance(e, kind))


def usages(events: list[StreamEvent]) -> list[Usage]:
    return [e.usage for e in events if isinstance(e, UsageEvent)]


def finish_of(events: list[StreamEvent]) -> Finish:
    finishes = [e for e in events if isinstance(e, Finish)]
    assert len(finishes) == 1
    assert events[-1] is finishes[0]
    return finishes[0]


# -- OpenAI ------------------------------------------------------------------------------------


def _oa(delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, Any] | None = None) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    chunk = {
        "id": "chatcmpl-9xyz",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": OPENAI_MODEL,
        "system_fingerprint": "fp_50cad350e4",
        "choices": choices,
        "usage": usage,
    }
    return "data: " + json.dumps(chunk, ensure_ascii=False) + "\n\n"


OA_USAGE = {
    "prompt_tokens": 40,
    "completion_tokens": 12,
    "total_tokens": 52,
    "prompt_tokens_details": {"cached_tokens": 16, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
OA_HEAD = _oa({"role": "assistant", "content": None, "refusal": ""})
OA_DONE = "data: [DONE]\n\n"


def _openai_stream(*body: str) -> bytes:
    return "".join(body).encode()


def test_openai_refusal_stream_is_refusal_not_text(cut: Callable[[bytes], list[int]]) -> None:
    """``delta.refusal`` fragments are ``RefusalDelta``s; the text channel and the partial text stay empty."""
    raw = _openai_stream(
        OA_HEAD, *(_oa({"refusal": r}) for r in REFUSAL), _oa({}, "stop"), _oa(None, usage=OA_USAGE), OA_DONE
    )
    codec = OpenAICodec("openai", KEY)
    events, error = feed(codec, raw, cut(raw), "gpt-4o")
    assert error is None
    assert texts(events, RefusalDelta) == "".join(REFUSAL)
    assert not [e for e in events if isinstance(e, TextDelta)]
    assert usages(events) == [Usage(input_tokens=24, output_tokens=12, cache_read_tokens=16)]
    assert finish_of(events) == Finish("stop", provider_reason="stop", served_model=OPENAI_MODEL)


@pytest.mark.parametrize(
    ("raw_reason", "mapped"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("something_new", "stop"),
    ],
)
def test_openai_finish_keeps_the_raw_reason(raw_reason: str, mapped: str) -> None:
    """The raw ``finish_reason`` rides beside the mapped one, even one the table does not know."""
    raw = _openai_stream(OA_HEAD, _oa({"content": "ok"}), _oa({}, raw_reason), OA_DONE)
    events, error = feed(OpenAICodec("openai", KEY, compatible=True), raw, [], "gpt-4o")
    assert error is None
    assert finish_of(events) == Finish(mapped, provider_reason=raw_reason, served_model=OPENAI_MODEL)  # type: ignore[arg-type]


def test_openai_stream_without_usage_has_no_usage_event(cut: Callable[[bytes], list[int]]) -> None:
    """A stream that never sent a usage chunk (``usage: null`` throughout) reports no usage, not zeros."""
    raw = _openai_stream(OA_HEAD, *(_oa({"content": t}) for t in TEXT), _oa({}, "stop"), OA_DONE)
    events, error = feed(OpenAICodec("openai", KEY), raw, cut(raw), "gpt-4o")
    assert error is None
    assert texts(events, TextDelta) == "".join(TEXT)
    assert usages(events) == []
    assert finish_of(events) == Finish("stop", provider_reason="stop", served_model=OPENAI_MODEL)


def test_openai_error_after_usage_keeps_the_usage(cut: Callable[[bytes], list[int]]) -> None:
    """An in-band error after usage chunks (vLLM's continuous usage) raises with the last usage and the partial text."""
    running = [dict(OA_USAGE, completion_tokens=i + 1) for i in range(len(TEXT))]
    error_chunk = {
        "error": {
            "message": "The server had an error — réessayez.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    raw = _openai_stream(
        OA_HEAD,
        *(_oa({"content": t}, usage=u) for t, u in zip(TEXT, running, strict=True)),
        "data: " + json.dumps(error_chunk, ensure_ascii=False) + "\n\n",
    )
    events, error = feed(OpenAICodec("openai", KEY), raw, cut(raw), "gpt-4o")
    assert isinstance(error, MidStreamError)
    assert error.kind is ErrorClass.SERVER_ERROR
    assert error.usage == Usage(input_tokens=24, output_tokens=len(TEXT), cache_read_tokens=16)
    assert error.partial == texts(events, TextDelta) == "".join(TEXT)
    assert usages(events) == []  # usage of a failed stream is on the error, never an event


def test_openai_error_before_any_usage_has_none() -> None:
    """An in-band error before any usage carries ``usage=None``: nothing was reported."""
    failure = 'data: {"error":{"message":"boom","type":"server_error"}}\n\n'
    raw = _openai_stream(OA_HEAD, _oa({"content": "hi"}), failure)
    _, error = feed(OpenAICodec("openai", KEY), raw, [], "gpt-4o")
    assert isinstance(error, MidStreamError)
    assert error.usage is None


def _oa_body(message: dict[str, Any], finish: str, usage: dict[str, Any] | None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-9xyz",
        "object": "chat.completion",
        "created": 1741569952,
        "model": OPENAI_MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "logprobs": None, "finish_reason": finish}
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body, ensure_ascii=False).encode()


def test_openai_body_refusal_and_usage() -> None:
    """``message.refusal`` of a whole body is a ``RefusalDelta``; usage and the raw reason are kept."""
    body = _oa_body({"content": None, "refusal": "".join(REFUSAL)}, "stop", OA_USAGE)
    events = OpenAICodec("openai", KEY).decode_response(body, "gpt-4o")
    assert [e for e in events if isinstance(e, RefusalDelta | TextDelta)] == [RefusalDelta("".join(REFUSAL))]
    assert usages(events) == [Usage(input_tokens=24, output_tokens=12, cache_read_tokens=16)]
    assert finish_of(events) == Finish("stop", provider_reason="stop", served_model=OPENAI_MODEL)


def test_openai_body_without_usage_has_no_usage_event() -> None:
    """A body without ``usage`` (some compatible servers) gives no ``UsageEvent``."""
    events = OpenAICodec("openai", KEY).decode_response(_oa_body({"content": "hi"}, "length", None), "gpt-4o")
    assert usages(events) == []
    assert finish_of(events) == Finish("length", provider_reason="length", served_model=OPENAI_MODEL)


# -- Anthropic ---------------------------------------------------------------------------------


def _an(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data}, ensure_ascii=False)}\n\n"


def _an_start(usage: dict[str, Any] | None) -> str:
    message: dict[str, Any] = {
        "id": "msg_01XFD",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE_MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage is not None:
        message["usage"] = usage
    return _an("message_start", {"message": message})


AN_USAGE = {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 7, "output_tokens": 1}


def _anthropic_stream(stop: str, start_usage: dict[str, Any] | None, end_usage: dict[str, Any] | None) -> bytes:
    end: dict[str, Any] = {"delta": {"stop_reason": stop, "stop_sequence": None}}
    if end_usage is not None:
        end["usage"] = end_usage
    return "".join(
        [
            _an_start(start_usage),
            _an("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            _an("ping", {}),
            *(_an("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": t}}) for t in TEXT),
            _an("content_block_stop", {"index": 0}),
            _an("message_delta", end),
            _an("message_stop", {}),
        ]
    ).encode()


def test_anthropic_refusal_is_content_filter_and_text_stays_text(cut: Callable[[bytes], list[int]]) -> None:
    """``stop_reason: "refusal"`` is ``content_filter`` with the raw reason; what was streamed before stays text."""
    raw = _anthropic_stream("refusal", AN_USAGE, {"output_tokens": 9})
    events, error = feed(AnthropicCodec("anthropic", KEY), raw, cut(raw), "claude-sonnet-4-5")
    assert error is None
    assert texts(events, TextDelta) == "".join(TEXT)
    assert not [e for e in events if isinstance(e, RefusalDelta)]
    assert usages(events) == [Usage(input_tokens=25, output_tokens=9, cache_read_tokens=7)]
    assert finish_of(events) == Finish("content_filter", provider_reason="refusal", served_model=CLAUDE_MODEL)


@pytest.mark.parametrize(
    ("raw_reason", "mapped"),
    [
        ("end_turn", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("pause_turn", "stop"),
        ("stop_sequence", "stop"),
    ],
)
def test_anthropic_finish_keeps_the_raw_reason(raw_reason: str, mapped: str) -> None:
    """Every stop reason travels raw beside the mapped one."""
    raw = _anthropic_stream(raw_reason, AN_USAGE, {"output_tokens": 3})
    events, _ = feed(AnthropicCodec("anthropic", KEY), raw, [], "claude")
    assert finish_of(events) == Finish(mapped, provider_reason=raw_reason, served_model=CLAUDE_MODEL)  # type: ignore[arg-type]


def test_anthropic_stream_without_usage_has_no_usage_event(cut: Callable[[bytes], list[int]]) -> None:
    """A Messages stream whose events carry no ``usage`` (a compatible server) reports none."""
    raw = _anthropic_stream("end_turn", None, None)
    events, error = feed(AnthropicCodec("anthropic", KEY), raw, cut(raw), "claude")
    assert error is None
    assert usages(events) == []
    assert finish_of(events) == Finish("stop", provider_reason="end_turn", served_model=CLAUDE_MODEL)


def test_anthropic_error_event_after_usage_keeps_the_usage(cut: Callable[[bytes], list[int]]) -> None:
    """``event: error`` after ``message_start``'s usage raises ``overloaded`` with that usage and the partial text."""
    raw = "".join(
        [
            _an_start(AN_USAGE),
            _an("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            *(_an("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": t}}) for t in TEXT),
            _an("error", {"error": {"type": "overloaded_error", "message": "Overloaded — réessayez"}}),
        ]
    ).encode()
    events, error = feed(AnthropicCodec("anthropic", KEY), raw, cut(raw), "claude")
    assert isinstance(error, MidStreamError)
    assert error.kind is ErrorClass.OVERLOADED
    assert error.usage == Usage(input_tokens=25, output_tokens=1, cache_read_tokens=7)
    assert error.partial == texts(events, TextDelta) == "".join(TEXT)


def test_anthropic_body_refusal_served_model_and_missing_usage() -> None:
    """A whole Message keeps its raw stop reason and model; without ``usage`` it reports none."""
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE_MODEL,
        "content": [{"type": "text", "text": "Je ne peux pas"}],
        "stop_reason": "refusal",
        "stop_sequence": None,
    }
    codec = AnthropicCodec("anthropic", KEY)
    events = codec.decode_response(json.dumps(message).encode(), "claude")
    assert usages(events) == []
    assert finish_of(events) == Finish("content_filter", provider_reason="refusal", served_model=CLAUDE_MODEL)
    events = codec.decode_response(json.dumps({**message, "usage": AN_USAGE}).encode(), "claude")
    assert usages(events) == [Usage(input_tokens=25, output_tokens=1, cache_read_tokens=7)]


# -- Gemini ------------------------------------------------------------------------------------

G_USAGE = {"promptTokenCount": 30, "cachedContentTokenCount": 10, "candidatesTokenCount": 4, "totalTokenCount": 34}


def _ge(body: dict[str, Any]) -> str:
    return (
        "data: "
        + json.dumps({"modelVersion": GEMINI_MODEL, "responseId": "abc123", **body}, ensure_ascii=False)
        + "\r\n\r\n"
    )


def _ge_text(text: str, usage: dict[str, Any] | None = None) -> str:
    body: dict[str, Any] = {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}]}
    if usage is not None:
        body["usageMetadata"] = usage
    return _ge(body)


def _ge_end(reason: str, usage: dict[str, Any] | None) -> str:
    candidate: dict[str, Any] = {"finishReason": reason, "index": 0}
    if reason != "STOP":
        candidate["safetyRatings"] = [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
        ]
    body: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        body["usageMetadata"] = usage
    return _ge(body)


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"])
def test_gemini_safety_stops_are_content_filter_with_the_raw_reason(
    reason: str, cut: Callable[[bytes], list[int]]
) -> None:
    """A safety-family ``finishReason`` is ``content_filter``; the raw value and ``modelVersion`` ride on the Finish."""
    raw = ("".join(_ge_text(t, G_USAGE) for t in TEXT) + _ge_end(reason, G_USAGE)).encode()
    events, error = feed(GeminiCodec("gemini", KEY), raw, cut(raw), "gemini-2.5-flash")
    assert error is None
    assert texts(events, TextDelta) == "".join(TEXT)
    assert usages(events) == [Usage(input_tokens=20, output_tokens=4, cache_read_tokens=10)]
    assert finish_of(events) == Finish("content_filter", provider_reason=reason, served_model=GEMINI_MODEL)


def test_gemini_stream_without_usage_has_no_usage_event(cut: Callable[[bytes], list[int]]) -> None:
    """No chunk with ``usageMetadata``: no ``UsageEvent``; the raw ``STOP`` is kept."""
    raw = ("".join(_ge_text(t) for t in TEXT) + _ge_end("STOP", None)).encode()
    events, error = feed(GeminiCodec("gemini", KEY), raw, cut(raw), "gemini-2.5-flash")
    assert error is None
    assert usages(events) == []
    assert finish_of(events) == Finish("stop", provider_reason="STOP", served_model=GEMINI_MODEL)


def test_gemini_error_chunk_after_usage_keeps_the_usage(cut: Callable[[bytes], list[int]]) -> None:
    """An ``{"error": ...}`` chunk after chunks with ``usageMetadata`` raises with the last usage reported."""
    error = {"error": {"code": 503, "message": "The model is overloaded — réessayez.", "status": "UNAVAILABLE"}}
    raw = ("".join(_ge_text(t, G_USAGE) for t in TEXT) + "data: " + json.dumps(error) + "\r\n\r\n").encode()
    events, failure = feed(GeminiCodec("gemini", KEY), raw, cut(raw), "gemini-2.5-flash")
    assert isinstance(failure, MidStreamError)
    assert failure.kind is ErrorClass.OVERLOADED
    assert failure.usage == Usage(input_tokens=20, output_tokens=4, cache_read_tokens=10)
    assert failure.partial == texts(events, TextDelta) == "".join(TEXT)


def test_gemini_blocked_prompt_keeps_its_usage(cut: Callable[[bytes], list[int]]) -> None:
    """``promptFeedback.blockReason`` with no candidates is ``content_policy``, carrying the prompt's usage."""
    blocked = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    }
    raw = _ge({**blocked, "note": "déjà"}).encode()  # an unknown member holding a multi-byte character
    codec = GeminiCodec("gemini", KEY)
    events, error = feed(codec, raw, cut(raw), "gemini-2.5-flash")
    assert events == []
    assert error is not None
    assert error.kind is ErrorClass.CONTENT_POLICY
    assert error.usage == Usage(input_tokens=9)
    with pytest.raises(ProviderError) as info:
        codec.decode_response(json.dumps(blocked).encode(), "gemini-2.5-flash")
    assert info.value.kind is ErrorClass.CONTENT_POLICY
    assert info.value.usage == Usage(input_tokens=9)


def test_gemini_body_keeps_model_version_and_reports_no_missing_usage() -> None:
    """A whole ``generateContent`` body: ``modelVersion`` and the raw reason kept; no usage, no ``UsageEvent``."""
    body = {
        "candidates": [
            {"content": {"parts": [{"text": "salut"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}
        ],
        "modelVersion": GEMINI_MODEL,
    }
    events = GeminiCodec("gemini", KEY).decode_response(json.dumps(body).encode(), "gemini-2.5-flash")
    assert usages(events) == []
    assert finish_of(events) == Finish("length", provider_reason="MAX_TOKENS", served_model=GEMINI_MODEL)


# -- through a real loopback simulator ---------------------------------------------------------

SERVED = "sim-model-2025-01-01"
SIM = SimConfig(default=Behaviour(output_tokens=Fixed(6), served_model=SERVED))


def _codec(dialect: str) -> tuple[Codec, str]:
    if dialect == "anthropic":
        return AnthropicCodec("anthropic", KEY), ""
    if dialect == "gemini":
        return GeminiCodec("gemini", KEY), ""
    return OpenAICodec("openai", KEY), "/v1"


_REFUSED = {
    "openai": ("stop", "stop"),
    "anthropic": ("content_filter", "refusal"),
    "gemini": ("content_filter", "SAFETY"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("stream", [True, False])
async def test_simulator_refusal_no_usage_and_error_after_usage(dialect: str, stream: bool) -> None:
    """The simulator's ``Refusal``, ``NoUsage`` and ``ErrorAfterUsage`` read back as each dialect documents them."""
    codec, suffix = _codec(dialect)
    async with Simulator(SIM) as sim, adapter(sim.url + suffix, codec) as made:
        sim.script("sim-x", [Refusal(after_tokens=2), NoUsage(), ErrorAfterUsage(after_tokens=3, status=503)])
        refused, error = await run(made, "sim-x", stream=stream)
        assert error is None
        mapped, raw_reason = _REFUSED[dialect]
        assert finish_of(refused) == Finish(mapped, provider_reason=raw_reason, served_model=SERVED)  # type: ignore[arg-type]
        assert len(texts(refused, TextDelta).split()) == 2
        assert texts(refused, RefusalDelta) == (Refusal().text if dialect == "openai" else "")
        assert len(usages(refused)) == 1

        plain, error = await run(made, "sim-x", stream=stream)
        assert error is None
        assert usages(plain) == []
        assert len(texts(plain, TextDelta).split()) == 6
        assert finish_of(plain).served_model == SERVED

        broken, error = await run(made, "sim-x", stream=stream)
        assert error is not None
        assert error.kind is ErrorClass.OVERLOADED
        if stream:
            assert isinstance(error, MidStreamError)
            assert error.partial == texts(broken, TextDelta)
            assert len(error.partial.split()) == 3
            assert error.usage is not None
            assert error.usage.total_input_tokens > 0
        else:
            assert error.status == 503
            assert error.usage is None
        assert sim.stats("sim-x").faults == {"refusal": 1, "no_usage": 1, "error_after_usage": 1}
