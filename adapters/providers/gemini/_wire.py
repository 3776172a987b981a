"""Wire types of the Google Gemini API (``generateContent`` / ``streamGenerateContent``).

Field names follow the REST JSON form (camelCase, via ``rename="camel"``); every optional
field defaults to ``None`` and is left out of an encoded request (``omit_defaults``).
Function-call arguments stay raw JSON (``msgspec.Raw``): they pass through the codec as text
and are never held as a ``dict``. The only ``dict[str, Any]`` fields are JSON Schema objects.
Facts checked against googleapis/python-genai ``types.py`` and the Gemini API reference.
"""

from __future__ import annotations

from typing import Any

import msgspec

# -- content (request and response) ------------------------------------------------------------


class GBlob(msgspec.Struct, frozen=True, rename="camel"):
    """Inline bytes, base64 encoded, with their IANA media type."""

    mime_type: str
    data: str


class GFileData(msgspec.Struct, frozen=True, rename="camel"):
    """Data by URI (a Files API URI, or a URL the API can fetch)."""

    file_uri: str
    mime_type: str | None = None


class GFunctionCall(msgspec.Struct, frozen=True, omit_defaults=True):
    """A call the model predicted; ``args`` is a JSON object kept raw (``null`` if Gemini sent null)."""

    name: str = ""
    args: msgspec.Raw = msgspec.Raw(b"{}")
    id: str | None = None


class GToolOutput(msgspec.Struct, frozen=True, omit_defaults=True):
    """The ``response`` object of a function response: ``output`` or ``error``, as documented."""

    output: str | None = None
    error: str | None = None


class GFunctionResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    """The result of a call, sent back; Gemini matches it by function ``name`` (and ``id``)."""

    name: str
    response: GToolOutput
    id: str | None = None


class GPart(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One part of a content; exactly one payload field is set."""

    text: str | None = None
    inline_data: GBlob | None = None
    file_data: GFileData | None = None
    function_call: GFunctionCall | None = None
    function_response: GFunctionResponse | None = None
    thought: bool | None = None
    thought_signature: str | None = None


class GContent(msgspec.Struct, frozen=True, omit_defaults=True):
    """A turn: ``role`` is ``user`` or ``model`` (empty for the system instruction)."""

    parts: tuple[GPart, ...] = ()
    role: str | None = None


# -- request -----------------------------------------------------------------------------------


class GFunctionDeclaration(msgspec.Struct, frozen=True, omit_defaults=True):
    """A tool; ``parameters`` is a schema in Gemini's OpenAPI 3.0 dialect (or absent)."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class GTool(msgspec.Struct, frozen=True, rename="camel"):
    """A group of function declarations."""

    function_declarations: tuple[GFunctionDeclaration, ...]


class GFunctionCallingConfig(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """``mode`` is AUTO, ANY or NONE; ``allowedFunctionNames`` narrows ANY."""

    mode: str
    allowed_function_names: tuple[str, ...] | None = None


class GToolConfig(msgspec.Struct, frozen=True, rename="camel"):
    """How the model may call functions."""

    function_calling_config: GFunctionCallingConfig


class GThinkingConfig(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """How many tokens a thinking model may think for, and whether its thoughts come back."""

    thinking_budget: int
    include_thoughts: bool = False


class GGenerationConfig(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """Sampling and output settings."""

    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    stop_sequences: tuple[str, ...] | None = None
    seed: int | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    thinking_config: GThinkingConfig | None = None


class GRequest(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """The body of ``generateContent`` and ``streamGenerateContent``."""

    contents: tuple[GContent, ...]
    system_instruction: GContent | None = None
    tools: tuple[GTool, ...] | None = None
    tool_config: GToolConfig | None = None
    generation_config: GGenerationConfig | None = None


# -- response ----------------------------------------------------------------------------------


class GCandidate(msgspec.Struct, frozen=True, rename="camel"):
    """One generated answer; ``finishReason`` is set on the chunk that ends it."""

    content: GContent | None = None
    finish_reason: str | None = None
    index: int = 0


class GPromptFeedback(msgspec.Struct, frozen=True, rename="camel"):
    """Why the prompt was refused, when it was (then there are no candidates)."""

    block_reason: str | None = None


class GUsage(msgspec.Struct, frozen=True, rename="camel"):
    """Token counts; ``promptTokenCount`` includes ``cachedContentTokenCount``."""

    prompt_token_count: int = 0
    cached_content_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0
    total_token_count: int = 0


class GQuotaViolation(msgspec.Struct, frozen=True, rename="camel"):
    """One violation of a ``google.rpc.QuotaFailure``: which quota ran out, and its limit.

    ``quotaId`` names the window (``GenerateRequestsPerMinutePerProjectPerModel-FreeTier``,
    ``...PerDay...``); ``quotaValue`` is the limit, an int64 that JSON carries as a string.
    """

    quota_metric: str = ""
    quota_id: str = ""
    quota_value: str | int = ""


class GErrorDetail(msgspec.Struct, frozen=True, rename="camel"):
    """One ``google.rpc`` detail: ErrorInfo's ``reason``, RetryInfo's ``retryDelay``, QuotaFailure's ``violations``."""

    type: str = msgspec.field(default="", name="@type")
    reason: str = ""
    retry_delay: str = ""
    violations: tuple[GQuotaViolation, ...] = ()


class GErrorBody(msgspec.Struct, frozen=True):
    """A ``google.rpc.Status``: HTTP ``code``, canonical ``status`` name, message, details."""

    code: int = 0
    message: str = ""
    status: str = ""
    details: tuple[GErrorDetail, ...] = ()


class GErrorEnvelope(msgspec.Struct, frozen=True):
    """The body of a failed call: ``{"error": {...}}``."""

    error: GErrorBody | None = None


class GResponse(msgspec.Struct, frozen=True, rename="camel"):
    """A ``GenerateContentResponse``: a whole answer, or one chunk of a stream.

    ``modelVersion`` is the model that answered (e.g. ``gemini-2.5-flash-preview-05-20``).
    """

    candidates: tuple[GCandidate, ...] = ()
    prompt_feedback: GPromptFeedback | None = None
    usage_metadata: GUsage | None = None
    model_version: str = ""
    error: GErrorBody | None = None


RESPONSE_DECODER = msgspec.json.Decoder(GResponse)
# Error bodies come as one object, or (on some streamed failures) as a one-element list.
ERROR_DECODER: msgspec.json.Decoder[GErrorEnvelope | list[GErrorEnvelope]] = msgspec.json.Decoder(
    GErrorEnvelope | list[GErrorEnvelope]
)
ENCODER = msgspec.json.Encoder()
