"""The package face: every export is deliberate, resolves, and is documented."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import interlock

INTENDED = {
    # microkernel
    "Actor", "ActorRef", "MailboxStatistics", "Reply", "EventSink", "EventStream",
    "Supervisor", "ChildSpec", "ChildInfo", "Strategy", "Restart", "Runtime",
    # the door
    "open", "OpenDoor", "Door", "Prompt", "RequestOptions", "Verdict", "CallableVerifier", "msgspec_verifier",
    # what the door returns
    "Config", "load_config", "ProviderHealth", "BreakerRecord", "LedgerStatistics",
    # errors
    "ErrorClass", "InterlockError", "ConfigError", "RequestError", "ActorStopped", "AskTimeout",
    "MailboxFull", "ConsumerGone", "SupervisorEscalation", "ProviderError", "MidStreamError",
    "AdmissionRejected", "BudgetExceeded", "ChainExhausted", "DeadlineExceeded",
    "PolicyRefused", "AnswersRejected",
    # clock and secrets
    "Clock", "RealClock", "FakeClock", "Secret",
    # canonical types
    "TextPart", "ImagePart", "ToolCallPart", "ToolResultPart", "Part", "Message", "ToolSpec",
    "ToolChoice", "ToolChoiceMode", "ToolChoiceNamed", "ResponseFormat", "TextFormat",
    "JsonObjectFormat", "JsonSchemaFormat", "ChatRequest", "Usage", "TextDelta", "ThinkingDelta",
    "RefusalDelta", "Reasoning", "ToolCallDelta", "ToolCallDone", "UsageEvent", "Finish", "StreamEvent", "ToolCall",
    "AttemptSummary", "SkippedCandidate", "Route", "RouteEvent", "ChatResponse", "EmbedRequest", "EmbedResponse",
    "AttemptRecord", "RequestRecord", "LedgerRecord",
    # evidence: eval, explain, batch
    "EvalPrompt", "EvalReport", "EvalCandidate", "EvalCall", "Explanation", "ExplainedCandidate", "BudgetRoom",
    "BatchRun", "BatchProgress", "BatchNotEnded", "BatchPolling",
}


def test_all_is_exactly_the_intended_set() -> None:
    """__all__ holds exactly the intended public names, so nothing leaks in by accident."""
    assert set(interlock.__all__) == INTENDED
    assert len(interlock.__all__) == len(set(interlock.__all__))


def test_every_export_resolves_and_classes_have_docstrings() -> None:
    """Each exported name imports lazily, and every exported class documents itself."""
    for name in interlock.__all__:
        value = getattr(interlock, name)
        if isinstance(value, type):
            assert value.__doc__, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    """A name that is not exported raises AttributeError, not a lazy-import crash."""
    with pytest.raises(AttributeError, match="nothing_here"):
        interlock.nothing_here  # noqa: B018


def test_implementation_modules_are_private() -> None:
    """A module is private when any part of its dotted path starts with ``_``; the rest are folders.

    The only public non-package module is ``interlock.testing``; every subpackage (a room or a room
    inside one) holds nothing public of its own but its docstring.
    """
    for info in pkgutil.walk_packages(interlock.__path__, "interlock."):
        parts = info.name.split(".")[1:]
        private = any(part.startswith("_") for part in parts)
        assert private or info.ispkg or info.name == "interlock.testing", info.name
        module = importlib.import_module(info.name)
        if info.ispkg and not private:
            assert module.__doc__, info.name


def test_request_options_name_every_request_field_but_the_messages() -> None:
    """``RequestOptions`` (the door's keyword options) stays in step with ``ChatRequest``'s fields."""
    assert set(interlock.RequestOptions.__annotations__) == set(interlock.ChatRequest.__struct_fields__) - {"messages"}


def test_every_type_the_door_returns_is_exported() -> None:
    """The door's public methods and properties return only types the package face exports."""
    import typing

    exported = {getattr(interlock, name) for name in interlock.__all__}
    hints = {
        name: typing.get_type_hints(getattr(interlock.Door, name).fget if name in {"config", "simulator"}
                                    else getattr(interlock.Door, name))["return"]
        for name in ("config", "ask", "health", "ledger_statistics")
    }
    assert hints["config"] in exported
    assert hints["ask"] in exported
    assert typing.get_args(hints["health"])[1] in exported
    transitions = typing.get_type_hints(interlock.ProviderHealth)["recent_transitions"]
    assert typing.get_args(transitions)[0] in exported  # what a health snapshot holds is exported too
    assert hints["ledger_statistics"] in exported
