"""The text a command-line model exchanges: the prompt it is given and the stdout it answers with.

Prompt format (``render_prompt``): the text of every system message first, then one turn per
message, ``User: ...``, ``Assistant: ...`` or ``Tool: ...``, turns separated by a blank line.
Parts of a message are joined by a newline; tool calls, tool results and images become
bracketed text (``[tool call ID: NAME(ARGS)]``, ``[tool result ID: CONTENT]``, ``[image: URL]``).
Tool definitions and response formats are not passed: a CLI in print mode takes only text.

Output readers (``PlainText``, ``JsonLines``) turn stdout chunks into answer text as they come
and keep the token counts the CLI reports; ``_command`` runs the process and feeds them.
"""

from __future__ import annotations

import codecs
from typing import TypeAlias

import msgspec

from interlock._types import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from interlock.policies._command_spec import CommandSpec

__all__ = ["JsonLines", "OutputReader", "PlainText", "render_prompt"]

_ROLE_LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool"}
# The shape of a jsonl line is the CLI's, named only by dotted paths in the settings, so lines
# are decoded untyped and walked by path; lines of other shapes are skipped, not rejected.
_JSON = msgspec.json.Decoder()
_UTF8 = codecs.getincrementaldecoder("utf-8")


def render_prompt(request: ChatRequest) -> str:
    """The request as one transcript: system text first, then the turns (see the module doc)."""
    system = [_render_parts(m) for m in request.messages if m.role == "system"]
    turns = [f"{_ROLE_LABELS[m.role]}: {_render_parts(m)}" for m in request.messages if m.role != "system"]
    return "\n\n".join([text for text in system if text] + turns)


def _render_parts(message: Message) -> str:
    return "\n".join(_render_part(part) for part in message.content)


def _render_part(part: Part) -> str:
    match part:
        case TextPart(text=text):
            return text
        case ImagePart(url=str(url)):
            return f"[image: {url}]"
        case ImagePart(media_type=media_type):
            return f"[image: {media_type}, inline data not sent]"
        case ToolCallPart(id=call_id, name=name, arguments=arguments):
            return f"[tool call {call_id}: {name}({arguments})]"
        case ToolResultPart(tool_call_id=call_id, content=content, is_error=is_error):
            return f"[tool result {call_id}{' (error)' if is_error else ''}: {content}]"
    raise AssertionError(f"unknown part {type(part).__name__}")  # pragma: no cover


class PlainText:
    """stdout as UTF-8, decoded incrementally so a character split across reads stays whole."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    bad_line: int | None = None

    def __init__(self) -> None:
        self._decoder = _UTF8(errors="replace")

    def feed(self, chunk: bytes) -> list[str]:
        text = self._decoder.decode(chunk)
        return [text] if text else []

    def close(self) -> list[str]:
        text = self._decoder.decode(b"", final=True)
        return [text] if text else []


class JsonLines:
    """stdout as one JSON object a line: text and token counts at dotted paths (last count wins).

    A line that is not JSON sets ``bad_line`` and ends decoding; the text of the lines before it
    is still returned, so the caller sees every piece that the error's partial text holds.
    """

    def __init__(self, spec: CommandSpec) -> None:
        self._text = tuple(spec.text_field.split("."))
        self._input = tuple(spec.input_tokens_field.split(".")) if spec.input_tokens_field else None
        self._output = tuple(spec.output_tokens_field.split(".")) if spec.output_tokens_field else None
        self._buf = b""
        self._line_no = 0
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.bad_line: int | None = None

    def feed(self, chunk: bytes) -> list[str]:
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        return self._lines(lines)

    def close(self) -> list[str]:
        line, self._buf = self._buf, b""
        return self._lines([line] if line else [])

    def _lines(self, lines: list[bytes]) -> list[str]:
        texts: list[str] = []
        for raw in lines:
            if self.bad_line is not None:
                break
            if text := self._line(raw):
                texts.append(text)
        return texts

    def _line(self, raw: bytes) -> str:
        self._line_no += 1
        if not raw.strip():
            return ""
        try:
            obj = _JSON.decode(raw)
        except msgspec.DecodeError:
            self.bad_line = self._line_no
            return ""
        if (count := _count_at(obj, self._input)) is not None:
            self.input_tokens = count
        if (count := _count_at(obj, self._output)) is not None:
            self.output_tokens = count
        text = _dig(obj, self._text)
        return text if isinstance(text, str) else ""


def _dig(value: object, path: tuple[str, ...]) -> object:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _count_at(obj: object, path: tuple[str, ...] | None) -> int | None:
    value = _dig(obj, path) if path else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


OutputReader: TypeAlias = PlainText | JsonLines  # what ``_command`` feeds stdout to
