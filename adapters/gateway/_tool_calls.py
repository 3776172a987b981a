"""Tool calls as the gateway hands them out: dense stream indexes and ids unique per call.

A provider's index for a call is its own: Anthropic's is the content block's (a call after a
text block is index 1), an OpenAI-compatible server may skip numbers. OpenAI's wire and its
SDKs' stream accumulators need each choice's calls numbered 0, 1, 2... in order of appearance,
so ``ToolCallIds`` numbers them so, whatever the provider sent.

Ids: a client sends each call's id back with the call's result, and keys its own bookkeeping on
it, so an id must be unique per call, across turns too. A provider's own id is kept; a call
without one gets ``call_`` and 24 random hex digits. The codecs give a call that came without an
id ``call_<n>`` (its position in the answer: Gemini sends none), which repeats on every turn, so
that is treated as no id. Rewriting an id is safe: the id the client sends back comes, in the
same request, with the assistant turn that made the call, so the provider sees them match.
"""

from __future__ import annotations

import re
import uuid

_PLACEHOLDER = re.compile(r"^call_\d+$")  # the codecs' stand-in for a missing id (``call_<index>``)


def new_call_id() -> str:
    """A fresh tool-call id, unique across requests."""
    return f"call_{uuid.uuid4().hex[:24]}"


class ToolCallIds:
    """One answer's calls: the provider's index -> a dense position, and each call's unique id."""

    __slots__ = ("_ids", "_positions", "_used")

    def __init__(self) -> None:
        self._positions: dict[int, int] = {}
        self._ids: dict[int, str] = {}
        self._used: set[str] = set()

    def seen(self, index: int) -> bool:
        """Whether the call at the provider's ``index`` was handed out already."""
        return index in self._positions

    def open(self, index: int, provider_id: str | None) -> tuple[int, str]:
        """The dense position and id of the call at the provider's ``index``, assigned on first sight."""
        position = self._positions.get(index)
        if position is not None:
            return position, self._ids[index]
        call_id = provider_id or ""
        if not call_id or _PLACEHOLDER.match(call_id) or call_id in self._used:
            call_id = new_call_id()
        position = self._positions[index] = len(self._positions)
        self._ids[index] = call_id
        self._used.add(call_id)
        return position, call_id
