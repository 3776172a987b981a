"""Simulator wire formats, the shared part: the format-neutral ``Ask`` and ``Reply``, SSE framing,
the per-token byte template and the model list that OpenAI and Anthropic clients both read.

A whole object is a msgspec Struct encoded once; the per-token hot path is a byte template made
once per response by encoding a chunk whose text is a sentinel and splitting around it, so a token
costs two concatenations with a pre-encoded word. The three formats live in ``_openai``,
``_anthropic`` and ``_gemini`` (this package's modules); each is a ``WireFormat``.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from interlock.adapters.simulator._behaviour import (
    VOCAB,
    Behaviour,
    ErrorAfterUsage,
    NoUsage,
    Plan,
    Refusal,
)
from interlock.adapters.simulator._sample import asks_for, sample_arguments, sample_value

_enc = msgspec.json.Encoder()
SENTINEL = "@@sim-token@@"
_SENTINEL_JSON = _enc.encode(SENTINEL)
_PLAIN = tuple(_enc.encode(w) for w in VOCAB)
_SPACED = tuple(_enc.encode(" " + w) for w in VOCAB)


def words_text(words: tuple[int, ...]) -> str:
    """The text a sequence of VOCAB indices spells: words joined by single spaces."""
    return " ".join(VOCAB[w] for w in words)


class ToolSpec(msgspec.Struct, frozen=True):
    """A tool the request offers: its name, JSON Schema of arguments and description."""

    name: str
    schema: dict[str, Any]
    description: str = ""


class Ask(msgspec.Struct, frozen=True):
    """What a request asks for, whatever its format; ``tool_mode`` is auto, none or required.

    ``after_tool_result``: the last message is a tool's result. ``user_turn``: the text of the
    last user message (what ``tool_mode`` auto reads). ``output`` is ``text``, ``json_object`` or
    ``json_schema`` (then ``output_schema`` is the schema the answer must match).
    """

    model: str
    stream: bool
    include_usage: bool
    prompt_chars: int
    tools: tuple[ToolSpec, ...] = ()
    tool_mode: str = "auto"
    forced_tool: str | None = None
    max_tokens: int | None = None
    after_tool_result: bool = False
    user_turn: str = ""
    output: str = "text"
    output_schema: dict[str, Any] | None = None


class Call(msgspec.Struct, frozen=True):
    """One tool call of a reply; ``arguments`` is the JSON object as bytes."""

    id: str
    name: str
    arguments: bytes


class Reply(msgspec.Struct, frozen=True):
    """What the simulator answers: text words (or literal ``pieces``) or tool calls, and the usage to report.

    ``pieces``, when not empty, is the answer text as it streams, piece by piece: a JSON answer
    to a structured-output request, which VOCAB words cannot spell.

    ``model`` is the id the answer says served it. ``refusal`` is the refusal text (the answer
    refuses, in the format's own way, after ``words``); ``reports_usage`` False leaves every
    usage field out; ``error_status`` non-zero ends a stream, after its usage, with an in-band
    error of the format's type for that status.
    """

    id: str
    model: str
    created: int
    words: tuple[int, ...]
    calls: tuple[Call, ...]
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    truncated: bool = False
    refusal: str = ""
    reports_usage: bool = True
    error_status: int = 0
    pieces: tuple[str, ...] = ()


def reply_text(r: Reply) -> str:
    """The whole answer text of ``r``."""
    return "".join(r.pieces) if r.pieces else words_text(r.words)


_IDS = {"openai": ("chatcmpl-sim", "call_sim"), "anthropic": ("msg_sim", "toolu_sim"), "gemini": ("sim-", "")}


def build_reply(fmt: str, ask: Ask, plan: Plan, behaviour: Behaviour, seq: int, created: int) -> Reply:
    """The reply to ``ask``: tool calls when the conversation calls for them, else the plan's words.

    A structured-output request gets JSON for its schema (an object for ``json_object``) instead
    of words, in as many pieces as the plan has words. Either is cut at max_tokens. Input tokens
    are prompt characters / 4 (rounded up); ``seq`` makes ids unique per simulator. A
    ``Refusal`` or ``ErrorAfterUsage`` fault answers text only, cut at its ``after_tokens``.
    """
    reply_prefix, call_prefix = _IDS[fmt]
    input_tokens = max(1, -(-ask.prompt_chars // 4))
    cached = int(input_tokens * behaviour.cached_fraction)
    rid = f"{reply_prefix}{seq:08d}"
    served = behaviour.served_model or ask.model
    fault = plan.fault
    usage = not isinstance(fault, NoUsage)
    chosen = () if isinstance(fault, Refusal | ErrorAfterUsage) else tools_called(ask, plan, behaviour)
    if chosen:
        calls = tuple(
            Call(f"{call_prefix}{seq:08d}_{k}", t.name, _enc.encode(sample_arguments(t.schema)))
            for k, t in enumerate(chosen)
        )
        output = sum((len(c.name) + len(c.arguments) + 3) // 4 for c in calls)
        return Reply(rid, served, created, (), calls, input_tokens, cached, output, reports_usage=usage)
    words, pieces = plan.words, _structured(ask, plan)
    if isinstance(fault, Refusal | ErrorAfterUsage):
        words, pieces = words[: fault.after_tokens], pieces[: fault.after_tokens]
    said = len(pieces or words)
    truncated = ask.max_tokens is not None and said > ask.max_tokens
    if truncated:
        words, pieces = words[: ask.max_tokens], pieces[: ask.max_tokens]
    # Only OpenAI's wire carries the refusal's text; the other two refuse with a reason alone.
    refusal = fault.text if isinstance(fault, Refusal) else ""
    output = len(pieces or words) + (-(-len(refusal) // 4) if fmt == "openai" else 0)
    error = fault.status if isinstance(fault, ErrorAfterUsage) else 0
    return Reply(rid, served, created, () if pieces else words, (), input_tokens, cached, output, truncated,
                 refusal, usage, error, pieces)


def tools_called(ask: Ask, plan: Plan, behaviour: Behaviour) -> tuple[ToolSpec, ...]:
    """The tools a reply calls: a forcing ``tool_choice`` always gets some; ``auto`` only when asked.

    In ``auto`` mode nothing is called after a tool result (the loop ends with text), and a tool
    is called when the last user turn names it (``_sample.asks_for``), with the behaviour's
    ``tool_call_p``; at most ``tool_calls`` tools, in the order offered.
    """
    if not ask.tools or ask.tool_mode == "none":
        return ()
    count = max(1, behaviour.tool_calls)
    asked = [t for t in ask.tools if asks_for(ask.user_turn, t.name, t.description)]
    if ask.tool_mode == "required":
        named = [t for t in ask.tools if t.name == ask.forced_tool]
        return tuple(named or (asked or list(ask.tools))[:count])
    if ask.after_tool_result or plan.tool_roll >= behaviour.tool_call_p:
        return ()
    return tuple(asked[:count])


def _structured(ask: Ask, plan: Plan) -> tuple[str, ...]:
    """A structured-output answer in pieces (one per planned word), or ``()`` for free text."""
    if ask.output == "json_schema":
        text = _enc.encode(sample_value(ask.output_schema or {})).decode()
    elif ask.output == "json_object":
        text = _enc.encode({"answer": words_text(plan.words)}).decode()
    else:
        return ()
    n = max(1, min(len(plan.words), len(text)))
    size = -(-len(text) // n)
    return tuple(text[i : i + size] for i in range(0, len(text), size))


def sse(data: bytes, event: str | None = None, sep: bytes = b"\n\n") -> bytes:
    """One SSE frame."""
    head = b"event: " + event.encode() + b"\ndata: " if event else b"data: "
    return head + data + sep


class StreamTemplate:
    """A chunk's bytes split around the sentinel text: ``token`` fills in a pre-encoded word."""

    __slots__ = ("_post", "_pre")

    def __init__(self, frame: bytes) -> None:
        self._pre, _, self._post = frame.partition(_SENTINEL_JSON)

    def token(self, word: int, first: bool) -> bytes:
        """The chunk carrying VOCAB[word] (with a leading space unless first)."""
        return self._pre + (_PLAIN if first else _SPACED)[word] + self._post

    def text(self, piece: str) -> bytes:
        """The chunk carrying ``piece`` as it is."""
        return self._pre + _enc.encode(piece) + self._post

    def malformed(self) -> bytes:
        """A chunk whose JSON breaks off mid-string."""
        return self._pre + b'"broken' + b"\n\n"


class StreamParts(msgspec.Struct, frozen=True):
    """A streamed reply, in order: ``head``, tokens (via ``template``) or ``calls``, ``tail``."""

    head: bytes
    template: StreamTemplate
    calls: tuple[bytes, ...]
    tail: bytes


def split_args(arguments: bytes) -> tuple[str, str]:
    """Tool arguments in two pieces, as providers stream them."""
    text = arguments.decode()
    half = len(text) // 2
    return text[:half], text[half:]


def chars_of(content: Any) -> int:
    """Characters of text in a message content: a string or a list of blocks with ``text``."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(getattr(part, "text", "") or "") for part in content)
    return 0


def text_of(content: Any) -> str:
    """The text of a message content: a string, or the ``text`` of a list's blocks joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(getattr(part, "text", "") or "" for part in content)
    return ""


class WireFormat(Protocol):
    """One provider format, server side."""

    name: str

    def decode(self, body: bytes, model: str = "", stream: bool = False) -> Ask:
        """An ``Ask`` from a request body (``model``/``stream`` come from the path where the format says so)."""
        ...

    def body(self, r: Reply) -> bytes:
        """A non-stream response body."""
        ...

    def stream(self, r: Reply, include_usage: bool) -> StreamParts:
        """The SSE frames of a streamed response."""
        ...

    def error(self, status: int, message: str) -> bytes:
        """An error body for HTTP ``status``."""
        ...


class ListedModel(msgspec.Struct, frozen=True):
    """A model entry readable by both OpenAI (``object``, ``owned_by``) and Anthropic (``type``) clients."""

    id: str
    display_name: str
    created: int = 1_700_000_000
    created_at: str = "2023-11-14T22:13:20Z"
    object: str = "model"
    type: str = "model"
    owned_by: str = "interlock-simulator"


class ModelList(msgspec.Struct, frozen=True):
    """``GET /v1/models``: OpenAI's list object with Anthropic's paging fields."""

    data: list[ListedModel]
    object: str = "list"
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


def model_list(ids: list[str]) -> bytes:
    """The shared ``/v1/models`` body."""
    data = [ListedModel(i, f"{i} (simulated)") for i in ids]
    return _enc.encode(ModelList(data, first_id=ids[0] if ids else None, last_id=ids[-1] if ids else None))
