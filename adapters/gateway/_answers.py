"""The gateway's answers: canonical events -> one ``chat.completion``, or SSE ``chat.completion.chunk``s.

Streams: content chunks go out as events arrive (the first carries ``role``; a refusal goes as
``delta.refusal``, never as content); every chunk has ``usage: null`` but the usage chunk. The
chunk with the ``finish_reason`` is held until the ``RouteEvent`` so that it can carry the
``interlock`` extension member; then the usage chunk (when asked for), one SSE comment line per
``x-interlock-*`` header, and ``data: [DONE]``. Tool calls are numbered 0, 1... and get unique
ids (``ToolCallIds``); ``ToolCallDone`` is sent only for a call no fragment announced. Content
chunks name the model as asked (a job, say); the final ones name the model that served, once it
is known.

Usage the provider did not report is unknown: ``usage`` is null (in the answer, or in the usage
chunk), never zeros, and so is an estimate the door billed from (``Route.usage_estimated``).
Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import msgspec

from interlock._errors import InterlockError
from interlock._types import (
    Finish,
    FinishReason,
    RefusalDelta,
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
from interlock.adapters.gateway._failures import http_failure
from interlock.adapters.gateway._tool_calls import ToolCallIds
from interlock.adapters.gateway._wire import RoutedChunkOut, RoutedCompletionOut, RouteOut, SkippedOut
from interlock.adapters.providers.openai._server_wire import (
    ENCODER,
    ChoiceOut,
    ChunkChoiceOut,
    DeltaOut,
    FunctionCallOut,
    MessageOut,
    PromptDetailsOut,
    ToolCallOut,
    UsageOut,
)

_OPENAI_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter"})
_UNSET = msgspec.UNSET


def usage_out(usage: Usage | None, route: Route | None) -> UsageOut | None:
    """OpenAI's usage (the prompt count includes cached tokens, also reported apart); None if unknown."""
    if usage is None or (route is not None and route.usage_estimated):
        return None
    prompt, details = usage.total_input_tokens, PromptDetailsOut(usage.cache_read_tokens)
    return UsageOut(prompt, usage.output_tokens, prompt + usage.output_tokens, details)


def route_out(route: Route, request_id: str, provider_reason: str) -> RouteOut:
    """The ``interlock`` extension member for ``route``."""
    return RouteOut(
        request_id=request_id,
        model=route.model,
        provider=route.provider,
        model_class=route.model_class,
        task=route.task,
        degraded=route.degraded,
        degraded_reason=route.degraded_reason,
        hedged=route.hedged,
        cost_cents=route.cost_cents,
        attempts=len(route.attempts),
        first_choice=route.first_choice,
        served_model=route.served_model,
        cache_hit=route.cache_hit,
        usage_estimated=route.usage_estimated,
        provider_finish_reason=provider_reason,
        aux_cost_cents=route.aux_cost_cents,
        skipped=[SkippedOut(s.model, s.reason, s.detail) for s in route.skipped],
    )


def route_headers(route: Route | None, request_id: str, provider_reason: str = "") -> dict[str, str]:
    """The ``x-interlock-*`` headers: request id always, how it was served once the route is known."""
    headers = {"x-interlock-request-id": request_id}
    if route is None:
        return headers
    headers.update(
        {
            "x-interlock-model": route.model,
            "x-interlock-provider": route.provider,
            "x-interlock-degraded": _flag(route.degraded),
            "x-interlock-hedged": _flag(route.hedged),
            "x-interlock-cache-hit": _flag(route.cache_hit),
            "x-interlock-usage-estimated": _flag(route.usage_estimated),
            "x-interlock-cost-cents": f"{route.cost_cents:.6f}",
        }
    )
    optional = {
        "x-interlock-first-choice": route.first_choice,
        "x-interlock-degraded-reason": route.degraded_reason or "",
        "x-interlock-served-model": route.served_model,
        "x-interlock-provider-finish-reason": provider_reason,
    }
    headers.update({name: value for name, value in optional.items() if value})
    return headers


def stream_headers(request_id: str, planned: list[str]) -> dict[str, str]:
    """A stream's headers, sent before its route is known: the request id and the job's first choice.

    ``planned`` is what the door's ``on_plan`` appended (the first choice, once planned).
    """
    headers = route_headers(None, request_id)
    if planned and planned[0]:
        headers["x-interlock-first-choice"] = planned[0]
    return headers


def _flag(value: bool) -> str:
    return "true" if value else "false"


def finish_out(reason: FinishReason) -> str:
    """OpenAI's finish reasons; interlock's ``error`` / ``cancelled`` never reach a finished answer."""
    return reason if reason in _OPENAI_FINISH else "stop"


class Answer:
    """Folds a request's events into one non-streamed ``chat.completion``."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.refusal: list[str] = []
        self.calls: list[ToolCallOut] = []
        self.usage: Usage | None = None  # None until the provider reports some
        self.finish: FinishReason = "stop"
        self.provider_reason = ""
        self.route: Route | None = None
        self._ids = ToolCallIds()

    def add(self, event: StreamEvent | RouteEvent) -> None:
        """Fold one event in."""
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ThinkingDelta):
            self.thinking.append(event.text)
        elif isinstance(event, RefusalDelta):
            self.refusal.append(event.text)
        elif isinstance(event, ToolCallDone):
            _, call_id = self._ids.open(event.index, event.id)
            fn = FunctionCallOut(name=event.name, arguments=event.arguments)
            self.calls.append(ToolCallOut(id=call_id, type="function", function=fn))
        elif isinstance(event, UsageEvent):
            self.usage = event.usage if self.usage is None else self.usage + event.usage
        elif isinstance(event, Finish):
            self.finish, self.provider_reason = event.reason, event.provider_reason
        elif isinstance(event, RouteEvent):
            self.route = event.route

    def completion(self, request_id: str, created: int, requested: str) -> RoutedCompletionOut:
        """The ``chat.completion`` body; ``model`` is the model that served, else the one asked for."""
        text, thinking, refusal = "".join(self.text), "".join(self.thinking), "".join(self.refusal)
        message = MessageOut(
            content=text if text or not (self.calls or refusal) else None,
            refusal=refusal or None,
            tool_calls=self.calls or _UNSET,
            reasoning_content=thinking or _UNSET,
        )
        route = self.route
        return RoutedCompletionOut(
            id=f"chatcmpl-{request_id}",
            created=created,
            model=route.model if route else requested,
            choices=[ChoiceOut(message=message, finish_reason=finish_out(self.finish))],
            usage=usage_out(self.usage, route),
            interlock=route_out(route, request_id, self.provider_reason) if route else _UNSET,
        )

    def headers(self, request_id: str) -> dict[str, str]:
        """The ``x-interlock-*`` headers of the folded answer."""
        return route_headers(self.route, request_id, self.provider_reason)


class ChunkWriter:
    """Turns a request's events into SSE bytes, one ``chat.completion.chunk`` per content event."""

    def __init__(self, request_id: str, created: int, requested: str, *, include_usage: bool) -> None:
        self._id = f"chatcmpl-{request_id}"
        self._request_id = request_id
        self._created = created
        self._model = requested
        self._include_usage = include_usage
        self._role_sent = False
        self._ids = ToolCallIds()
        self._usage: Usage | None = None
        self._finish: FinishReason = "stop"
        self._provider_reason = ""

    def feed(self, event: StreamEvent | RouteEvent) -> bytes:
        """The bytes to send for ``event`` (empty when it only updates state)."""
        if isinstance(event, TextDelta):
            return self._delta(DeltaOut(content=event.text)) if event.text else b""
        if isinstance(event, ToolCallDelta):
            return self._call(event.index, event.id, event.name or _UNSET, event.arguments)
        if isinstance(event, ToolCallDone):
            if self._ids.seen(event.index):
                return b""
            return self._call(event.index, event.id, event.name, event.arguments)
        if isinstance(event, RefusalDelta):
            return self._delta(DeltaOut(refusal=event.text)) if event.text else b""
        if isinstance(event, ThinkingDelta):
            return self._delta(DeltaOut(reasoning_content=event.text)) if event.text else b""
        if isinstance(event, UsageEvent):
            self._usage = event.usage if self._usage is None else self._usage + event.usage
        elif isinstance(event, Finish):
            self._finish, self._provider_reason = event.reason, event.provider_reason
        elif isinstance(event, RouteEvent):
            return self._close(event.route)
        return b""

    def _call(self, index: int, provider_id: str | None, name: str | msgspec.UnsetType, arguments: str) -> bytes:
        """A call's fragment at its dense position; its first carries the id and type."""
        first = not self._ids.seen(index)
        position, call_id = self._ids.open(index, provider_id)
        fn = FunctionCallOut(name=name, arguments=arguments)
        if first:
            call = ToolCallOut(index=position, id=call_id, type="function", function=fn)
        else:
            call = ToolCallOut(index=position, function=fn)
        return self._delta(DeltaOut(tool_calls=[call]))

    def _delta(self, delta: DeltaOut) -> bytes:
        if not self._role_sent:
            self._role_sent = True
            delta = msgspec.structs.replace(delta, role="assistant")
        return self._data(self._chunk([ChunkChoiceOut(delta=delta)]))

    def _chunk(
        self,
        choices: list[ChunkChoiceOut],
        usage: UsageOut | None = None,
        interlock: RouteOut | msgspec.UnsetType = _UNSET,
    ) -> RoutedChunkOut:
        return RoutedChunkOut(
            id=self._id, created=self._created, model=self._model, choices=choices, usage=usage, interlock=interlock
        )

    def _close(self, route: Route) -> bytes:
        self._model = route.model
        info = route_out(route, self._request_id, self._provider_reason)
        role: str | msgspec.UnsetType = _UNSET if self._role_sent else "assistant"
        last = ChunkChoiceOut(delta=DeltaOut(role=role), finish_reason=finish_out(self._finish))
        out = [self._data(self._chunk([last], interlock=info))]
        if self._include_usage:
            out.append(self._data(self._chunk([], usage=usage_out(self._usage, route), interlock=info)))
        headers = route_headers(route, self._request_id, self._provider_reason)
        comments = "".join(f": {k}: {v}\n" for k, v in headers.items())
        out.append(comments.encode() + b"\ndata: [DONE]\n\n")
        return b"".join(out)

    @staticmethod
    def _data(chunk: msgspec.Struct) -> bytes:
        return b"data: " + ENCODER.encode(chunk) + b"\n\n"

    async def end(self) -> bytes:
        """Nothing: the stream's last bytes went with its ``RouteEvent``."""
        return b""

    @staticmethod
    def fail(error: InterlockError) -> bytes:
        """The SSE event that ends a stream which failed after its first chunk: OpenAI's error body."""
        return b"data: " + ENCODER.encode(http_failure(error).body) + b"\n\n"
