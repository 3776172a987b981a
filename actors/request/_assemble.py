"""Turning streams of events into whole answers, and holding events back until an answer is judged."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any, Protocol

from interlock._types import (
    ChatResponse,
    Finish,
    FinishReason,
    RefusalDelta,
    Route,
    RouteEvent,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDone,
    Usage,
    UsageEvent,
)
from interlock.actors.request._attempt import Attempt


async def collect(events: AsyncIterable[StreamEvent | RouteEvent]) -> ChatResponse:
    """The whole answer a stream of events carries (its route from the final ``RouteEvent``).

    Usage is None unless a ``UsageEvent`` came (unknown is not zero); a refusal is kept apart
    from the text, and the provider's own finish reason beside the mapped one.
    """
    text: list[str] = []
    thinking: list[str] = []
    refusal: list[str] = []
    calls: list[ToolCall] = []
    usage: Usage | None = None
    finish: FinishReason = "stop"
    provider_reason = ""
    route: Route | None = None
    async for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ThinkingDelta):
            thinking.append(event.text)
        elif isinstance(event, RefusalDelta):
            refusal.append(event.text)
        elif isinstance(event, ToolCallDone):
            calls.append(ToolCall(event.id, event.name, event.arguments, event.signature))
        elif isinstance(event, UsageEvent):
            usage = event.usage if usage is None else usage + event.usage
        elif isinstance(event, Finish):
            finish, provider_reason = event.reason, event.provider_reason
        elif isinstance(event, RouteEvent):
            route = event.route
    return ChatResponse(
        content="".join(text), thinking="".join(thinking), tool_calls=tuple(calls), finish_reason=finish,
        usage=usage, route=route, refusal="".join(refusal), provider_finish_reason=provider_reason,
    )


def assemble(attempt: Attempt) -> ChatResponse:
    """The whole answer ``attempt`` finished, from what it observed.

    A resumed attempt's answer starts with the text delivered before it (its ``delivered``
    prefix, which its own stream continued or reproduced), so what is cached or judged is the
    answer the caller got, whole. Usage is None when the provider reported none.
    """
    finish: FinishReason = attempt.finish if attempt.finish is not None else "stop"
    return ChatResponse(
        content=attempt.delivered + "".join(attempt.text),
        thinking="".join(attempt.thinking),
        tool_calls=tuple(attempt.tool_calls),
        finish_reason=finish,
        usage=attempt.usage if attempt.usage_reported else None,
        refusal="".join(attempt.refusal),
        provider_finish_reason=attempt.provider_reason,
    )


class EventSinkLike(Protocol):
    """Where ``RequestRun.run`` puts events: a ``BufferSink``, or an ``EventSink``."""

    def send_nowait(self, event: Any) -> bool: ...

    async def send(self, event: Any) -> None: ...


class BufferSink:
    """A stand-in for the caller's sink that keeps the events until the answer is judged."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[Any] = []

    def send_nowait(self, event: Any) -> bool:
        self.events.append(event)
        return True

    async def send(self, event: Any) -> None:
        self.events.append(event)
