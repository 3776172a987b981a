"""Simulator, Gemini ``generateContent`` wire: request view in, ``GenerateContentResponse``(s) out.

Facts from Google's Gemini API reference: the model and the method are in the path
(``models/{model}:generateContent`` or ``:streamGenerateContent?alt=sse``); JSON is camelCase;
a stream is ``data:`` frames, each a whole ``GenerateContentResponse``, and simply ends (no
sentinel); a tool call is a ``functionCall`` part with finish reason ``STOP``; usage is in
``usageMetadata`` with ``cachedContentTokenCount`` counted within ``promptTokenCount``;
``modelVersion`` names the model that answered. A refusal is a last candidate with
``finishReason: "SAFETY"`` and no content; an error mid-stream is a frame holding only
``{"error": {...}}``, after a frame whose ``usageMetadata`` counts what was sent so far.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from interlock.adapters.simulator._wire import (
    SENTINEL,
    Ask,
    Reply,
    StreamParts,
    StreamTemplate,
    ToolSpec,
    reply_text,
    sse,
)

_enc = msgspec.json.Encoder()
_SEP = b"\r\n\r\n"


class _GPart(msgspec.Struct, frozen=True, rename="camel"):
    text: str = ""
    function_response: dict[str, Any] | None = None


class _GContent(msgspec.Struct, frozen=True):
    parts: list[_GPart] = []
    role: str = "user"


class _GDeclaration(msgspec.Struct, frozen=True, rename="camel"):
    name: str
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None
    description: str = ""


class _GTool(msgspec.Struct, frozen=True, rename="camel"):
    function_declarations: list[_GDeclaration] = []


class _GCallingConfig(msgspec.Struct, frozen=True, rename="camel"):
    mode: str = "AUTO"
    allowed_function_names: list[str] = []


class _GToolConfig(msgspec.Struct, frozen=True, rename="camel"):
    function_calling_config: _GCallingConfig | None = None


class _GGeneration(msgspec.Struct, frozen=True, rename="camel"):
    max_output_tokens: int | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None


class _GRequest(msgspec.Struct, frozen=True, rename="camel"):
    contents: list[_GContent] = []
    system_instruction: _GContent | None = None
    tools: list[_GTool] = []
    tool_config: _GToolConfig | None = None
    generation_config: _GGeneration | None = None


_G_REQUEST = msgspec.json.Decoder(_GRequest)


class GFunctionCall(msgspec.Struct, frozen=True):
    """A ``functionCall`` part's payload; ``args`` is the arguments object (raw JSON)."""

    name: str
    args: msgspec.Raw


class GPart(msgspec.Struct, frozen=True, rename="camel"):
    """A content part: text or a function call."""

    text: str | UnsetType = UNSET
    function_call: GFunctionCall | UnsetType = UNSET


class GContent(msgspec.Struct, frozen=True):
    """A candidate's content."""

    parts: list[GPart]
    role: str = "model"


class GCandidate(msgspec.Struct, frozen=True, rename="camel"):
    """A response candidate."""

    content: GContent | UnsetType = UNSET
    finish_reason: str | UnsetType = UNSET
    index: int = 0


class GUsage(msgspec.Struct, frozen=True, rename="camel"):
    """``usageMetadata``; cached tokens are within the prompt count."""

    prompt_token_count: int
    candidates_token_count: int
    total_token_count: int
    cached_content_token_count: int | UnsetType = UNSET


class GResponse(msgspec.Struct, frozen=True, rename="camel"):
    """A ``GenerateContentResponse`` (also each streamed frame)."""

    candidates: list[GCandidate]
    model_version: str
    response_id: str
    usage_metadata: GUsage | UnsetType = UNSET


class GErrorBody(msgspec.Struct, frozen=True):
    """``error`` of a Google API error body."""

    code: int
    message: str
    status: str


class GError(msgspec.Struct, frozen=True):
    """A Google API error body."""

    error: GErrorBody


class GModel(msgspec.Struct, frozen=True, rename="camel"):
    """An entry of ``GET /v1beta/models``."""

    name: str
    display_name: str
    supported_generation_methods: list[str]
    input_token_limit: int = 1_000_000
    output_token_limit: int = 8192
    version: str = "001"


class GModelList(msgspec.Struct, frozen=True):
    """``GET /v1beta/models``."""

    models: list[GModel]


_G_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


def _usage(r: Reply) -> GUsage:
    cached: int | UnsetType = r.cached_tokens or UNSET
    return GUsage(r.input_tokens, r.output_tokens, r.input_tokens + r.output_tokens, cached)


def _finish(r: Reply) -> str:
    if r.refusal:
        return "SAFETY"
    return "MAX_TOKENS" if r.truncated and not r.calls else "STOP"


def _tool_mode(config: _GToolConfig | None) -> tuple[str, str | None]:
    calling = config.function_calling_config if config else None
    if calling is None or calling.mode.upper() not in ("ANY", "NONE"):
        return "auto", None
    if calling.mode.upper() == "NONE":
        return "none", None
    allowed = calling.allowed_function_names
    return "required", allowed[0] if len(allowed) == 1 else None


def _user_turn(contents: list[_GContent]) -> str:
    """The text of the last user content that says something (not only function responses)."""
    for c in reversed(contents):
        if c.role == "user" and (text := " ".join(p.text for p in c.parts).strip()):
            return text
    return ""


def _output(config: _GGeneration | None) -> tuple[str, dict[str, Any] | None]:
    if config is None or config.response_mime_type != "application/json":
        return "text", None
    schema = config.response_json_schema or config.response_schema
    return ("json_schema", schema) if schema else ("json_object", None)


def model_list(ids: list[str]) -> bytes:
    """The ``/v1beta/models`` body."""
    methods = ["generateContent", "streamGenerateContent"]
    return _enc.encode(GModelList([GModel(f"models/{i}", f"{i} (simulated)", methods) for i in ids]))


class GeminiWire:
    """Gemini ``generateContent`` / ``streamGenerateContent``, server side."""

    name = "gemini"

    def decode(self, body: bytes, model: str = "", stream: bool = False) -> Ask:
        """An ``Ask`` from a request body; model and streaming come from the path."""
        req = _G_REQUEST.decode(body)
        contents = [*req.contents, req.system_instruction] if req.system_instruction else req.contents
        chars = sum(len(p.text) for c in contents for p in c.parts)
        tools = tuple(
            ToolSpec(d.name, d.parameters_json_schema or d.parameters or {}, d.description)
            for t in req.tools
            for d in t.function_declarations
        )
        mode, forced = _tool_mode(req.tool_config)
        limit = req.generation_config.max_output_tokens if req.generation_config else None
        last = req.contents[-1].parts if req.contents else []
        after = any(p.function_response is not None for p in last)
        output, schema = _output(req.generation_config)
        return Ask(model, stream, True, chars, tools, mode, forced, limit, after, _user_turn(req.contents),
                   output, schema)

    def _response(self, r: Reply, parts: list[GPart], final: bool, usage: bool = False) -> GResponse:
        # A safety stop comes without content: what was said before it went out in earlier frames.
        content: GContent | UnsetType = UNSET if final and r.refusal and not parts else GContent(parts)
        candidate = GCandidate(content, _finish(r) if final else UNSET)
        reported = (final or usage) and r.reports_usage
        return GResponse([candidate], r.model, r.id, _usage(r) if reported else UNSET)

    def body(self, r: Reply) -> bytes:
        """A non-stream ``GenerateContentResponse``."""
        calls = [GPart(function_call=GFunctionCall(c.name, msgspec.Raw(c.arguments))) for c in r.calls]
        text = [GPart(reply_text(r))] if r.words or r.pieces or not r.refusal else []
        return _enc.encode(self._response(r, calls or text, True))

    def stream(self, r: Reply, include_usage: bool) -> StreamParts:
        """``alt=sse`` frames; a tool-call reply is one final frame."""
        template = StreamTemplate(sse(_enc.encode(self._response(r, [GPart(SENTINEL)], False)), sep=_SEP))
        if r.calls:
            parts = [GPart(function_call=GFunctionCall(c.name, msgspec.Raw(c.arguments))) for c in r.calls]
            return StreamParts(b"", template, (sse(_enc.encode(self._response(r, parts, True)), sep=_SEP),), b"")
        if r.error_status:
            counted = sse(_enc.encode(self._response(r, [GPart("")], False, usage=True)), sep=_SEP)
            error = sse(self.error(r.error_status, "simulated error after usage"), sep=_SEP)
            return StreamParts(b"", template, (), counted + error)
        tail = sse(_enc.encode(self._response(r, [] if r.refusal else [GPart("")], True)), sep=_SEP)
        return StreamParts(b"", template, (), tail)

    def error(self, status: int, message: str) -> bytes:
        """A Google API error body for ``status``."""
        return _enc.encode(GError(GErrorBody(status, message, _G_STATUS.get(status, "UNAVAILABLE"))))


GEMINI = GeminiWire()
