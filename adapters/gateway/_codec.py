"""The gateway's pure mappings: OpenAI request -> ``ChatRequest``, canonical events -> chunks, errors -> HTTP.

Kept apart from the wire types (``_gateway_wire``) and from the HTTP plumbing (``_gateway_app``)
so that each can be read, and tested, on its own. Nothing here does I/O or reads a clock.

Streams: content chunks go out as events arrive (the first carries ``role``); the chunk with the
``finish_reason`` is held until the ``RouteEvent`` so that it can carry the ``interlock`` extension
member; then the usage chunk (when asked for), one SSE comment line per ``x-interlock-*`` header,
and ``data: [DONE]``. ``ToolCallDone`` is sent only for a call no fragment announced. Content chunks
name the model as asked (a job, say); the final ones name the model that served, once it is known.
"""

from __future__ import annotations

import re

import msgspec

from interlock._errors import (
    AdmissionRejected,
    BudgetExceeded,
    ChainExhausted,
    ErrorClass,
    InterlockError,
    ProviderError,
    RequestError,
)
from interlock._types import (
    ChatRequest,
    Finish,
    FinishReason,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
    Part,
    ResponseFormat,
    Route,
    RouteEvent,
    Sensitivity,
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
from interlock.adapters.gateway import _wire as w

_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_AT_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_OPENAI_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter"})


# -- request ------------------------------------------------------------------------------------


_SENSITIVITY: dict[str, Sensitivity] = {"public": "public", "internal": "internal", "pii": "pii"}


def sensitivity_of(header: str | None) -> Sensitivity:
    """The request's data sensitivity from ``x-interlock-sensitivity`` (default ``internal``)."""
    if header is None:
        return "internal"
    found = _SENSITIVITY.get(header.strip().lower())
    if found is None:
        raise RequestError("x-interlock-sensitivity", f"expected one of {', '.join(_SENSITIVITY)}, got {header!r}")
    return found


def to_chat_request(
    body: w.ChatCompletionRequest,
    *,
    tenant: str,
    caller: str,
    metadata: dict[str, str],
    request_id: str,
    sensitivity: Sensitivity = "internal",
) -> ChatRequest:
    """The canonical request for ``body``; ``RequestError`` names the field it cannot carry."""
    tools = tuple(_tool(t) for t in body.tools or ())
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    extra = dict(body.metadata or {})
    if body.user is not None:
        extra["user"] = body.user
    return ChatRequest(
        messages=tuple(_message(i, m) for i, m in enumerate(body.messages)),
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice, tools),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body.response_format),
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stop,
        seed=body.seed,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        model=body.model,
        tenant=tenant,
        caller=caller,
        sensitivity=sensitivity,
        metadata={**extra, **metadata},
        request_id=request_id,
    )


def _message(i: int, m: w.MessageIn) -> Message:
    field = f"messages[{i}]"
    match m:
        case w.SystemMessageIn(content=content) | w.DeveloperMessageIn(content=content):
            return Message(role="system", content=_texts(content))
        case w.UserMessageIn(content=str() as text):
            return Message.text("user", text)
        case w.UserMessageIn(content=list() as parts):
            user_parts = tuple(_user_part(f"{field}.content[{j}]", p) for j, p in enumerate(parts))
            return Message(role="user", content=user_parts)
        case w.AssistantMessageIn():
            return _assistant(field, m)
        case w.ToolMessageIn(content=content, tool_call_id=call_id):
            text = "".join(p.text for p in _texts(content) if isinstance(p, TextPart))
            return Message(role="tool", content=(ToolResultPart(call_id, text),))
    raise RequestError(f"{field}.role", "unsupported role")  # pragma: no cover - the decoder admits no other


def _texts(content: str | list[w.TextPartIn]) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (TextPart(content),)
    return tuple(TextPart(p.text) for p in content)


def _user_part(field: str, part: w.TextPartIn | w.ImagePartIn) -> Part:
    if isinstance(part, w.TextPartIn):
        return TextPart(part.text)
    url = part.image_url.url
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if match is None:
            raise RequestError(f"{field}.image_url.url", "a data URL must be data:<media type>;base64,<data>")
        return ImagePart(data=match["data"], media_type=match["media"])
    return ImagePart(url=url)


def _assistant(field: str, m: w.AssistantMessageIn) -> Message:
    if isinstance(m.content, str):
        texts = [m.content]
    else:
        texts = [p.text if isinstance(p, w.TextPartIn) else p.refusal for p in m.content or ()]
    calls: list[Part] = [ToolCallPart(c.id, c.function.name, c.function.arguments) for c in m.tool_calls]
    if not texts and not calls:
        raise RequestError(f"{field}.content", "an assistant message needs content or tool_calls")
    texts = [t for t in texts if t or not calls]  # an empty content beside tool calls says nothing
    return Message(role="assistant", content=(*(TextPart(t) for t in texts), *calls))


def _tool(tool: w.ToolIn) -> ToolSpec:
    fn = tool.function
    if fn.parameters is None:
        return ToolSpec(fn.name, fn.description)
    return ToolSpec(fn.name, fn.description, fn.parameters)


def _tool_choice(choice: str | w.NamedToolChoiceIn | None, tools: tuple[ToolSpec, ...]) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, w.NamedToolChoiceIn):
        if choice.function.name not in {t.name for t in tools}:
            raise RequestError("tool_choice", f"names tool {choice.function.name!r}, which is not in tools")
        return ToolChoiceNamed(choice.function.name)
    if choice == "required" and not tools:
        raise RequestError("tool_choice", "'required' needs at least one tool")
    return ToolChoiceMode("none" if choice == "none" else "required" if choice == "required" else "auto")


def _response_format(fmt: w.TextFormatIn | w.JsonObjectFormatIn | w.JsonSchemaFormatIn | None) -> ResponseFormat | None:
    match fmt:
        case w.JsonSchemaFormatIn(json_schema=spec):
            return JsonSchemaFormat(spec.name, spec.schema or {}, strict=spec.strict is True)
        case w.JsonObjectFormatIn():
            return JsonObjectFormat()
        case w.TextFormatIn():
            return TextFormat()
    return None


def decode_error(exc: msgspec.DecodeError) -> RequestError:
    """A body the decoder rejected, as a ``RequestError`` naming the field (``body`` for bad JSON)."""
    if not isinstance(exc, msgspec.ValidationError):
        return RequestError("body", f"not valid JSON ({exc})")
    match = _AT_PATH.match(str(exc))
    assert match is not None  # the pattern matches any text
    message, path = match["msg"], (match["path"] or "").lstrip(".")
    missing = _MISSING.match(message)
    if missing:
        path = f"{path}.{missing['field']}" if path else missing["field"]
    return RequestError(path or "body", message[:1].lower() + message[1:])


# -- answers ------------------------------------------------------------------------------------


def usage_out(usage: Usage) -> w.UsageOut:
    """OpenAI's usage: the prompt count includes cached tokens, which are also reported apart."""
    prompt = usage.total_input_tokens
    return w.UsageOut(
        prompt, usage.output_tokens, prompt + usage.output_tokens, w.PromptDetailsOut(usage.cache_read_tokens)
    )


def route_out(route: Route, request_id: str) -> w.RouteOut:
    """The ``interlock`` extension member for ``route``."""
    return w.RouteOut(
        request_id=request_id, model=route.model, provider=route.provider, model_class=route.model_class,
        task=route.task, degraded=route.degraded, degraded_reason=route.degraded_reason, hedged=route.hedged,
        cost_cents=route.cost_cents, attempts=len(route.attempts),
    )


def route_headers(route: Route | None, request_id: str) -> dict[str, str]:
    """The ``x-interlock-*`` headers: request id always, how it was served once the route is known."""
    headers = {"x-interlock-request-id": request_id}
    if route is None:
        return headers
    headers.update({
        "x-interlock-model": route.model,
        "x-interlock-provider": route.provider,
        "x-interlock-degraded": "true" if route.degraded else "false",
        "x-interlock-hedged": "true" if route.hedged else "false",
        "x-interlock-cost-cents": f"{route.cost_cents:.6f}",
    })
    if route.degraded_reason:
        headers["x-interlock-degraded-reason"] = route.degraded_reason
    return headers


def finish_out(reason: FinishReason) -> str:
    """OpenAI's finish reasons; interlock's ``error`` / ``cancelled`` never reach a finished answer."""
    return reason if reason in _OPENAI_FINISH else "stop"


class Answer:
    """Folds a request's events into one non-streamed ``chat.completion``."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.calls: list[w.ToolCallOut] = []
        self.usage = Usage()
        self.finish: FinishReason = "stop"
        self.route: Route | None = None

    def add(self, event: StreamEvent | RouteEvent) -> None:
        """Fold one event in."""
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ThinkingDelta):
            self.thinking.append(event.text)
        elif isinstance(event, ToolCallDone):
            self.calls.append(w.ToolCallOut(event.id, w.FunctionCallOut(event.name, event.arguments)))
        elif isinstance(event, UsageEvent):
            self.usage = self.usage + event.usage
        elif isinstance(event, Finish):
            self.finish = event.reason
        elif isinstance(event, RouteEvent):
            self.route = event.route

    def completion(self, request_id: str, created: int, requested: str) -> w.ChatCompletionOut:
        """The ``chat.completion`` body; ``model`` is the model that served, else the one asked for."""
        text, thinking = "".join(self.text), "".join(self.thinking)
        message = w.MessageOut(
            content=text if text or not self.calls else None,
            tool_calls=self.calls or msgspec.UNSET,
            reasoning_content=thinking or msgspec.UNSET,
        )
        route = self.route
        return w.ChatCompletionOut(
            id=f"chatcmpl-{request_id}", created=created, model=route.model if route else requested,
            choices=[w.ChoiceOut(message=message, finish_reason=finish_out(self.finish))],
            usage=usage_out(self.usage), interlock=route_out(route, request_id) if route else msgspec.UNSET,
        )


class ChunkWriter:
    """Turns a request's events into SSE bytes, one ``chat.completion.chunk`` per content event."""

    def __init__(self, request_id: str, created: int, requested: str, *, include_usage: bool) -> None:
        self._id = f"chatcmpl-{request_id}"
        self._request_id = request_id
        self._created = created
        self._model = requested
        self._include_usage = include_usage
        self._role_sent = False
        self._announced: set[int] = set()
        self._usage = Usage()
        self._finish: FinishReason = "stop"

    def feed(self, event: StreamEvent | RouteEvent) -> bytes:
        """The bytes to send for ``event`` (empty when it only updates state)."""
        if isinstance(event, TextDelta):
            return self._delta(content=event.text) if event.text else b""
        if isinstance(event, ToolCallDelta):
            self._announced.add(event.index)
            fn = w.FunctionDeltaOut(name=event.name or msgspec.UNSET, arguments=event.arguments)
            if event.id is None:
                call = w.ToolCallDeltaOut(index=event.index, function=fn)
            else:
                call = w.ToolCallDeltaOut(index=event.index, function=fn, id=event.id, type="function")
            return self._delta(tool_calls=[call])
        if isinstance(event, ToolCallDone):
            if event.index in self._announced:
                return b""
            self._announced.add(event.index)
            fn = w.FunctionDeltaOut(name=event.name, arguments=event.arguments)
            call = w.ToolCallDeltaOut(index=event.index, function=fn, id=event.id, type="function")
            return self._delta(tool_calls=[call])
        if isinstance(event, ThinkingDelta):
            return self._delta(reasoning_content=event.text) if event.text else b""
        if isinstance(event, UsageEvent):
            self._usage = self._usage + event.usage
        elif isinstance(event, Finish):
            self._finish = event.reason
        elif isinstance(event, RouteEvent):
            return self._close(event.route)
        return b""

    def _delta(
        self,
        *,
        content: str | msgspec.UnsetType = msgspec.UNSET,
        reasoning_content: str | msgspec.UnsetType = msgspec.UNSET,
        tool_calls: list[w.ToolCallDeltaOut] | msgspec.UnsetType = msgspec.UNSET,
    ) -> bytes:
        role: str | msgspec.UnsetType = msgspec.UNSET
        if not self._role_sent:
            self._role_sent, role = True, "assistant"
        delta = w.DeltaOut(role=role, content=content, reasoning_content=reasoning_content, tool_calls=tool_calls)
        return self._data(self._chunk([w.ChunkChoiceOut(delta=delta)]))

    def _chunk(
        self,
        choices: list[w.ChunkChoiceOut],
        usage: w.UsageOut | msgspec.UnsetType = msgspec.UNSET,
        interlock: w.RouteOut | msgspec.UnsetType = msgspec.UNSET,
    ) -> w.ChatCompletionChunkOut:
        return w.ChatCompletionChunkOut(
            id=self._id, created=self._created, model=self._model, choices=choices, usage=usage, interlock=interlock
        )

    def _close(self, route: Route) -> bytes:
        self._model = route.model
        info = route_out(route, self._request_id)
        role: str | msgspec.UnsetType = msgspec.UNSET if self._role_sent else "assistant"
        last = w.ChunkChoiceOut(delta=w.DeltaOut(role=role), finish_reason=finish_out(self._finish))
        out = [self._data(self._chunk([last], interlock=info))]
        if self._include_usage:
            out.append(self._data(self._chunk([], usage=usage_out(self._usage), interlock=info)))
        comments = "".join(f": {k}: {v}\n" for k, v in route_headers(route, self._request_id).items())
        out.append(comments.encode() + b"\ndata: [DONE]\n\n")
        return b"".join(out)

    @staticmethod
    def _data(chunk: msgspec.Struct) -> bytes:
        return b"data: " + w.ENCODER.encode(chunk) + b"\n\n"

    @staticmethod
    def error(body: w.ErrorOut) -> bytes:
        """The SSE event that ends a stream which failed after its first chunk."""
        return b"data: " + w.ENCODER.encode(body) + b"\n\n"


# -- errors -------------------------------------------------------------------------------------


class HttpFailure(msgspec.Struct, frozen=True):
    """An error as the gateway answers it: status, OpenAI's error body, and a retry hint in seconds."""

    status: int
    body: w.ErrorOut
    retry_after: float | None = None


_INVALID = "invalid_request_error"
# kind -> (status, OpenAI error type); the code is the kind itself.
_BY_KIND: dict[ErrorClass, tuple[int, str]] = {
    ErrorClass.BAD_REQUEST: (400, _INVALID),
    ErrorClass.CONTEXT_LENGTH: (400, _INVALID),
    ErrorClass.CONTENT_POLICY: (400, _INVALID),
    ErrorClass.CONTENT_FILTER: (400, _INVALID),
    ErrorClass.RATE_LIMIT: (429, "rate_limit_error"),
    ErrorClass.OVERLOADED: (503, "server_error"),
    ErrorClass.AUTH: (502, "upstream_error"),  # the provider refused *our* key: not the client's fault
    ErrorClass.TIMEOUT: (504, "timeout_error"),
}
_CLIENT_KINDS = frozenset(k for k, (status, _) in _BY_KIND.items() if status == 400)
_LOOKUP_FIELDS = frozenset({"task", "model", "model_class"})


def failure(status: int, message: str, *, kind: str, param: str | None = None, code: str | None = None) -> HttpFailure:
    """An ``HttpFailure`` built by hand (401, 404, 413 ... raised by the gateway itself)."""
    return HttpFailure(status, w.ErrorOut(w.ErrorBody(message, kind, param, code)))


def http_failure(exc: InterlockError) -> HttpFailure:
    """Map the error tree to HTTP: the request's fault is 4xx, the fleet's 5xx; 429 asks to come back."""
    if isinstance(exc, RequestError):
        if exc.field in _LOOKUP_FIELDS and exc.problem.startswith("unknown"):
            return failure(404, str(exc), kind=_INVALID, param=exc.field, code="model_not_found")
        return failure(400, str(exc), kind=_INVALID, param=exc.field, code="invalid_value")
    if isinstance(exc, BudgetExceeded):
        return failure(429, str(exc), kind="insufficient_quota", code="budget_exceeded")
    if isinstance(exc, ChainExhausted):
        cause = exc.errors[-1][1] if exc.errors else None
        if cause is not None and (isinstance(cause, RequestError) or cause.kind in _CLIENT_KINDS | {ErrorClass.AUTH}):
            return http_failure(cause)
        retry = min((r for r in (_retry_after(e) for _, e in exc.errors) if r is not None), default=None)
        return HttpFailure(503, w.ErrorOut(w.ErrorBody(str(exc), "server_error", None, "chain_exhausted")), retry)
    if isinstance(exc, AdmissionRejected):
        body = w.ErrorBody(str(exc), "server_error", None, exc.reason)
        return HttpFailure(503, w.ErrorOut(body), exc.retry_after)
    status, kind = _BY_KIND.get(exc.kind, (500, "server_error"))
    return HttpFailure(status, w.ErrorOut(w.ErrorBody(str(exc), kind, None, str(exc.kind))), _retry_after(exc))


def _retry_after(exc: InterlockError) -> float | None:
    if isinstance(exc, ProviderError | AdmissionRejected):
        return exc.retry_after
    return None
