"""Wire types of the OpenAI Chat Completions API, as msgspec Structs, with their codecs built once.

This module and ``_server_wire`` are the one model of this wire in interlock. Here: the request
as our client writes it, whose parts our servers (the gateway, the simulator) also read, and the
answers as our client reads them. ``_server_wire`` holds what only a server needs: the request
shapes a server must read more strictly (or more loosely) than our client writes them, and the
answers a server writes.

Request types: ``type``/``role`` discriminators are msgspec tags, so they are always written even
with ``omit_defaults``; a member our client never sets (``name``, ``detail``, ``description``...)
defaults to None and is left out. Response, chunk and error types are decoded only and are
lenient: every field has a default, unknown fields are ignored, and the shapes that
OpenAI-compatible servers (vLLM, Ollama, LM Studio, OpenRouter, Groq, DeepSeek) add or vary are
admitted (``reasoning_content`` / ``reasoning``, integer error codes, string errors, vLLM's flat
``{"object": "error", ...}`` body, tool-call fragments without ``index``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# -- request: our client encodes it; the parts below are decoded by our servers too ------------


class WireTextPart(msgspec.Struct, frozen=True, tag_field="type", tag="text"):
    """A text content part."""

    text: str


class WireImageURL(msgspec.Struct, frozen=True, omit_defaults=True):
    """An image reference: an http(s) URL or a ``data:`` URL holding base64 bytes."""

    url: str
    detail: str | None = None


class WireImagePart(msgspec.Struct, frozen=True, tag_field="type", tag="image_url"):
    """An image content part."""

    image_url: WireImageURL


class WireRefusalPart(msgspec.Struct, frozen=True, tag_field="type", tag="refusal"):
    """A refusal an earlier assistant turn carried (read by the gateway; our client never sends one)."""

    refusal: str


WireContentPart = WireTextPart | WireImagePart


class WireFunctionCall(msgspec.Struct, frozen=True):
    """The function an assistant turn called; ``arguments`` is JSON text."""

    name: str
    arguments: str


class WireToolCall(msgspec.Struct, frozen=True, tag_field="type", tag="function"):
    """A tool call carried by an assistant message in the request history (``type`` may be left out when read)."""

    id: str
    function: WireFunctionCall


class WireSystemMessage(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="role", tag="system"):
    """The system prompt: our client sends text, a client of the gateway may send text parts."""

    content: str | list[WireTextPart]
    name: str | None = None


class WireDeveloperMessage(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="role", tag="developer"):
    """A developer turn: the newer name of a system turn (read by the gateway; our client never sends one)."""

    content: str | list[WireTextPart]
    name: str | None = None


class WireUserMessage(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="role", tag="user"):
    """A user turn: plain text, or a list of text and image parts."""

    content: str | list[WireContentPart]
    name: str | None = None


class WireAssistantMessage(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="role", tag="assistant"):
    """An earlier assistant turn: text, tool calls, or both."""

    content: str | None = None
    tool_calls: list[WireToolCall] | None = None


class WireToolMessage(msgspec.Struct, frozen=True, tag_field="role", tag="tool"):
    """The result of one tool call, keyed by the call's id."""

    content: str | list[WireTextPart]
    tool_call_id: str


WireMessage = WireSystemMessage | WireUserMessage | WireAssistantMessage | WireToolMessage


class WireFunctionDef(msgspec.Struct, frozen=True, omit_defaults=True):
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class WireTool(msgspec.Struct, frozen=True, tag_field="type", tag="function"):
    """A function tool."""

    function: WireFunctionDef


class WireFunctionName(msgspec.Struct, frozen=True):
    """The name of a function to force."""

    name: str


class WireNamedToolChoice(msgspec.Struct, frozen=True, tag_field="type", tag="function"):
    """Force a call to one named function."""

    function: WireFunctionName


class WireTextFormat(msgspec.Struct, frozen=True, tag_field="type", tag="text"):
    """Free text (read by the gateway; our client sends no response format instead)."""


class WireJsonObjectFormat(msgspec.Struct, frozen=True, tag_field="type", tag="json_object"):
    """JSON mode: any JSON object."""


class WireJsonSchema(msgspec.Struct, frozen=True, omit_defaults=True):
    """Structured outputs: a named schema, strict or not (our client always sends both)."""

    name: str
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class WireJsonSchemaFormat(msgspec.Struct, frozen=True, tag_field="type", tag="json_schema"):
    """Structured outputs response format."""

    json_schema: WireJsonSchema


class WireStreamOptions(msgspec.Struct, frozen=True):
    """Ask for the final usage chunk of a stream; OpenAI's default is no usage chunk."""

    include_usage: bool = False


class WireChatRequest(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """The body of ``POST /chat/completions``; fields left at None are not sent."""

    model: str
    messages: list[WireMessage]
    tools: list[WireTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | WireNamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: WireJsonObjectFormat | WireJsonSchemaFormat | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    max_completion_tokens: int | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    stream: bool | None = None
    stream_options: WireStreamOptions | None = None


# -- responses, chunks and errors (decode only) ----------------------------------------------


class WireError(msgspec.Struct, frozen=True):
    """An error object; compatible servers may send an integer ``code`` (the HTTP status)."""

    message: str = ""
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


class WireErrorBody(msgspec.Struct, frozen=True):
    """An HTTP error body: ``{"error": {...}}``, ``{"error": "text"}`` or vLLM's flat form."""

    error: WireError | str | None = None
    object: str = ""
    message: str | None = None
    type: str | None = None
    code: str | int | None = None

    def as_error(self) -> WireError | None:
        """The error object, whichever of the three forms the server used."""
        if isinstance(self.error, WireError):
            return self.error
        if isinstance(self.error, str):
            return WireError(message=self.error)
        if self.object == "error" or self.message is not None:
            return WireError(message=self.message or "", type=self.type, code=self.code)
        return None


class WirePromptTokensDetails(msgspec.Struct, frozen=True):
    """Breakdown of prompt tokens; ``cached_tokens`` is a subset of ``prompt_tokens``."""

    cached_tokens: int | None = None


class WireUsage(msgspec.Struct, frozen=True):
    """Token usage as OpenAI reports it (prompt tokens include cached ones).

    DeepSeek reports its cache hits as ``prompt_cache_hit_tokens`` (also inside
    ``prompt_tokens``) instead of ``prompt_tokens_details.cached_tokens``.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: WirePromptTokensDetails | None = None
    prompt_cache_hit_tokens: int | None = None


class WireFunctionDelta(msgspec.Struct, frozen=True):
    """A fragment of a function's name and arguments."""

    name: str | None = None
    arguments: str | None = None


class WireToolCallDelta(msgspec.Struct, frozen=True):
    """A tool-call fragment; ``index`` keys parallel calls, ``id``/``name`` come first."""

    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: WireFunctionDelta | None = None


class WireDelta(msgspec.Struct, frozen=True):
    """What one chunk adds to the answer."""

    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: tuple[WireToolCallDelta, ...] | None = None
    function_call: WireFunctionDelta | None = None


class WireChunkChoice(msgspec.Struct, frozen=True):
    """One choice of a chunk; ``finish_reason`` is set on the choice's last chunk."""

    index: int = 0
    delta: WireDelta = WireDelta()
    finish_reason: str | None = None


class WireGroqExtra(msgspec.Struct, frozen=True):
    """Groq's ``x_groq`` chunk field; its ``usage`` stands in for a missing top-level one."""

    usage: WireUsage | None = None


class WireChunk(msgspec.Struct, frozen=True):
    """A ``chat.completion.chunk``, or an in-band error (``error`` set, or vLLM's flat form).

    ``model`` is the model id the server says answered (a dated snapshot behind an alias).
    """

    id: str = ""
    object: str = ""
    model: str = ""
    choices: tuple[WireChunkChoice, ...] = ()
    usage: WireUsage | None = None
    x_groq: WireGroqExtra | None = None
    error: WireError | str | None = None
    message: str | None = None
    type: str | None = None
    code: str | int | None = None

    def as_error(self) -> WireError | None:
        """The in-band error this chunk carries, if any."""
        return WireErrorBody(self.error, self.object, self.message, self.type, self.code).as_error()


class WireToolCallOut(msgspec.Struct, frozen=True):
    """A complete tool call of a non-streamed answer; non-function calls have no ``function``."""

    id: str = ""
    type: str = "function"
    function: WireFunctionDelta | None = None


class WireResponseMessage(msgspec.Struct, frozen=True):
    """The assistant message of a non-streamed answer."""

    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: tuple[WireToolCallOut, ...] | None = None
    function_call: WireFunctionDelta | None = None


class WireChoice(msgspec.Struct, frozen=True):
    """One choice of a non-streamed answer."""

    index: int = 0
    message: WireResponseMessage = WireResponseMessage()
    finish_reason: str | None = None


class WireCompletion(msgspec.Struct, frozen=True):
    """A ``chat.completion`` object (or an error body some servers send with status 200).

    ``model`` is the model id the server says answered, as in ``WireChunk``.
    """

    id: str = ""
    object: str = ""
    model: str = ""
    choices: tuple[WireChoice, ...] = ()
    usage: WireUsage | None = None
    error: WireError | str | None = None
    message: str | None = None
    type: str | None = None
    code: str | int | None = None

    def as_error(self) -> WireError | None:
        """The error this body carries instead of an answer, if any."""
        return WireErrorBody(self.error, self.object, self.message, self.type, self.code).as_error()


REQUEST_ENCODER = msgspec.json.Encoder()
CHUNK_DECODER = msgspec.json.Decoder(WireChunk)
COMPLETION_DECODER = msgspec.json.Decoder(WireCompletion)
ERROR_DECODER = msgspec.json.Decoder(WireErrorBody)
