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
    # the door, and verifiers written in Python
    "open": "actors._door",
    "Door": "actors._door",
    "OpenDoor": "actors._door",
    "Prompt": "actors._door",
    "RequestOptions": "_types",
    "load_config": "adapters._config_file",
    "Config": "policies._config",
    "ProviderHealth": "actors._provider_actor",
    "BreakerRecord": "_records",
    "LedgerStatistics": "actors._ledger_actor",
    "Explanation": "policies._explain",
    "BatchRun": "actors._batch",
    "BatchProgress": "actors._batch",
    "BatchNotEnded": "actors._batch",
    "BatchPolling": "policies._batch_poll",
    "ExplainedCandidate": "policies._explain",
    "BudgetRoom": "policies._explain",
    "Verdict": "policies._verify",
    "CallableVerifier": "policies._verify",
    "msgspec_verifier": "policies._verify",
    "EvalPrompt": "policies._eval",
    "EvalReport": "policies._eval",
    "EvalCandidate": "policies._eval",
    "EvalCall": "policies._eval",
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
    "DeadlineExceeded": "_errors",
    "PolicyRefused": "_errors",
    "AnswersRejected": "_errors",
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
    "Reasoning": "_types",
    "Usage": "_types",
    "TextDelta": "_types",
    "ThinkingDelta": "_types",
    "RefusalDelta": "_types",
    "ToolCallDelta": "_types",
    "ToolCallDone": "_types",
    "UsageEvent": "_types",
    "Finish": "_types",
    "StreamEvent": "_types",
    "ToolCall": "_types",
    "AttemptSummary": "_types",
    "SkippedCandidate": "_types",
    "Route": "_types",
    "RouteEvent": "_types",
    "ChatResponse": "_types",
    "EmbedRequest": "_embeddings",
    "EmbedResponse": "_embeddings",
    "AttemptRecord": "_records",
    "RequestRecord": "_records",
    "LedgerRecord": "_records",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from ._actor import Actor as Actor
    from ._actor import ActorRef as ActorRef
    from ._actor import MailboxStatistics as MailboxStatistics
    from ._clock import Clock as Clock
    from ._clock import FakeClock as FakeClock
    from ._clock import RealClock as RealClock
    from ._embeddings import EmbedRequest as EmbedRequest
    from ._embeddings import EmbedResponse as EmbedResponse
    from ._errors import (
        ActorStopped as ActorStopped,
    )
    from ._errors import (
        AdmissionRejected as AdmissionRejected,
    )
    from ._errors import AnswersRejected as AnswersRejected
    from ._errors import (
        AskTimeout as AskTimeout,
    )
    from ._errors import (
        BudgetExceeded as BudgetExceeded,
    )
    from ._errors import (
        ChainExhausted as ChainExhausted,
    )
    from ._errors import (
        ConfigError as ConfigError,
    )
    from ._errors import (
        ConsumerGone as ConsumerGone,
    )
    from ._errors import (
        DeadlineExceeded as DeadlineExceeded,
    )
    from ._errors import (
        ErrorClass as ErrorClass,
    )
    from ._errors import (
        InterlockError as InterlockError,
    )
    from ._errors import (
        MailboxFull as MailboxFull,
    )
    from ._errors import (
        MidStreamError as MidStreamError,
    )
    from ._errors import PolicyRefused as PolicyRefused
    from ._errors import (
        ProviderError as ProviderError,
    )
    from ._errors import (
        RequestError as RequestError,
    )
    from ._errors import (
        SupervisorEscalation as SupervisorEscalation,
    )
    from ._records import AttemptRecord as AttemptRecord
    from ._records import BreakerRecord as BreakerRecord
    from ._records import LedgerRecord as LedgerRecord
    from ._records import RequestRecord as RequestRecord
    from ._runtime import Runtime as Runtime
    from ._secret import Secret as Secret
    from ._streams import EventSink as EventSink
    from ._streams import EventStream as EventStream
    from ._streams import Reply as Reply
    from ._supervisor import ChildInfo as ChildInfo
    from ._supervisor import ChildSpec as ChildSpec
    from ._supervisor import Restart as Restart
    from ._supervisor import Strategy as Strategy
    from ._supervisor import Supervisor as Supervisor
    from ._types import (
        AttemptSummary as AttemptSummary,
    )
    from ._types import (
        ChatRequest as ChatRequest,
    )
    from ._types import (
        ChatResponse as ChatResponse,
    )
    from ._types import (
        Finish as Finish,
    )
    from ._types import (
        ImagePart as ImagePart,
    )
    from ._types import (
        JsonObjectFormat as JsonObjectFormat,
    )
    from ._types import (
        JsonSchemaFormat as JsonSchemaFormat,
    )
    from ._types import (
        Message as Message,
    )
    from ._types import (
        Part as Part,
    )
    from ._types import Reasoning as Reasoning
    from ._types import RefusalDelta as RefusalDelta
    from ._types import RequestOptions as RequestOptions
    from ._types import (
        ResponseFormat as ResponseFormat,
    )
    from ._types import (
        Route as Route,
    )
    from ._types import (
        RouteEvent as RouteEvent,
    )
    from ._types import SkippedCandidate as SkippedCandidate
    from ._types import (
        StreamEvent as StreamEvent,
    )
    from ._types import (
        TextDelta as TextDelta,
    )
    from ._types import (
        TextFormat as TextFormat,
    )
    from ._types import (
        TextPart as TextPart,
    )
    from ._types import (
        ThinkingDelta as ThinkingDelta,
    )
    from ._types import (
        ToolCall as ToolCall,
    )
    from ._types import (
        ToolCallDelta as ToolCallDelta,
    )
    from ._types import (
        ToolCallDone as ToolCallDone,
    )
    from ._types import (
        ToolCallPart as ToolCallPart,
    )
    from ._types import (
        ToolChoice as ToolChoice,
    )
    from ._types import (
        ToolChoiceMode as ToolChoiceMode,
    )
    from ._types import (
        ToolChoiceNamed as ToolChoiceNamed,
    )
    from ._types import (
        ToolResultPart as ToolResultPart,
    )
    from ._types import (
        ToolSpec as ToolSpec,
    )
    from ._types import (
        Usage as Usage,
    )
    from ._types import (
        UsageEvent as UsageEvent,
    )
    from .actors._batch import BatchNotEnded as BatchNotEnded
    from .actors._batch import BatchProgress as BatchProgress
    from .actors._batch import BatchRun as BatchRun
    from .actors._door import Door as Door
    from .actors._door import OpenDoor as OpenDoor
    from .actors._door import Prompt as Prompt
    from .actors._door import open as open
    from .actors._ledger_actor import LedgerStatistics as LedgerStatistics
    from .actors._provider_actor import ProviderHealth as ProviderHealth
    from .adapters._config_file import load_config as load_config
    from .policies._batch_poll import BatchPolling as BatchPolling
    from .policies._config import Config as Config
    from .policies._eval import EvalCall as EvalCall
    from .policies._eval import EvalCandidate as EvalCandidate
    from .policies._eval import EvalPrompt as EvalPrompt
    from .policies._eval import EvalReport as EvalReport
    from .policies._explain import BudgetRoom as BudgetRoom
    from .policies._explain import ExplainedCandidate as ExplainedCandidate
    from .policies._explain import Explanation as Explanation
    from .policies._verify import CallableVerifier as CallableVerifier
    from .policies._verify import Verdict as Verdict
    from .policies._verify import msgspec_verifier as msgspec_verifier


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interlock' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
