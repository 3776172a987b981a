"""The OpenAI Responses API's stream events, as the gateway writes them.

One Struct per event ``type``, each tagged with it so that ``type`` comes first and names the SSE
``event:`` line too; every event has a ``sequence_number``. The objects they carry (the response,
its output items and content parts) are ``_responses_wire``'s.
"""

from __future__ import annotations

from typing import Any

import msgspec

from interlock.adapters.gateway._responses_wire import (
    ItemOut,
    OutputTextOut,
    ReasoningTextOut,
    RefusalOut,
    ResponseOut,
)


class _Event(msgspec.Struct, frozen=True, kw_only=True):
    sequence_number: int


class CreatedEvent(_Event, frozen=True, kw_only=True, tag="response.created", tag_field="type"):
    """The response exists, with no output yet."""

    response: ResponseOut


class InProgressEvent(_Event, frozen=True, kw_only=True, tag="response.in_progress", tag_field="type"):
    """The response is being written."""

    response: ResponseOut


class CompletedEvent(_Event, frozen=True, kw_only=True, tag="response.completed", tag_field="type"):
    """The response is done: every output item, the usage and the route."""

    response: ResponseOut


class IncompleteEvent(_Event, frozen=True, kw_only=True, tag="response.incomplete", tag_field="type"):
    """The response ended early (a token limit, a content filter)."""

    response: ResponseOut


class FailedEvent(_Event, frozen=True, kw_only=True, tag="response.failed", tag_field="type"):
    """The response failed after it started; ``response.error`` says why."""

    response: ResponseOut


class ErrorEvent(_Event, frozen=True, kw_only=True, tag="error", tag_field="type"):
    """A failure after the stream started, in the gateway's error table's terms."""

    code: str | None
    message: str
    param: str | None


class ItemAddedEvent(_Event, frozen=True, kw_only=True, tag="response.output_item.added", tag_field="type"):
    """An output item begins."""

    output_index: int
    item: ItemOut


class ItemDoneEvent(_Event, frozen=True, kw_only=True, tag="response.output_item.done", tag_field="type"):
    """An output item is complete."""

    output_index: int
    item: ItemOut


PartOut = OutputTextOut | RefusalOut | ReasoningTextOut


class PartAddedEvent(_Event, frozen=True, kw_only=True, tag="response.content_part.added", tag_field="type"):
    """A content part of a message item begins."""

    item_id: str
    output_index: int
    content_index: int
    part: PartOut


class PartDoneEvent(_Event, frozen=True, kw_only=True, tag="response.content_part.done", tag_field="type"):
    """A content part of a message item is complete."""

    item_id: str
    output_index: int
    content_index: int
    part: PartOut


class TextDeltaEvent(_Event, frozen=True, kw_only=True, tag="response.output_text.delta", tag_field="type"):
    """A piece of text."""

    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = []


class TextDoneEvent(_Event, frozen=True, kw_only=True, tag="response.output_text.done", tag_field="type"):
    """A text part's whole text."""

    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = []


class RefusalDeltaEvent(_Event, frozen=True, kw_only=True, tag="response.refusal.delta", tag_field="type"):
    """A piece of a refusal."""

    item_id: str
    output_index: int
    content_index: int
    delta: str


class RefusalDoneEvent(_Event, frozen=True, kw_only=True, tag="response.refusal.done", tag_field="type"):
    """A refusal part's whole refusal."""

    item_id: str
    output_index: int
    content_index: int
    refusal: str


class ReasoningDeltaEvent(_Event, frozen=True, kw_only=True, tag="response.reasoning_text.delta", tag_field="type"):
    """A piece of the model's reasoning."""

    item_id: str
    output_index: int
    content_index: int
    delta: str


class ReasoningDoneEvent(_Event, frozen=True, kw_only=True, tag="response.reasoning_text.done", tag_field="type"):
    """A reasoning part's whole text."""

    item_id: str
    output_index: int
    content_index: int
    text: str


class ArgumentsDeltaEvent(
    _Event, frozen=True, kw_only=True, tag="response.function_call_arguments.delta", tag_field="type"
):
    """A piece of a function call's arguments."""

    item_id: str
    output_index: int
    delta: str


class ArgumentsDoneEvent(
    _Event, frozen=True, kw_only=True, tag="response.function_call_arguments.done", tag_field="type"
):
    """A function call's whole arguments."""

    item_id: str
    output_index: int
    name: str
    arguments: str

