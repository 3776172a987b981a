"""Wire types of the OpenAI-compatible gateway, as a server sees them: what clients send, what it answers.

Requests are decoded once, at the edge, by ``REQUEST_DECODER``: unknown fields are ignored (clients
send many options the gateway has no use for) and every shape or range error names its JSON path.
Messages are a union tagged by ``role``, content parts a union tagged by ``type``; a role or part
the gateway cannot carry (``function``, ``input_audio``, ``file``) fails there, naming the field.

Responses, stream chunks, errors and model lists are encoded by ``ENCODER``. Optional members are
``UNSET`` rather than ``None`` where OpenAI leaves them out, and ``None`` where it sends ``null``.
The ``interlock`` member of a completion or final chunk is an extension: how the answer was served.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

ToolName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


# -- request: message content ------------------------------------------------------------------


class TextPartIn(msgspec.Struct, frozen=True, tag="text", tag_field="type"):
    """``{"type": "text", "text": ...}``."""

    text: str


class ImageUrlIn(msgspec.Struct, frozen=True):
    """An image's ``url``: https or a ``data:<media type>;base64,...`` URL."""

    url: str
    detail: str | None = None


class ImagePartIn(msgspec.Struct, frozen=True, tag="image_url", tag_field="type"):
    """``{"type": "image_url", "image_url": {"url": ...}}``."""

    image_url: ImageUrlIn


class RefusalPartIn(msgspec.Struct, frozen=True, tag="refusal", tag_field="type"):
    """A refusal an assistant turn carried; replayed as text."""

    refusal: str


class FunctionCallIn(msgspec.Struct, frozen=True):
    """``function`` of an assistant's tool call: name and JSON arguments text."""

    name: str
    arguments: str


class ToolCallIn(msgspec.Struct, frozen=True):
    """A tool call of an earlier assistant turn."""

    id: str
    function: FunctionCallIn
    type: Literal["function"] = "function"


class SystemMessageIn(msgspec.Struct, frozen=True, tag="system", tag_field="role"):
    """A system turn."""

    content: str | list[TextPartIn]
    name: str | None = None


class DeveloperMessageIn(msgspec.Struct, frozen=True, tag="developer", tag_field="role"):
    """A developer turn: the newer name of a system turn."""

    content: str | list[TextPartIn]
    name: str | None = None


class UserMessageIn(msgspec.Struct, frozen=True, tag="user", tag_field="role"):
    """A user turn: text, or text and image parts."""

    content: str | list[TextPartIn | ImagePartIn]
    name: str | None = None


class AssistantMessageIn(msgspec.Struct, frozen=True, tag="assistant", tag_field="role"):
    """An earlier assistant turn: text and/or tool calls."""

    content: str | list[TextPartIn | RefusalPartIn] | None = None
    tool_calls: list[ToolCallIn] = []
    refusal: str | None = None
    name: str | None = None


class ToolMessageIn(msgspec.Struct, frozen=True, tag="tool", tag_field="role"):
    """The result of a tool call, keyed by the call's id."""

    content: str | list[TextPartIn]
    tool_call_id: str


MessageIn = SystemMessageIn | DeveloperMessageIn | UserMessageIn | AssistantMessageIn | ToolMessageIn


# -- request: tools and formats ----------------------------------------------------------------


class FunctionDefIn(msgspec.Struct, frozen=True):
    """A function tool: name, description and JSON Schema of its parameters."""

    name: ToolName
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(msgspec.Struct, frozen=True):
    """``{"type": "function", "function": {...}}``."""

    type: Literal["function"]
    function: FunctionDefIn


class ToolNameIn(msgspec.Struct, frozen=True):
    """The ``function`` of a named tool choice."""

    name: str


class NamedToolChoiceIn(msgspec.Struct, frozen=True):
    """``{"type": "function", "function": {"name": ...}}``: call this tool."""

    type: Literal["function"]
    function: ToolNameIn


class TextFormatIn(msgspec.Struct, frozen=True, tag="text", tag_field="type"):
    """Free text."""


class JsonObjectFormatIn(msgspec.Struct, frozen=True, tag="json_object", tag_field="type"):
    """Any JSON object."""


class JsonSchemaIn(msgspec.Struct, frozen=True):
    """The ``json_schema`` member of a structured-output format."""

    name: str
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class JsonSchemaFormatIn(msgspec.Struct, frozen=True, tag="json_schema", tag_field="type"):
    """JSON that matches a schema."""

    json_schema: JsonSchemaIn


class StreamOptionsIn(msgspec.Struct, frozen=True):
    """``stream_options``: a final usage chunk when ``include_usage``."""

    include_usage: bool = False


Temperature = Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
TokenLimit = Annotated[int, msgspec.Meta(ge=1)]


class ChatCompletionRequest(msgspec.Struct, frozen=True):
    """The body of ``POST /v1/chat/completions``; ``model`` names a job or a model."""

    model: str
    messages: Annotated[list[MessageIn], msgspec.Meta(min_length=1)]
    stream: bool = False
    stream_options: StreamOptionsIn | None = None
    tools: list[ToolIn] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoiceIn | None = None
    parallel_tool_calls: bool | None = None
    response_format: TextFormatIn | JsonObjectFormatIn | JsonSchemaFormatIn | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=1)] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None


REQUEST_DECODER = msgspec.json.Decoder(ChatCompletionRequest)


# -- responses ----------------------------------------------------------------------------------


class PromptDetailsOut(msgspec.Struct, frozen=True):
    """How many prompt tokens were read from the provider's prompt cache."""

    cached_tokens: int = 0


class UsageOut(msgspec.Struct, frozen=True):
    """Token usage; ``prompt_tokens`` counts cached prompt tokens too."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptDetailsOut = PromptDetailsOut()


class RouteOut(msgspec.Struct, frozen=True, kw_only=True):
    """Extension member ``interlock``: which model served, what was degraded, what it cost."""

    request_id: str
    model: str
    provider: str
    model_class: str
    task: str
    degraded: bool
    degraded_reason: str | None
    hedged: bool
    cost_cents: float
    attempts: int


class FunctionCallOut(msgspec.Struct, frozen=True):
    """``function`` of a tool call in an answer."""

    name: str
    arguments: str


class ToolCallOut(msgspec.Struct, frozen=True):
    """A complete tool call in a non-streamed answer."""

    id: str
    function: FunctionCallOut
    type: str = "function"


class MessageOut(msgspec.Struct, frozen=True, kw_only=True):
    """The assistant's message; ``reasoning_content`` is the common extension for reasoning text."""

    content: str | None
    role: str = "assistant"
    refusal: None = None
    tool_calls: list[ToolCallOut] | UnsetType = UNSET
    reasoning_content: str | UnsetType = UNSET


class ChoiceOut(msgspec.Struct, frozen=True, kw_only=True):
    """The one choice of a completion."""

    message: MessageOut
    finish_reason: str
    index: int = 0
    logprobs: None = None


class ChatCompletionOut(msgspec.Struct, frozen=True, kw_only=True):
    """A non-streamed answer (``object = "chat.completion"``)."""

    id: str
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: UsageOut
    object: str = "chat.completion"
    interlock: RouteOut | UnsetType = UNSET


class FunctionDeltaOut(msgspec.Struct, frozen=True, kw_only=True):
    """A fragment of a streamed tool call's function: the name once, then argument text."""

    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET


class ToolCallDeltaOut(msgspec.Struct, frozen=True, kw_only=True):
    """A streamed tool-call fragment; only a call's first fragment has ``id`` and ``type``."""

    index: int
    function: FunctionDeltaOut
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET


class DeltaOut(msgspec.Struct, frozen=True, kw_only=True):
    """What a chunk adds to the message; the first chunk of a stream carries the role."""

    role: str | UnsetType = UNSET
    content: str | UnsetType = UNSET
    reasoning_content: str | UnsetType = UNSET
    tool_calls: list[ToolCallDeltaOut] | UnsetType = UNSET


class ChunkChoiceOut(msgspec.Struct, frozen=True, kw_only=True):
    """The one choice of a chunk; ``finish_reason`` is null until the last content chunk."""

    delta: DeltaOut
    finish_reason: str | None = None
    index: int = 0
    logprobs: None = None


class ChatCompletionChunkOut(msgspec.Struct, frozen=True, kw_only=True):
    """One SSE ``data:`` chunk of a streamed answer; the usage chunk has no choices."""

    id: str
    created: int
    model: str
    choices: list[ChunkChoiceOut]
    object: str = "chat.completion.chunk"
    usage: UsageOut | UnsetType = UNSET
    interlock: RouteOut | UnsetType = UNSET


# -- errors, models, health ---------------------------------------------------------------------


class ErrorBody(msgspec.Struct, frozen=True):
    """OpenAI's error object: ``param`` names the offending request field, ``code`` the reason."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorOut(msgspec.Struct, frozen=True):
    """``{"error": {...}}``: the body of every error response and of a stream's error event."""

    error: ErrorBody


class ModelOut(msgspec.Struct, frozen=True):
    """One entry of ``GET /v1/models``: a job (``owned_by = "interlock"``) or a model (its provider)."""

    id: str
    owned_by: str
    created: int = 0
    object: str = "model"


class ModelListOut(msgspec.Struct, frozen=True):
    """``GET /v1/models``."""

    data: list[ModelOut]
    object: str = "list"


class ProviderStateOut(msgspec.Struct, frozen=True):
    """One provider in ``GET /readyz``."""

    breaker: str
    healthy: bool
    cooling_down_s: float
    free_slots: int
    in_flight: int


class ReadinessOut(msgspec.Struct, frozen=True):
    """``GET /healthz`` and ``GET /readyz``: ready when some provider is healthy, its breaker not open."""

    status: str
    providers: dict[str, ProviderStateOut]


ENCODER = msgspec.json.Encoder()
