"""The Responses API's answers: canonical events -> output items, a ``response`` object, or its SSE stream.

``Output`` folds a request's events into output items and returns the stream events each one
makes; a whole answer keeps only the items. The stream (``ResponseWriter``): ``response.created``
and ``response.in_progress`` once the first event is in; per output item ``output_item.added``,
its content parts (``content_part.added``, ``output_text.delta`` / ``refusal.delta`` /
``reasoning_text.delta``, their ``.done``, ``content_part.done``) or its arguments
(``function_call_arguments.delta`` / ``.done``), ``output_item.done``; last ``response.completed``
(``response.incomplete`` after a token limit or a content filter) with the usage, and one SSE
comment per ``x-interlock-*`` header. A failure after the start is an ``error`` event, then
``response.failed`` with the output so far. Every event has a ``sequence_number``, 0 first.

Text and refusal go to one message item, a content part each in turn (a refusal is never text);
reasoning to a reasoning item; each call to its own function_call item, with a call id unique per
call (``ToolCallIds``); a call closes the message before it, and text after it opens another.
Usage the provider did not report is null, never zeros (also when the door billed an estimate).
Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from interlock._errors import InterlockError
from interlock._types import (
    Finish,
    FinishReason,
    Message,
    Part,
    RefusalDelta,
    Route,
    RouteEvent,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolCallPart,
    Usage,
    UsageEvent,
)
from interlock.adapters.gateway import _responses_events as e
from interlock.adapters.gateway import _responses_wire as w
from interlock.adapters.gateway._answers import route_headers, route_out
from interlock.adapters.gateway._failures import http_failure
from interlock.adapters.gateway._tool_calls import ToolCallIds
from interlock.adapters.providers.openai._server_wire import ENCODER

Keep = Callable[[w.ResponseOut, Message | None], Awaitable[None]]  # stores a finished response and its turn
_DELTAS: dict[str, type[e.TextDeltaEvent | e.RefusalDeltaEvent | e.ReasoningDeltaEvent]] = {
    "output_text": e.TextDeltaEvent,
    "refusal": e.RefusalDeltaEvent,
    "reasoning": e.ReasoningDeltaEvent,
}
_INCOMPLETE: dict[FinishReason, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}


class Shell:
    """What a response object echoes of its request, around the output it is given."""

    def __init__(self, wire: w.ResponsesRequest, tools: list[w.FunctionToolIn], request_id: str, created: int) -> None:
        self.wire, self.request_id, self.created = wire, request_id, created
        self.id = f"resp_{request_id}"
        self._tools = [w.FunctionToolOut(name=t.name, description=t.description, parameters=t.parameters,
                                         strict=t.strict) for t in tools]
        choice = wire.tool_choice
        self._choice = w.ToolChoiceFunctionOut(name=choice.name or "") if isinstance(choice, w.ToolChoiceIn) else choice
        fmt = wire.text.format if wire.text is not None else None
        self._text = w.TextConfigOut(fmt or w.TextFormatIn())

    def response(
        self, status: str, output: list[w.ItemOut], route: Route | None = None, **rest: Any
    ) -> w.ResponseOut:
        """The response object in ``status``; ``rest`` sets usage, error or incomplete details."""
        wire = self.wire
        return w.ResponseOut(
            id=self.id,
            created_at=self.created,
            status=status,
            instructions=wire.instructions,
            max_output_tokens=wire.max_output_tokens,
            metadata=wire.metadata or {},
            model=route.model if route is not None else wire.model,
            output=output,
            parallel_tool_calls=wire.parallel_tool_calls is not False,
            previous_response_id=wire.previous_response_id,
            store=wire.store is not False,
            temperature=wire.temperature,
            text=self._text,
            tool_choice=self._choice or "auto",
            tools=self._tools,
            top_p=wire.top_p,
            user=wire.user,
            **rest,
        )


class _Item:
    """One output item being written: a message (text and refusal parts), reasoning, or a function call."""

    def __init__(self, kind: str, item_id: str, index: int) -> None:
        self.kind, self.id, self.index = kind, item_id, index
        self.parts: list[tuple[str, list[str]]] = []  # (part kind, text pieces) for message and reasoning
        self.call_id = self.name = ""
        self.arguments: list[str] = []
        self.status = "in_progress"

    def out(self) -> w.ItemOut:
        """The item as it stands now (in progress until closed)."""
        if self.kind == "function_call":
            args = "".join(self.arguments)
            return w.FunctionCallOut(
                id=self.id, call_id=self.call_id, name=self.name, arguments=args, status=self.status
            )
        if self.kind == "reasoning":
            texts = [w.ReasoningTextOut(text="".join(t)) for _, t in self.parts]
            return w.ReasoningOut(id=self.id, content=texts, status=self.status)
        return w.MessageOut(id=self.id, status=self.status, content=[_content(k, "".join(t)) for k, t in self.parts])


def _content(kind: str, text: str) -> w.ContentOut:
    return w.RefusalOut(refusal=text) if kind == "refusal" else w.OutputTextOut(text=text)


def _part(kind: str, text: str) -> e.PartOut:
    return w.ReasoningTextOut(text=text) if kind == "reasoning" else _content(kind, text)


class Output:
    """Folds a request's events into output items, returning the stream events each one makes.

    A streamed answer sends the events; a whole one keeps only the items (``final``). Text and
    refusal go to one message item (a part each, in turn), reasoning to a reasoning item, each call
    to its own function_call item; a call closes the message before it, text after it opens another.
    """

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.items: list[_Item] = []
        self.usage: Usage | None = None
        self.finish: FinishReason = "stop"
        self.provider_reason = ""
        self.route: Route | None = None
        self._open: _Item | None = None  # the message or reasoning item being written
        self._calls: dict[int, _Item] = {}  # the provider's call index -> its item
        self._ids = ToolCallIds()
        self._seq = 0

    def seq(self) -> int:
        """The next sequence number."""
        self._seq += 1
        return self._seq - 1

    def fold(self, event: StreamEvent | RouteEvent) -> None:
        """Fold ``event`` in, for a whole answer."""
        self.feed(event)

    def feed(self, event: StreamEvent | RouteEvent) -> list[msgspec.Struct]:
        """Fold ``event`` in; the stream events it makes."""
        if isinstance(event, TextDelta):
            return self._text("output_text", event.text)
        if isinstance(event, RefusalDelta):
            return self._text("refusal", event.text)
        if isinstance(event, ThinkingDelta):
            return self._text("reasoning", event.text)
        if isinstance(event, ToolCallDelta):
            return self._call_delta(event)
        if isinstance(event, ToolCallDone):
            return self._call_done(event)
        if isinstance(event, UsageEvent):
            self.usage = event.usage if self.usage is None else self.usage + event.usage
        elif isinstance(event, Finish):
            self.finish, self.provider_reason = event.reason, event.provider_reason
        elif isinstance(event, RouteEvent):
            self.route = event.route
            return self.close_all()
        return []

    def _new(self, kind: str, prefix: str) -> tuple[_Item, list[msgspec.Struct]]:
        item = _Item(kind, f"{prefix}_{self.shell.request_id}_{len(self.items)}", len(self.items))
        self.items.append(item)
        return item, [e.ItemAddedEvent(sequence_number=self.seq(), output_index=item.index, item=item.out())]

    def _text(self, kind: str, text: str) -> list[msgspec.Struct]:
        if not text:
            return []
        out: list[msgspec.Struct] = []
        item_kind = "reasoning" if kind == "reasoning" else "message"
        item = self._open
        if item is None or item.kind != item_kind:
            out += self._close_open()
            item, added = self._new(item_kind, "rs" if kind == "reasoning" else "msg")
            self._open = item
            out += added
        if not item.parts or item.parts[-1][0] != kind:
            out += self._close_part(item)
            item.parts.append((kind, []))
            add = e.PartAddedEvent(sequence_number=self.seq(), item_id=item.id, output_index=item.index,
                                   content_index=len(item.parts) - 1, part=_part(kind, ""))
            out.append(add)
        item.parts[-1][1].append(text)
        delta = _DELTAS[kind]
        at = len(item.parts) - 1
        out.append(delta(sequence_number=self.seq(), item_id=item.id, output_index=item.index, content_index=at,
                         delta=text))
        return out

    def _close_part(self, item: _Item) -> list[msgspec.Struct]:
        if not item.parts:
            return []
        kind, pieces = item.parts[-1]
        text = "".join(pieces)
        at, seq = len(item.parts) - 1, self.seq()
        if kind == "refusal":
            done: msgspec.Struct = e.RefusalDoneEvent(
                sequence_number=seq, item_id=item.id, output_index=item.index, content_index=at, refusal=text
            )
        else:
            ends = e.ReasoningDoneEvent if kind == "reasoning" else e.TextDoneEvent
            done = ends(sequence_number=seq, item_id=item.id, output_index=item.index, content_index=at, text=text)
        part = _part(kind, text)
        closed = e.PartDoneEvent(
            sequence_number=self.seq(), item_id=item.id, output_index=item.index, content_index=at, part=part
        )
        return [done, closed]

    def _close_open(self, status: str = "completed") -> list[msgspec.Struct]:
        item, self._open = self._open, None
        if item is None:
            return []
        out = self._close_part(item)
        item.status = status
        return [*out, e.ItemDoneEvent(sequence_number=self.seq(), output_index=item.index, item=item.out())]

    def _call_item(self, index: int, provider_id: str | None, name: str) -> tuple[_Item, list[msgspec.Struct], bool]:
        """The call's item, opened (closing the message before it) on its first event."""
        item = self._calls.get(index)
        if item is not None:
            return item, [], False
        out = self._close_open()
        _, call_id = self._ids.open(index, provider_id)
        item = _Item("function_call", f"fc_{self.shell.request_id}_{len(self.items)}", len(self.items))
        item.call_id, item.name = call_id, name
        self._calls[index] = item
        self.items.append(item)
        out.append(e.ItemAddedEvent(sequence_number=self.seq(), output_index=item.index, item=item.out()))
        return item, out, True

    def _call_delta(self, event: ToolCallDelta) -> list[msgspec.Struct]:
        item, out, _ = self._call_item(event.index, event.id, event.name or "")
        item.name = item.name or event.name or ""
        if event.arguments and item.status == "in_progress":
            item.arguments.append(event.arguments)
            delta = e.ArgumentsDeltaEvent(sequence_number=self.seq(), item_id=item.id, output_index=item.index,
                                          delta=event.arguments)
            out.append(delta)
        return out

    def _call_done(self, event: ToolCallDone) -> list[msgspec.Struct]:
        item, out, fresh = self._call_item(event.index, event.id, event.name)
        if item.status != "in_progress":
            return out
        item.name = event.name or item.name
        if fresh and event.arguments:
            delta = e.ArgumentsDeltaEvent(sequence_number=self.seq(), item_id=item.id, output_index=item.index,
                                          delta=event.arguments)
            out.append(delta)
        item.arguments = [event.arguments]  # the assembled arguments are the truth, whatever the fragments said
        return out + self._finish_call(item, "completed")

    def _finish_call(self, item: _Item, status: str) -> list[msgspec.Struct]:
        args = "".join(item.arguments)
        item.status = status
        done = e.ArgumentsDoneEvent(sequence_number=self.seq(), item_id=item.id, output_index=item.index,
                                    name=item.name, arguments=args)
        return [done, e.ItemDoneEvent(sequence_number=self.seq(), output_index=item.index, item=item.out())]

    def close_all(self) -> list[msgspec.Struct]:
        """Close every item still open, as the answer's end leaves it."""
        status = "incomplete" if self.finish in _INCOMPLETE else "completed"
        out = self._close_open(status)
        for item in self._calls.values():
            if item.status == "in_progress":
                out += self._finish_call(item, status)
        return out

    def final(self, status: str | None = None) -> w.ResponseOut:
        """The response object as the answer left it (``completed`` or ``incomplete``, or ``status``)."""
        route = self.route
        reason = _INCOMPLETE.get(self.finish)
        rest: dict[str, Any] = {"incomplete_details": w.IncompleteOut(reason) if reason else None}
        if route is not None:
            rest["usage"] = _usage(self.usage, route)
            rest["interlock"] = route_out(route, self.shell.request_id, self.provider_reason)
        state = status or ("incomplete" if reason else "completed")
        return self.shell.response(state, [i.out() for i in self.items], route, **rest)

    def assistant(self) -> Message | None:
        """The answer as the assistant turn a continuation replays: text, refusals as text, calls."""
        parts: list[Part] = []
        for item in self.items:
            if item.kind == "message":
                parts += [TextPart("".join(t)) for _, t in item.parts]
            elif item.kind == "function_call":
                parts.append(ToolCallPart(item.call_id, item.name, "".join(item.arguments)))
        return Message(role="assistant", content=tuple(parts)) if parts else None


def _usage(usage: Usage | None, route: Route) -> w.UsageOut | None:
    """The Responses API's usage; None when it is unknown (the door billed from an estimate)."""
    if usage is None or route.usage_estimated:
        return None
    prompt = usage.total_input_tokens
    details = w.InputDetailsOut(usage.cache_read_tokens, usage.cache_write_tokens)
    return w.UsageOut(input_tokens=prompt, input_tokens_details=details, output_tokens=usage.output_tokens,
                      total_tokens=prompt + usage.output_tokens)


class ResponseWriter:
    """The SSE bytes of a streamed response: lifecycle events around the output's own."""

    def __init__(self, shell: Shell, keep: Keep | None) -> None:
        self._output = Output(shell)
        self._keep = keep
        self._started = False
        self._tail = b""  # the final event, held until the response is kept (``end``)
        self._kept: tuple[w.ResponseOut, Message | None] | None = None

    def feed(self, event: StreamEvent | RouteEvent) -> bytes:
        """The bytes to send for ``event``; the first also starts the response."""
        output = self._output
        out: list[msgspec.Struct] = []
        if not self._started:
            self._started = True
            shell = output.shell
            out.append(e.CreatedEvent(sequence_number=output.seq(), response=shell.response("in_progress", [])))
            out.append(e.InProgressEvent(sequence_number=output.seq(), response=shell.response("in_progress", [])))
        out += output.feed(event)
        if not isinstance(event, RouteEvent):
            return _sse(out)
        final = output.final()
        self._kept = (final, output.assistant())
        last = e.IncompleteEvent if final.status == "incomplete" else e.CompletedEvent
        route = event.route
        headers = route_headers(route, output.shell.request_id, output.provider_reason)
        tail: list[msgspec.Struct] = [last(sequence_number=output.seq(), response=final)]
        self._tail = _sse(tail) + "".join(f": {k}: {v}\n" for k, v in headers.items()).encode() + b"\n"
        return _sse(out)

    async def end(self) -> bytes:
        """The final event, once the response is kept: a client that has it can continue from it."""
        kept, self._kept = self._kept, None
        if kept is not None and self._keep is not None:
            await self._keep(*kept)
        tail, self._tail = self._tail, b""
        return tail

    def fail(self, error: InterlockError) -> bytes:
        """An ``error`` event, then ``response.failed`` with what was written so far."""
        output = self._output
        body = http_failure(error).body.error
        code = "rate_limit_exceeded" if body.code == "rate_limit_exceeded" else "server_error"
        events: list[msgspec.Struct] = [
            e.ErrorEvent(sequence_number=output.seq(), code=body.code, message=body.message, param=body.param)
        ]
        failed = output.final("failed")
        failed = msgspec.structs.replace(failed, error=w.ResponseErrorOut(code, body.message), incomplete_details=None)
        events.append(e.FailedEvent(sequence_number=output.seq(), response=failed))
        return _sse(events)


def _sse(events: list[msgspec.Struct]) -> bytes:
    return b"".join(
        b"event: " + str(e.__struct_config__.tag).encode() + b"\ndata: " + ENCODER.encode(e) + b"\n\n"
        for e in events
    )
