"""The Anthropic Messages dialect's answers: canonical events to a ``message`` or its event stream.

``Blocks`` numbers the content blocks in the order the model produced them (thinking, text,
tool_use); ``MessageFold`` folds a whole answer, ``EventWriter`` writes the stream. See
``_messages`` for the stop-reason and usage rules.
"""

from __future__ import annotations

import msgspec
from starlette.responses import Response

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
from interlock.adapters.gateway import _messages_wire as w
from interlock.adapters.gateway._answers import route_headers, route_out
from interlock.adapters.gateway._failures import HttpFailure, http_failure
from interlock.adapters.gateway._tool_calls import ToolCallIds

ANTHROPIC_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "overloaded_error",
    503: "overloaded_error",
    504: "timeout_error",
}
_EMPTY = msgspec.Raw(b"{}")
_ANY_JSON = msgspec.json.Decoder()


def stop_reason(finish: FinishReason, provider_reason: str, refused: bool) -> str:
    """Anthropic's stop reason for a canonical finish (``error`` / ``cancelled`` never finish an answer)."""
    if refused or finish == "content_filter":
        return "refusal"
    if finish == "length":
        return "max_tokens"
    if finish == "tool_calls":
        return "tool_use"
    return "stop_sequence" if provider_reason == "stop_sequence" else "end_turn"


def usage_out(usage: Usage | None, route: Route | None) -> w.UsageOut:
    """Anthropic's usage (``input_tokens`` excludes cached input, as the canonical count does); null if unknown."""
    if usage is None or (route is not None and route.usage_estimated):
        return w.UsageOut(None, None)
    return w.UsageOut(usage.input_tokens, usage.output_tokens, usage.cache_write_tokens, usage.cache_read_tokens)


def _tool_input(arguments: str) -> msgspec.Raw:
    """A call's arguments as ``input``: its JSON, ``{}`` when empty, a JSON string if it is not JSON."""
    if not arguments.strip():
        return _EMPTY
    try:
        _ANY_JSON.decode(arguments)
    except msgspec.DecodeError:
        return msgspec.Raw(w.ENCODER.encode(arguments))  # kept, not dropped: the client sees what came
    return msgspec.Raw(arguments.encode())


class _Block:
    """One content block being built: its kind, text (or arguments) so far, and a call's id and name."""

    __slots__ = ("call_id", "kind", "name", "parts", "signature")

    def __init__(self, kind: str, call_id: str = "", name: str = "") -> None:
        self.kind, self.call_id, self.name = kind, call_id, name
        self.parts: list[str] = []
        self.signature = ""

    def start(self) -> w.BlockOut:
        if self.kind == "tool_use":
            return w.ToolUseOut(self.call_id, self.name, _EMPTY)
        return w.ThinkingOut("", "") if self.kind == "thinking" else w.TextOut("")

    def whole(self) -> w.BlockOut:
        text = "".join(self.parts)
        if self.kind == "tool_use":
            return w.ToolUseOut(self.call_id, self.name, _tool_input(text))
        return w.ThinkingOut(text, self.signature) if self.kind == "thinking" else w.TextOut(text)


class Blocks:
    """Canonical events -> Anthropic's content blocks, opened and closed in order as its stream does.

    ``feed`` returns the block events one canonical event makes; ``content`` the blocks whole.
    One block is open at a time; a tool call opens once its name is known (fragments before it
    wait) and closes at its ``ToolCallDone``, which completes arguments the fragments left short.
    """

    def __init__(self) -> None:
        self.blocks: list[_Block] = []
        self.refused = False
        self._open: int | None = None
        self._calls: dict[int, int] = {}  # the provider's call index -> its block
        self._early: dict[int, list[str]] = {}  # fragments of a call whose name is not known yet
        self._ids = ToolCallIds()

    def feed(self, event: StreamEvent | RouteEvent) -> list[msgspec.Struct]:
        """The block events for ``event`` (none for what only finishes, counts or routes)."""
        match event:
            case TextDelta(text=text) if text:
                return self._more("text", text)
            case RefusalDelta(text=text) if text:
                self.refused = True
                return self._more("text", text)
            case ThinkingDelta(text=text, signature=signature):
                return self._thinking(text, signature)
            case ToolCallDelta():
                return self._fragment(event)
            case ToolCallDone():
                return self._done(event)
        return []

    def close(self) -> list[msgspec.Struct]:
        """Close the open block, if any."""
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [w.BlockStopOut(index)]

    def content(self) -> list[w.BlockOut]:
        """Every block, whole."""
        return [block.whole() for block in self.blocks]

    def _more(self, kind: str, text: str) -> list[msgspec.Struct]:
        out = self._ensure(kind)
        index = len(self.blocks) - 1
        self.blocks[index].parts.append(text)
        delta = w.ThinkingDeltaOut(text) if kind == "thinking" else w.TextDeltaOut(text)
        return [*out, w.BlockDeltaOut(index, delta)]

    def _thinking(self, text: str, signature: str) -> list[msgspec.Struct]:
        out = self._more("thinking", text) if text else self._ensure("thinking") if signature else []
        if signature:
            index = len(self.blocks) - 1
            self.blocks[index].signature = signature
            out.append(w.BlockDeltaOut(index, w.SignatureDeltaOut(signature)))
        return out

    def _ensure(self, kind: str, call_id: str = "", name: str = "") -> list[msgspec.Struct]:
        """Open a block of ``kind`` unless the open one is of that kind (and not a tool call)."""
        if self._open is not None and kind != "tool_use" and self.blocks[self._open].kind == kind:
            return []
        out = self.close()
        block = _Block(kind, call_id, name)
        self.blocks.append(block)
        self._open = len(self.blocks) - 1
        return [*out, w.BlockStartOut(self._open, block.start())]

    def _fragment(self, event: ToolCallDelta) -> list[msgspec.Struct]:
        index = self._calls.get(event.index)
        if index is None:
            if not event.name:
                self._early.setdefault(event.index, []).append(event.arguments)
                return []
            out = self._open_call(event.index, event.id, event.name)
            return out + self._arguments(self._calls[event.index], event.arguments)
        if index != self._open:  # an earlier call, already closed: its ToolCallDone is what counts
            return []
        return self._arguments(index, event.arguments)

    def _open_call(self, provider_index: int, provider_id: str | None, name: str) -> list[msgspec.Struct]:
        _, call_id = self._ids.open(provider_index, provider_id)
        out = self._ensure("tool_use", call_id, name)
        self._calls[provider_index] = len(self.blocks) - 1
        early = "".join(self._early.pop(provider_index, []))
        return out + self._arguments(self._calls[provider_index], early)

    def _arguments(self, index: int, text: str) -> list[msgspec.Struct]:
        if not text:
            return []
        self.blocks[index].parts.append(text)
        return [w.BlockDeltaOut(index, w.JsonDeltaOut(text))]

    def _done(self, event: ToolCallDone) -> list[msgspec.Struct]:
        index = self._calls.get(event.index)
        out: list[msgspec.Struct] = []
        if index is None:
            out = self._open_call(event.index, event.id, event.name)
            index = self._calls[event.index]
        if index != self._open:
            return out
        sent = "".join(self.blocks[index].parts)
        if event.arguments.startswith(sent):  # the fragments fell short of the whole: send the rest
            out += self._arguments(index, event.arguments[len(sent) :])
        return out + self.close()


class _Outcome:
    """What an answer's last events say: usage, finish, and the route."""

    def __init__(self) -> None:
        self.usage: Usage | None = None  # None until the provider reports some
        self.finish: FinishReason = "stop"
        self.provider_reason = ""
        self.route: Route | None = None

    def add(self, event: StreamEvent | RouteEvent) -> None:
        if isinstance(event, UsageEvent):
            self.usage = event.usage if self.usage is None else self.usage + event.usage
        elif isinstance(event, Finish):
            self.finish, self.provider_reason = event.reason, event.provider_reason
        elif isinstance(event, RouteEvent):
            self.route = event.route


class MessageFold:
    """Folds a request's events into one non-streamed ``message``."""

    def __init__(self) -> None:
        self._blocks = Blocks()
        self._outcome = _Outcome()

    def add(self, event: StreamEvent | RouteEvent) -> None:
        """Fold one event in."""
        self._blocks.feed(event)
        self._outcome.add(event)

    def message(self, message_id: str, request_id: str, requested: str) -> w.MessageOut:
        """The ``message``; ``model`` is the model that served, else the one asked for."""
        o, route = self._outcome, self._outcome.route
        return w.MessageOut(
            id=message_id,
            model=route.model if route else requested,
            content=self._blocks.content(),
            stop_reason=stop_reason(o.finish, o.provider_reason, self._blocks.refused),
            usage=usage_out(o.usage, route),
            interlock=route_out(route, request_id, o.provider_reason) if route else msgspec.UNSET,
        )

    def headers(self, request_id: str) -> dict[str, str]:
        """The ``x-interlock-*`` headers and ``request-id`` of the folded answer."""
        return headers_of(self._outcome.route, request_id, self._outcome.provider_reason)


class EventWriter:
    """Turns a request's events into Anthropic's SSE events (the edge's ``StreamWriter``).

    The first event is preceded by ``message_start`` and a ``ping``; the ``RouteEvent`` closes
    the open block and sends ``message_delta`` (stop reason, usage, the ``interlock`` member),
    ``message_stop``, then one SSE comment line per ``x-interlock-*`` header.
    """

    def __init__(self, message_id: str, request_id: str, requested: str) -> None:
        self._message_id, self._request_id, self._model = message_id, request_id, requested
        self._started = False
        self._blocks = Blocks()
        self._outcome = _Outcome()

    def feed(self, event: StreamEvent | RouteEvent) -> bytes:
        """The bytes to send for ``event`` (empty when it only updates state)."""
        out: list[msgspec.Struct] = []
        if not self._started:
            self._started = True
            shell = w.MessageOut(
                id=self._message_id, model=self._model, content=[], stop_reason=None, usage=w.UsageOut(None, None)
            )
            out += [w.MessageStartOut(shell), w.PingOut()]
        out += self._blocks.feed(event)
        self._outcome.add(event)
        data = b"".join(map(sse, out))
        if isinstance(event, RouteEvent):
            data += self._close(event.route)
        return data

    def _close(self, route: Route) -> bytes:
        o = self._outcome
        stop = w.StopOut(stop_reason(o.finish, o.provider_reason, self._blocks.refused))
        info = route_out(route, self._request_id, o.provider_reason)
        events = [*self._blocks.close(), w.MessageDeltaOut(stop, usage_out(o.usage, route), info), w.MessageStopOut()]
        headers = route_headers(route, self._request_id, o.provider_reason)
        return b"".join(map(sse, events)) + "".join(f": {k}: {v}\n" for k, v in headers.items()).encode() + b"\n"

    async def end(self) -> bytes:
        """Nothing: the stream's last bytes went with its ``RouteEvent``."""
        return b""

    def fail(self, error: InterlockError) -> bytes:
        """The ``error`` event that ends a stream which failed after its start: Anthropic's error body."""
        return sse(error_body(http_failure(error), self._request_id))


def sse(event: msgspec.Struct) -> bytes:
    name = str(type(event).__struct_config__.tag)
    return b"event: " + name.encode() + b"\ndata: " + w.ENCODER.encode(event) + b"\n\n"


def headers_of(route: Route | None, request_id: str, provider_reason: str = "") -> dict[str, str]:
    """The ``x-interlock-*`` headers, and ``request-id`` (where Anthropic's clients read it) with the same id."""
    return {**route_headers(route, request_id, provider_reason), "request-id": request_id}


def json_out(body: msgspec.Struct, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(w.ENCODER.encode(body), status_code=status, headers=headers, media_type="application/json")


def anthropic_error(fail: HttpFailure) -> Response:
    """An error as Anthropic's wire answers it (the ``render`` of ``guarded`` for this dialect)."""
    return error_response(fail, None)


def error_response(fail: HttpFailure, request_id: str | None) -> Response:
    """``fail`` as Anthropic's error body, its status and retry headers, and ``request-id`` when known."""
    headers = fail.headers()
    if request_id is not None:
        headers.update(headers_of(None, request_id))
    return json_out(error_body(fail, request_id), status=fail.status, headers=headers)


def error_body(fail: HttpFailure, request_id: str | None) -> w.ErrorOut:
    """Anthropic's error object for ``fail``: the type its status stands for, interlock's code as detail."""
    status, source = fail.status, fail.body.error
    kind = ANTHROPIC_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    details = w.ErrorDetailsOut(source.code) if source.code else None
    return w.ErrorOut(w.ErrorBodyOut(type=kind, message=source.message, details=details), request_id)


# -- requests -----------------------------------------------------------------------------------
