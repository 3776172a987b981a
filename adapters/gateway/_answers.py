"""The gateway's answers: canonical events -> one ``chat.completion``, or SSE ``chat.completion.chunk``s.

Streams: content chunks go out as events arrive (the first carries ``role``); the chunk with the
``finish_reason`` is held until the ``RouteEvent`` so that it can carry the ``interlock`` extension
member; then the usage chunk (when asked for), one SSE comment line per ``x-interlock-*`` header,
and ``data: [DONE]``. ``ToolCallDone`` is sent only for a call no fragment announced. Content chunks
name the model as asked (a job, say); the final ones name the model that served, once it is known.
Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import msgspec

from interlock._types import (
    Finish,
    FinishReason,
    Route,
    RouteEvent,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
    Usage,
    UsageEvent,
)
from interlock.adapters.gateway._wire import RoutedChunkOut, RoutedCompletionOut, RouteOut
from interlock.adapters.providers.openai._server_wire import (
    ENCODER,
    ChoiceOut,
    ChunkChoiceOut,
    DeltaOut,
    ErrorOut,
    FunctionCallOut,
    MessageOut,
    PromptDetailsOut,
    ToolCallOut,
    UsageOut,
)

_OPENAI_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter"})


def usage_out(usage: Usage) -> UsageOut:
    """OpenAI's usage: the prompt count includes cached tokens, which are also reported apart."""
    prompt = usage.total_input_tokens
    details = PromptDetailsOut(usage.cache_read_tokens)
    return UsageOut(prompt, usage.output_tokens, prompt + usage.output_tokens, details)


def route_out(route: Route, request_id: str) -> RouteOut:
    """The ``interlock`` extension member for ``route``."""
    return RouteOut(
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
        self.calls: list[ToolCallOut] = []
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
            fn = FunctionCallOut(name=event.name, arguments=event.arguments)
            self.calls.append(ToolCallOut(id=event.id, type="function", function=fn))
        elif isinstance(event, UsageEvent):
            self.usage = self.usage + event.usage
        elif isinstance(event, Finish):
            self.finish = event.reason
        elif isinstance(event, RouteEvent):
            self.route = event.route

    def completion(self, request_id: str, created: int, requested: str) -> RoutedCompletionOut:
        """The ``chat.completion`` body; ``model`` is the model that served, else the one asked for."""
        text, thinking = "".join(self.text), "".join(self.thinking)
        message = MessageOut(
            content=text if text or not self.calls else None,
            tool_calls=self.calls or msgspec.UNSET,
            reasoning_content=thinking or msgspec.UNSET,
        )
        route = self.route
        return RoutedCompletionOut(
            id=f"chatcmpl-{request_id}", created=created, model=route.model if route else requested,
            choices=[ChoiceOut(message=message, finish_reason=finish_out(self.finish))],
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
            fn = FunctionCallOut(name=event.name or msgspec.UNSET, arguments=event.arguments)
            if event.id is None:
                call = ToolCallOut(index=event.index, function=fn)
            else:
                call = ToolCallOut(index=event.index, function=fn, id=event.id, type="function")
            return self._delta(tool_calls=[call])
        if isinstance(event, ToolCallDone):
            if event.index in self._announced:
                return b""
            self._announced.add(event.index)
            fn = FunctionCallOut(name=event.name, arguments=event.arguments)
            call = ToolCallOut(index=event.index, function=fn, id=event.id, type="function")
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
        tool_calls: list[ToolCallOut] | msgspec.UnsetType = msgspec.UNSET,
    ) -> bytes:
        role: str | msgspec.UnsetType = msgspec.UNSET
        if not self._role_sent:
            self._role_sent, role = True, "assistant"
        delta = DeltaOut(role=role, content=content, reasoning_content=reasoning_content, tool_calls=tool_calls)
        return self._data(self._chunk([ChunkChoiceOut(delta=delta)]))

    def _chunk(
        self,
        choices: list[ChunkChoiceOut],
        usage: UsageOut | msgspec.UnsetType = msgspec.UNSET,
        interlock: RouteOut | msgspec.UnsetType = msgspec.UNSET,
    ) -> RoutedChunkOut:
        return RoutedChunkOut(
            id=self._id, created=self._created, model=self._model, choices=choices, usage=usage, interlock=interlock
        )

    def _close(self, route: Route) -> bytes:
        self._model = route.model
        info = route_out(route, self._request_id)
        role: str | msgspec.UnsetType = msgspec.UNSET if self._role_sent else "assistant"
        last = ChunkChoiceOut(delta=DeltaOut(role=role), finish_reason=finish_out(self._finish))
        out = [self._data(self._chunk([last], interlock=info))]
        if self._include_usage:
            out.append(self._data(self._chunk([], usage=usage_out(self._usage), interlock=info)))
        comments = "".join(f": {k}: {v}\n" for k, v in route_headers(route, self._request_id).items())
        out.append(comments.encode() + b"\ndata: [DONE]\n\n")
        return b"".join(out)

    @staticmethod
    def _data(chunk: msgspec.Struct) -> bytes:
        return b"data: " + ENCODER.encode(chunk) + b"\n\n"

    @staticmethod
    def error(body: ErrorOut) -> bytes:
        """The SSE event that ends a stream which failed after its first chunk."""
        return b"data: " + ENCODER.encode(body) + b"\n\n"
