"""interlock: one door for every LLM call, with routing, rails, fallback, hedging and a ledger.

The package face re-exports the public API lazily: ``import interlock`` is cheap, and a name's
module is imported on first use. ``__all__`` is the whole public surface; a test keeps it exact.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # the microkernel
    "Actor": "_actor",
    "ActorRef": "_actor",
    "MailboxStatistics": "_actor",
    "Reply": "_streams",
    "EventSink": "_streams",
    "EventStream": "_streams",
    "Supervisor": "_supervisor",
    "ChildSpec": "_supervisor",
    "ChildInfo": "_supervisor",
    "Strategy": "_supervisor",
    "Restart": "_supervisor",
    "Runtime": "_runtime",
    # the door
    "open": "actors._door",
    "Door": "actors._door",
    # errors
    "ErrorClass": "_errors",
    "InterlockError": "_errors",
    "ConfigError": "_errors",
    "RequestError": "_errors",
    "ActorStopped": "_errors",
    "AskTimeout": "_errors",
    "MailboxFull": "_errors",
    "ConsumerGone": "_errors",
    "SupervisorEscalation": "_errors",
    "ProviderError": "_errors",
    "MidStreamError": "_errors",
    "AdmissionRejected": "_errors",
    "BudgetExceeded": "_errors",
    "ChainExhausted": "_errors",
    # clock and secrets
    "Clock": "_clock",
    "RealClock": "_clock",
    "FakeClock": "_clock",
    "Secret": "_secret",
    # canonical types
    "TextPart": "_types",
    "ImagePart": "_types",
    "ToolCallPart": "_types",
    "ToolResultPart": "_types",
    "Part": "_types",
    "Message": "_types",
    "ToolSpec": "_types",
    "ToolChoice": "_types",
    "ToolChoiceMode": "_types",
    "ToolChoiceNamed": "_types",
    "ResponseFormat": "_types",
    "TextFormat": "_types",
    "JsonObjectFormat": "_types",
    "JsonSchemaFormat": "_types",
    "ChatRequest": "_types",
    "Usage": "_types",
    "TextDelta": "_types",
    "ThinkingDelta": "_types",
    "ToolCallDelta": "_types",
    "ToolCallDone": "_types",
    "UsageEvent": "_types",
    "Finish": "_types",
    "StreamEvent": "_types",
    "ToolCall": "_types",
    "AttemptSummary": "_types",
    "Route": "_types",
    "RouteEvent": "_types",
    "ChatResponse": "_types",
    "AttemptRecord": "_records",
    "RequestRecord": "_records",
    "LedgerRecord": "_records",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from ._actor import Actor, ActorRef, MailboxStatistics
    from ._clock import Clock, FakeClock, RealClock
    from ._errors import (
        ActorStopped,
        AdmissionRejected,
        AskTimeout,
        BudgetExceeded,
        ChainExhausted,
        ConfigError,
        ConsumerGone,
        ErrorClass,
        InterlockError,
        MailboxFull,
        MidStreamError,
        ProviderError,
        RequestError,
        SupervisorEscalation,
    )
    from ._records import AttemptRecord, LedgerRecord, RequestRecord
    from ._runtime import Runtime
    from ._secret import Secret
    from ._streams import EventSink, EventStream, Reply
    from ._supervisor import ChildInfo, ChildSpec, Restart, Strategy, Supervisor
    from ._types import (
        AttemptSummary,
        ChatRequest,
        ChatResponse,
        Finish,
        ImagePart,
        JsonObjectFormat,
        JsonSchemaFormat,
        Message,
        Part,
        ResponseFormat,
        Route,
        RouteEvent,
        StreamEvent,
        TextDelta,
        TextFormat,
        TextPart,
        ThinkingDelta,
        ToolCall,
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
    from .actors._door import Door, open


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interlock' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
