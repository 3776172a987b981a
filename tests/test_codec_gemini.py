"""Tests of the Gemini codec: byte streams in the wire format, request encoding, schema dialect, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlock._errors import ErrorClass, MidStreamError, ProviderError, RequestError
from interlock._secret import Secret
from interlock._types import (
    ChatRequest,
    Finish,
    FinishReason,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCall,
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
from interlock.adapters.providers._codec import Codec, StreamDecoder
from interlock.adapters.providers.gemini._codec import GeminiCodec
from interlock.adapters.providers.gemini._schema import to_gemini_schema

DATA = Path(__file__).parent / "data"
KEY = "AIzaSyD-SECRETSECRETSECRET0123456789"
MODEL = "gemini-2.5-flash"
STREAMS = ["gemini_text_cached.sse", "gemini_thoughts.sse", "gemini_function_calls.sse"]
WEATHER = ToolSpec(
    "get_weather",
    "Current weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def codec(**kwargs: Any) -> GeminiCodec:
    """A codec with a recognisable key."""
    return GeminiCodec("gemini", Secret(KEY), **kwargs)


def recorded(name: str) -> bytes:
    """The bytes of a stream file under tests/data."""
    return (DATA / name).read_bytes()


def decode_all(chunks: list[bytes]) -> list[StreamEvent]:
    """Feed the chunks to a fresh decoder, then close it."""
    decoder = codec().stream_decoder(MODEL)
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return events + decoder.close()


def sse(*objects: object) -> bytes:
    """An SSE body with one ``data:`` event per object."""
    return b"".join(b"data: " + json.dumps(o).encode() + b"\r\n\r\n" for o in objects)


def chunk(
    parts: list[dict[str, Any]], finish: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """One GenerateContentResponse with a single candidate."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    body: dict[str, Any] = {"candidates": [candidate]}
    if usage:
        body["usageMetadata"] = usage
    return body


def body_of(request: ChatRequest, **kwargs: Any) -> dict[str, Any]:
    """The decoded JSON body of the encoded request."""
    decoded: dict[str, Any] = json.loads(codec(**kwargs).encode(request, MODEL, stream=True).body)
    return decoded


def chat(*messages: Message, **kwargs: Any) -> ChatRequest:
    """A request with the given messages and fields."""
    return ChatRequest(messages=messages, **kwargs)


# -- recorded streams ------------------------------------------------------------------------------


def test_codec_satisfies_the_protocols() -> None:
    """GeminiCodec and its decoder are structurally a Codec and a StreamDecoder."""
    c: Codec = codec()
    d: StreamDecoder = c.stream_decoder(MODEL)
    assert c.provider == "gemini"
    assert d.partial_text == ""


def test_text_stream_with_cached_usage() -> None:
    """Text parts become deltas; cached prompt tokens are split out of input; thinking counts as output."""
    events = decode_all([recorded("gemini_text_cached.sse")])
    assert events == [
        TextDelta("Bonjour"),
        TextDelta(", le monde é!"),
        UsageEvent(Usage(input_tokens=186, output_tokens=47, cache_read_tokens=1024)),
        Finish("stop", provider_reason="STOP", served_model=MODEL),
    ]


def test_thought_parts_and_signature() -> None:
    """Thought parts become ThinkingDelta text and a thoughtSignature becomes ThinkingDelta(signature)."""
    events = decode_all([recorded("gemini_thoughts.sse")])
    assert events == [
        ThinkingDelta(text="**Weighing the options**\nThe user asks"),
        ThinkingDelta(text=" for a number."),
        TextDelta("42"),
        ThinkingDelta(signature="CiQBVKhc7oKZ+sig=="),
        UsageEvent(Usage(input_tokens=12, output_tokens=26)),
        Finish("stop", provider_reason="STOP", served_model=MODEL),
    ]


def test_function_calls_arrive_whole() -> None:
    """Each functionCall gives a delta and a done carrying its thought signature; a missing id becomes
    call_<n>; STOP becomes tool_calls."""
    events = decode_all([recorded("gemini_function_calls.sse")])
    weather = '{"city": "Paris", "unit": "celsius"}'
    time = '{"tz": "Europe/Paris"}'
    assert events == [
        ToolCallDelta(0, "call_0", "get_weather", weather),
        ToolCallDone(0, "call_0", "get_weather", weather, signature="EpYDCpMDAb4+9vs="),
        ToolCallDelta(1, "fc-7", "get_time", time),
        ToolCallDone(1, "fc-7", "get_time", time),
        UsageEvent(Usage(input_tokens=88, output_tokens=21)),
        Finish("tool_calls", provider_reason="STOP", served_model=MODEL),
    ]


def test_thought_signature_is_replayed_on_the_next_turn() -> None:
    """A call's signature, sent back on its ToolCallPart, goes out as the part's thoughtSignature."""
    call = ToolCall("call_0", "get_weather", '{"city": "Paris"}', signature="sig-123")
    request = ChatRequest(
        messages=(
            Message.text("user", "weather?"),
            Message(role="assistant", content=(call.as_part(),)),
            Message(role="tool", content=(ToolResultPart("call_0", "18C"),)),
        ),
        tools=(ToolSpec("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}}),),
    )
    body = json.loads(codec().encode(request, MODEL, stream=True).body)
    model_turn = next(c for c in body["contents"] if c["role"] == "model")
    assert model_turn["parts"][0]["thoughtSignature"] == "sig-123"
    assert model_turn["parts"][0]["functionCall"]["name"] == "get_weather"


def test_function_call_without_args() -> None:
    """A call with no (or null) args has arguments ``{}``."""
    body = sse(chunk([{"functionCall": {"name": "a"}}, {"functionCall": {"name": "b", "args": None}}], "STOP"))
    done = [e for e in decode_all([body]) if isinstance(e, ToolCallDone)]
    assert [(d.name, d.arguments) for d in done] == [("a", "{}"), ("b", "{}")]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(STREAMS), cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=12))
def test_any_chunking_gives_the_same_events(name: str, cuts: list[int]) -> None:
    """However the byte stream is split into chunks, the events equal the single-chunk parse."""
    data = recorded(name)
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert decode_all(pieces) == decode_all([data])


def test_decode_response_matches_the_stream() -> None:
    """A non-streamed body decodes to the same events as the equivalent stream."""
    whole = chunk(
        [{"text": "Hi"}, {"functionCall": {"name": "f", "args": {"x": 1}}}],
        "STOP",
        {"promptTokenCount": 50, "cachedContentTokenCount": 20, "candidatesTokenCount": 5},
    )
    from_body = codec().decode_response(json.dumps(whole).encode(), MODEL)
    assert from_body == decode_all([sse(whole)])
    assert from_body[-2:] == [UsageEvent(Usage(30, 5, 20)), Finish("tool_calls", provider_reason="STOP")]


def test_decode_response_rejects_malformed_json() -> None:
    """A whole body that is not JSON is a server_error naming the provider."""
    with pytest.raises(ProviderError) as info:
        codec().decode_response(b"<html>oops", MODEL)
    assert info.value.kind is ErrorClass.SERVER_ERROR
    assert "gemini" in str(info.value)


# -- finish reasons, usage, blocking ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "canonical"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "error"),
        ("UNEXPECTED_TOOL_CALL", "error"),
        ("OTHER", "error"),
        ("LANGUAGE", "error"),
        ("SOMETHING_NEW", "error"),
    ],
)
def test_finish_reasons(wire: str, canonical: FinishReason) -> None:
    """Each documented finishReason maps to its canonical reason; unknown ones are not assumed benign."""
    events = decode_all([sse(chunk([{"text": "x"}], wire))])
    assert events[-1] == Finish(canonical, provider_reason=wire)


def test_usage_keeps_the_last_report_and_counts_tool_use_prompt() -> None:
    """Usage repeated in every chunk is not summed: the last one wins, tool-use prompt tokens are input."""
    first = chunk([{"text": "a"}], usage={"promptTokenCount": 10, "candidatesTokenCount": 1})
    last = chunk(
        [{"text": "b"}],
        "STOP",
        {"promptTokenCount": 10, "candidatesTokenCount": 2, "toolUsePromptTokenCount": 7, "thoughtsTokenCount": 3},
    )
    assert decode_all([sse(first, last)])[-2] == UsageEvent(Usage(input_tokens=17, output_tokens=5))


def test_usage_absent_is_unknown() -> None:
    """A stream that reports no usage ends with one finish and no usage event: unknown, not zeros."""
    events = decode_all([sse(chunk([{"text": "a"}], "STOP"))])
    assert events[-1] == Finish("stop", provider_reason="STOP")
    assert sum(isinstance(e, UsageEvent | Finish) for e in events) == 1


def test_usage_arriving_after_the_finish_reason_is_used() -> None:
    """Usage in a chunk after finishReason is still the one reported, and events end once."""
    usage_only = {"usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 9}}
    events = decode_all([sse(chunk([{"text": "a"}], "STOP"), usage_only)])
    assert events == [TextDelta("a"), UsageEvent(Usage(4, 9)), Finish("stop", provider_reason="STOP")]


def test_prompt_block_reason_is_content_policy() -> None:
    """promptFeedback.blockReason raises a content_policy ProviderError, streamed or not."""
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 9}}
    with pytest.raises(ProviderError) as streamed:
        codec().stream_decoder(MODEL).feed(sse(blocked))
    with pytest.raises(ProviderError) as whole:
        codec().decode_response(json.dumps(blocked).encode(), MODEL)
    for info in (streamed, whole):
        assert info.value.kind is ErrorClass.CONTENT_POLICY
        assert "PROHIBITED_CONTENT" in str(info.value)


# -- broken streams --------------------------------------------------------------------------------


def test_cut_stream_is_a_mid_stream_error_with_partial_text() -> None:
    """A body that closes before any finishReason is a server_error MidStreamError carrying the text so far."""
    decoder = codec().stream_decoder(MODEL)
    assert decoder.feed(sse(chunk([{"text": "Hello, "}]), chunk([{"text": "wor"}]))) == [
        TextDelta("Hello, "),
        TextDelta("wor"),
    ]
    with pytest.raises(MidStreamError) as info:
        decoder.close()
    assert info.value.kind is ErrorClass.SERVER_ERROR
    assert info.value.partial == "Hello, wor"
    assert info.value.model == MODEL


def test_malformed_function_call_chunk_names_provider_and_offset() -> None:
    """Bad JSON in a chunk carrying a function call is a server_error MidStreamError naming the provider and offset."""
    good = sse(chunk([{"text": "ok"}]))
    decoder = codec().stream_decoder(MODEL)
    decoder.feed(good)
    bad = b'data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {\r\n\r\n'
    with pytest.raises(MidStreamError) as info:
        decoder.feed(bad)
    assert info.value.kind is ErrorClass.SERVER_ERROR
    assert info.value.partial == "ok"
    assert "gemini" in str(info.value)
    assert str(len(good) + len(bad)) in str(info.value)


def test_in_band_error_chunk_is_classified() -> None:
    """An ``{"error": ...}`` chunk mid-stream raises a MidStreamError of the table's kind."""
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    decoder = codec().stream_decoder(MODEL)
    assert decoder.feed(sse(chunk([{"text": "par"}]), error)) == [TextDelta("par")]  # delivered first
    with pytest.raises(MidStreamError) as info:
        decoder.close()
    assert info.value.kind is ErrorClass.OVERLOADED
    assert info.value.partial == "par"


# -- request encoding ------------------------------------------------------------------------------


def test_paths_headers_and_probe() -> None:
    """Streaming and whole paths carry the version, the key rides in x-goog-api-key, probe lists models."""
    c = codec(extra_headers={"x-goog-api-client": "interlock"})
    request = chat(Message.text("user", "hi"))
    streamed = c.encode(request, "models/gemini-2.5-flash", stream=True)
    whole = c.encode(request, MODEL, stream=False)
    assert streamed.method == "POST"
    assert streamed.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert whole.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert streamed.headers == {
        "x-goog-api-client": "interlock",
        "content-type": "application/json",
        "x-goog-api-key": KEY,
    }
    probe = codec(api_version="v1").probe_request()
    assert (probe.method, probe.path, probe.headers) == ("GET", "/v1/models", {"x-goog-api-key": KEY})
    assert "x-goog-api-key" not in GeminiCodec("gemini", None).probe_request().headers


def test_system_instruction_roles_and_merging() -> None:
    """System text goes to systemInstruction; user/tool -> user, assistant -> model; same-role turns merge."""
    request = chat(
        Message.text("system", "Be terse."),
        Message.text("user", "Hi"),
        Message(role="user", content=(TextPart("again"),)),
        Message.text("assistant", "Hello"),
        Message.text("system", "Answer in French."),
    )
    body = body_of(request)
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Answer in French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}, {"text": "again"}]},
        {"role": "model", "parts": [{"text": "Hello"}]},
    ]
    assert "tools" not in body
    assert "toolConfig" not in body
    assert "generationConfig" not in body


def test_system_message_with_an_image_is_rejected() -> None:
    """A system instruction takes text only; an image there names its field."""
    request = chat(Message(role="system", content=(ImagePart(url="https://x/y.png"),)), Message.text("user", "hi"))
    with pytest.raises(RequestError) as info:
        codec().encode(request, MODEL, stream=True)
    assert info.value.field == "messages[0].content[0]"


def test_images_inline_data_url_and_file() -> None:
    """Base64 data and data: URLs become inlineData; other URLs become fileData with the media type."""
    request = chat(
        Message(
            role="user",
            content=(
                ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
                ImagePart(url="data:image/jpeg;base64,/9j/4AAQ"),
                ImagePart(url="https://generativelanguage.googleapis.com/v1beta/files/abc", media_type="image/webp"),
            ),
        )
    )
    assert body_of(request)["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
        {
            "fileData": {
                "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc",
                "mimeType": "image/webp",
            }
        },
    ]


def test_function_call_and_response_name_lookup() -> None:
    """Calls carry parsed args and id; each result takes the name of the nearest earlier call of its id."""
    request = chat(
        Message.text("user", "weather twice"),
        Message(role="assistant", content=(ToolCallPart("call_0", "get_weather", '{"city": "Oslo"}'),)),
        Message(role="tool", content=(ToolResultPart("call_0", "rain"),)),
        Message(
            role="assistant",
            content=(ToolCallPart("call_0", "get_time", ""), ToolCallPart("c2", "get_weather", '{"city":"Rome"}')),
        ),
        Message(role="tool", content=(ToolResultPart("call_0", "noon"),)),
        Message(role="tool", content=(ToolResultPart("c2", "boom", is_error=True),)),
    )
    contents = body_of(request)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert contents[1]["parts"] == [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_0"}}]
    assert contents[3]["parts"][0] == {"functionCall": {"name": "get_time", "args": {}, "id": "call_0"}}
    assert contents[4]["parts"] == [
        {"functionResponse": {"name": "get_time", "response": {"output": "noon"}, "id": "call_0"}},
        {"functionResponse": {"name": "get_weather", "response": {"error": "boom"}, "id": "c2"}},
    ]
    assert contents[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_tool_result_without_its_call_is_rejected() -> None:
    """A tool result whose call id appears in no earlier message is a RequestError naming the field."""
    request = chat(Message.text("user", "hi"), Message(role="tool", content=(ToolResultPart("nope", "x"),)))
    with pytest.raises(RequestError) as info:
        codec().encode(request, MODEL, stream=True)
    assert info.value.field == "messages[1].content[0].tool_call_id"
    assert "nope" in str(info.value)


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    """Arguments that are not a JSON object are a RequestError on the arguments field."""
    request = chat(Message(role="assistant", content=(ToolCallPart("c", "f", arguments),)))
    with pytest.raises(RequestError) as info:
        codec().encode(request, MODEL, stream=True)
    assert info.value.field == "messages[0].content[0].arguments"


def test_tools_declarations_and_parameterless_tool() -> None:
    """Tools become functionDeclarations with translated parameters; a tool with no properties omits them."""
    ping = ToolSpec("ping")
    body = body_of(chat(Message.text("user", "hi"), tools=(WEATHER, ping)))
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"city": {"type": "STRING"}},
                        "required": ["city"],
                    },
                },
                {"name": "ping"},
            ]
        }
    ]


def test_tool_parameters_must_be_an_object() -> None:
    """A tool whose parameters are not an object schema is rejected on tools[i].parameters."""
    request = chat(Message.text("user", "hi"), tools=(WEATHER, ToolSpec("bad", parameters={"type": "string"})))
    with pytest.raises(RequestError) as info:
        codec().encode(request, MODEL, stream=True)
    assert info.value.field == "tools[1].parameters"


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (ToolChoiceMode("auto"), {"mode": "AUTO"}),
        (ToolChoiceMode("none"), {"mode": "NONE"}),
        (ToolChoiceMode("required"), {"mode": "ANY"}),
        (ToolChoiceNamed("get_weather"), {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_choice_to_function_calling_config(choice: ToolChoiceMode | ToolChoiceNamed, config: Any) -> None:
    """tool_choice maps to toolConfig.functionCallingConfig (AUTO / NONE / ANY, allowed names for one tool)."""
    body = body_of(chat(Message.text("user", "hi"), tools=(WEATHER,), tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": config}


@pytest.mark.parametrize("choice", [ToolChoiceNamed("missing"), ToolChoiceMode("required")])
def test_tool_choice_that_cannot_be_met(choice: ToolChoiceMode | ToolChoiceNamed) -> None:
    """Naming an absent tool, or requiring a call with no tools, is a RequestError on tool_choice."""
    tools = (WEATHER,) if isinstance(choice, ToolChoiceNamed) else ()
    with pytest.raises(RequestError) as info:
        codec().encode(chat(Message.text("user", "hi"), tools=tools, tool_choice=choice), MODEL, stream=True)
    assert info.value.field == "tool_choice"


def test_generation_config_and_json_object() -> None:
    """Sampling settings land in generationConfig; json_object sets responseMimeType."""
    request = chat(
        Message.text("user", "hi"),
        temperature=0.2,
        top_p=0.9,
        max_tokens=256,
        stop=("END",),
        seed=7,
        response_format=JsonObjectFormat(),
    )
    assert body_of(request)["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 256,
        "stopSequences": ["END"],
        "seed": 7,
        "responseMimeType": "application/json",
    }


def test_json_schema_response_format() -> None:
    """json_schema sets responseMimeType and a translated responseSchema with property order."""
    schema = {
        "type": "object",
        "properties": {"b": {"type": ["integer", "null"]}, "a": {"type": "string", "format": "date-time"}},
        "required": ["b", "a"],
        "additionalProperties": False,
    }
    config = body_of(chat(Message.text("user", "hi"), response_format=JsonSchemaFormat("answer", schema)))[
        "generationConfig"
    ]
    assert config == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {"b": {"type": "INTEGER", "nullable": True}, "a": {"type": "STRING", "format": "date-time"}},
            "required": ["b", "a"],
            "propertyOrdering": ["b", "a"],
        },
    }


def test_json_schema_response_format_rejection_names_the_format() -> None:
    """An untranslatable response schema is a RequestError on response_format.schema."""
    fmt = JsonSchemaFormat("answer", {"type": "object", "patternProperties": {"^x": {"type": "string"}}})
    with pytest.raises(RequestError) as info:
        codec().encode(chat(Message.text("user", "hi"), response_format=fmt), MODEL, stream=True)
    assert info.value.field == "response_format.schema"
    assert "'answer'" in str(info.value)
    assert "patternProperties" in str(info.value)


# -- schema dialect --------------------------------------------------------------------------------


def translate(schema: dict[str, Any]) -> dict[str, Any]:
    """Translate a schema as tool 'lookup' of provider 'gemini'."""
    return to_gemini_schema(schema, field="tools[0].parameters", subject="tool 'lookup'", provider="gemini")


DEFS = {"$defs": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}}}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, {"type": "STRING"}),
        ({"type": ["string", "null"]}, {"type": "STRING", "nullable": True}),
        ({"type": ["string", "integer"]}, {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}),
        (
            {"type": ["string", "number", "null"], "maxLength": 3, "maximum": 9, "description": "d"},
            {
                "description": "d",
                "anyOf": [{"type": "STRING", "maxLength": 3}, {"type": "NUMBER", "maximum": 9}],
                "nullable": True,
            },
        ),
        ({"const": "on"}, {"type": "STRING", "enum": ["on"]}),
        ({"type": "string", "enum": ["a", "b"]}, {"type": "STRING", "enum": ["a", "b"]}),
        ({"type": ["string", "null"], "enum": ["a", None]}, {"type": "STRING", "enum": ["a"], "nullable": True}),
        ({"type": "string", "enum": ["a", None]}, {"type": "STRING", "enum": ["a"]}),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, {"type": "INTEGER", "nullable": True}),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]}),
        ({"type": "string", "nullable": True}, {"type": "STRING", "nullable": True}),
        ({**DEFS, "$ref": "#/$defs/Pet"}, {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}}),
        (
            {"definitions": {"N": {"type": "integer"}}, "type": "array", "items": {"$ref": "#/definitions/N"}},
            {"type": "ARRAY", "items": {"type": "INTEGER"}},
        ),
        (
            {**DEFS, "type": "object", "properties": {"p": {"anyOf": [{"$ref": "#/$defs/Pet"}, {"type": "null"}]}}},
            {
                "type": "OBJECT",
                "properties": {
                    "p": {"nullable": True, "type": "OBJECT", "properties": {"name": {"type": "STRING"}}},
                },
            },
        ),
        (
            {**DEFS, "allOf": [{"$ref": "#/$defs/Pet"}], "description": "a pet"},
            {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}, "description": "a pet"},
        ),
        ({"oneOf": [{"type": "boolean"}]}, {"type": "BOOLEAN"}),
        (
            {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
            {"type": "INTEGER", "minimum": 1, "maximum": 9},
        ),
        ({"type": "integer", "minimum": 5, "exclusiveMinimum": 2.5}, {"type": "INTEGER", "minimum": 5}),
        (
            {"type": "string", "minLength": 1, "maxLength": 9, "pattern": "^a", "format": "date-time"},
            {"type": "STRING", "minLength": 1, "maxLength": 9, "pattern": "^a", "format": "date-time"},
        ),
        ({"type": "string", "format": "uuid"}, {"type": "STRING"}),
        (
            {"type": "number", "format": "double", "minimum": 0.5},
            {"type": "NUMBER", "minimum": 0.5, "format": "double"},
        ),
        (
            {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3, "uniqueItems": False},
            {"type": "ARRAY", "items": {"type": "BOOLEAN"}, "minItems": 1, "maxItems": 3},
        ),
        (
            {"type": "object", "properties": {}, "additionalProperties": False, "minProperties": 1},
            {"type": "OBJECT", "minProperties": 1},
        ),
        ({"type": "object", "unevaluatedProperties": {}, "maxProperties": 2}, {"type": "OBJECT", "maxProperties": 2}),
        (
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": "x",
                "$comment": "c",
                "type": "string",
                "title": "T",
                "description": "D",
                "default": "d",
                "examples": ["e"],
                "deprecated": True,
                "readOnly": True,
                "writeOnly": False,
                "contentMediaType": "text/plain",
            },
            {"type": "STRING", "title": "T", "description": "D", "default": "d"},
        ),
        ({}, {}),
    ],
)
def test_schema_translations(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    """Each translated keyword lands in Gemini's dialect as documented in _gemini_schema."""
    assert translate(schema) == expected


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "object", "properties": {"n": {"$ref": "#"}}}, "$ref"),
        ({"$defs": {"T": {"type": "array", "items": {"$ref": "#/$defs/T"}}}, "$ref": "#/$defs/T"}, "$ref"),
        ({"$ref": "https://example.com/schema.json"}, "$ref"),
        ({"$ref": "#/$defs/Missing"}, "$ref"),
        ({"type": "object", "patternProperties": {"^x": {"type": "string"}}}, "patternProperties"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "additionalProperties"),
        ({"type": "object", "unevaluatedProperties": {"type": "string"}}, "unevaluatedProperties"),
        ({"type": "object", "propertyNames": {"pattern": "^a"}}, "propertyNames"),
        ({"if": {"type": "string"}, "then": {"minLength": 1}}, "if"),
        ({"not": {"type": "string"}}, "not"),
        ({"allOf": [{"type": "string"}, {"minLength": 1}]}, "allOf"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf"),
        ({"type": "number", "multipleOf": 2}, "multipleOf"),
        ({"type": "number", "exclusiveMinimum": 0}, "exclusiveMinimum"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"type": "array", "items": [{"type": "string"}]}, "items"),
        ({"type": "array", "prefixItems": [{"type": "string"}]}, "prefixItems"),
        ({"type": "array", "contains": {"type": "string"}}, "contains"),
        ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired"),
        ({"type": "integer", "enum": [1, 2]}, "enum"),
        ({"const": 3}, "const"),
        ({"enum": ["a"], "const": "a"}, "const"),
        ({"type": "null"}, "type"),
        ({"type": "tuple"}, "type"),
        ({"type": "object", "properties": {"x": True}}, "True"),
        ({"type": "string", "x-vendor": 1}, "x-vendor"),
    ],
)
def test_schema_rejections(schema: dict[str, Any], keyword: str) -> None:
    """Each keyword without a faithful translation is a RequestError naming field, tool, keyword and provider."""
    with pytest.raises(RequestError) as info:
        translate(schema)
    assert info.value.field == "tools[0].parameters"
    message = str(info.value)
    assert f"'{keyword}'" in message
    assert "tool 'lookup'" in message
    assert "gemini" in message


def test_tool_schema_rejection_through_encode_names_the_tool() -> None:
    """Through encode, the rejection names tools[i].parameters and the tool."""
    bad = ToolSpec("search", parameters={"type": "object", "properties": {"q": {"not": {"type": "null"}}}})
    with pytest.raises(RequestError) as info:
        codec().encode(chat(Message.text("user", "hi"), tools=(WEATHER, bad)), MODEL, stream=True)
    assert info.value.field == "tools[1].parameters"
    assert "tool 'search'" in str(info.value)
    assert "'not'" in str(info.value)
    assert "/properties/q" in str(info.value)


# -- error classification --------------------------------------------------------------------------


def error_body(code: int, status: str, message: str = "m", details: list[Any] | None = None) -> bytes:
    """A google.rpc.Status error body."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("status", "grpc", "message", "kind"),
    [
        (400, "INVALID_ARGUMENT", "Invalid JSON payload received.", ErrorClass.BAD_REQUEST),
        (
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
            ErrorClass.CONTEXT_LENGTH,
        ),
        (400, "FAILED_PRECONDITION", "User location is not supported for the API use.", ErrorClass.BAD_REQUEST),
        (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", ErrorClass.AUTH),
        (403, "PERMISSION_DENIED", "The caller does not have permission", ErrorClass.AUTH),
        (404, "NOT_FOUND", "models/gemini-9 is not found", ErrorClass.BAD_REQUEST),
        (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", ErrorClass.RATE_LIMIT),
        (500, "INTERNAL", "An internal error has occurred.", ErrorClass.SERVER_ERROR),
        (503, "UNAVAILABLE", "The model is overloaded.", ErrorClass.OVERLOADED),
        (504, "DEADLINE_EXCEEDED", "Deadline exceeded", ErrorClass.TIMEOUT),
    ],
)
def test_error_table(status: int, grpc: str, message: str, kind: ErrorClass) -> None:
    """Status and the body's error.status map to the error class of the table."""
    error = codec().classify(status, {}, error_body(status, grpc, message), MODEL)
    assert (error.kind, error.status, error.provider, error.model) == (kind, status, "gemini", MODEL)
    assert message in str(error)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (408, ErrorClass.TIMEOUT),
        (502, ErrorClass.SERVER_ERROR),
        (503, ErrorClass.OVERLOADED),
        (418, ErrorClass.BAD_REQUEST),
    ],
)
def test_error_without_a_json_body_falls_back_on_http_status(status: int, kind: ErrorClass) -> None:
    """A body that is not a google.rpc.Status is classified by HTTP status and quoted in the detail."""
    error = codec().classify(status, {}, b"<html>Bad Gateway</html>", None)
    assert error.kind is kind
    assert "Bad Gateway" in str(error)


def test_resource_exhausted_retry_delay_and_header() -> None:
    """RetryInfo retryDelay ("7s") gives retry_after; with a retry-after header the longer hint wins."""
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "x"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
    ]
    body = error_body(429, "RESOURCE_EXHAUSTED", "quota", details)
    assert codec().classify(429, {}, body, MODEL).retry_after == 7.0
    assert codec().classify(429, {"Retry-After": "12"}, body, MODEL).retry_after == 12.0
    assert codec().classify(429, {"retry-after": "2"}, body, MODEL).retry_after == 7.0
    plain = error_body(429, "RESOURCE_EXHAUSTED", "quota")
    assert codec().classify(429, {"retry-after": "3"}, plain, MODEL).retry_after == 3.0
    assert codec().classify(429, {}, plain, MODEL).retry_after is None


@pytest.mark.parametrize(
    ("violation", "kind"),
    [
        ({"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaValue": "250"}, ErrorClass.QUOTA),
        ({"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "0"}, ErrorClass.QUOTA),
        ({"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": 5}, ErrorClass.RATE_LIMIT),
    ],
)
def test_resource_exhausted_is_quota_only_for_a_day_or_zero_limit(violation: dict[str, Any], kind: ErrorClass) -> None:
    """A QuotaFailure of a per-day window or a zero limit is quota with no retry hint; per-minute stays rate_limit."""
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22s"},
    ]
    error = codec().classify(429, {}, error_body(429, "RESOURCE_EXHAUSTED", "quota", details), MODEL)
    assert (error.kind, error.retry_after) == (kind, None if kind is ErrorClass.QUOTA else 22.0)


def test_invalid_api_key_is_auth_and_list_bodies_parse() -> None:
    """400 INVALID_ARGUMENT with ErrorInfo API_KEY_INVALID is auth; a list-wrapped body is read too."""
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
    body = b"[" + error_body(400, "INVALID_ARGUMENT", "API key not valid.", details) + b"]"
    assert codec().classify(400, {}, body, MODEL).kind is ErrorClass.AUTH


def test_key_never_in_reprs_or_errors() -> None:
    """The API key appears in no repr, no classified error (even one echoing it) and no request error."""
    c = codec()
    wire = c.encode(chat(Message.text("user", "hi")), MODEL, stream=True)
    echoed = c.classify(400, {}, error_body(400, "INVALID_ARGUMENT", f"API key {KEY} not valid."), MODEL)
    with pytest.raises(RequestError) as request_error:
        c.encode(chat(Message(role="tool", content=(ToolResultPart("x", "y"),))), MODEL, stream=True)
    with pytest.raises(MidStreamError) as cut:
        c.stream_decoder(MODEL).close()
    for text in (repr(c), str(c), repr(wire), str(echoed), repr(echoed), str(request_error.value), str(cut.value)):
        assert KEY not in text
    assert KEY in wire.headers["x-goog-api-key"]
