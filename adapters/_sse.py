"""Incremental Server-Sent Events parser: bytes in any chunking -> (event, data) pairs.

Follows the WHATWG event-stream rules that matter for LLM APIs: lines end in LF, CR or CRLF;
``data`` lines of one event are joined with LF; a blank line dispatches; ``:`` starts a comment.
The parser keeps only the unfinished tail between feeds, so a token costs one split.
"""

from __future__ import annotations

from typing import NamedTuple


class SSEEvent(NamedTuple):
    """One dispatched event; ``event`` is ``message`` unless the stream named it."""

    event: str
    data: str


class SSEParser:
    """Feed raw bytes, get complete events; ``offset`` counts bytes consumed so far."""

    __slots__ = ("_buf", "_data", "_event", "_pending_cr", "offset")

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[str] = []
        self._pending_cr = False
        self.offset = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse ``chunk`` and return the events it completes."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
            self.offset += 1
        self._pending_cr = False
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            self._pending_cr = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        self.offset += len(chunk)
        out: list[SSEEvent] = []
        for raw in lines:
            self._line(raw, out)
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream: an event without its blank line is dispatched only if complete."""
        out: list[SSEEvent] = []
        if self._buf:
            self._line(self._buf, out)
            self._buf = b""
        self._line(b"", out)
        return out

    @property
    def has_pending(self) -> bool:
        """True while an event has started but not been dispatched."""
        return bool(self._buf or self._data or self._event)

    def _line(self, raw: bytes, out: list[SSEEvent]) -> None:
        if not raw:
            if self._data:
                out.append(SSEEvent(self._event or "message", "\n".join(self._data)))
            self._data = []
            self._event = ""
            return
        if raw[:6] == b"data: ":
            # The common case, one JSON payload per line: no partition, one decode.
            self._data.append(raw[6:].decode("utf-8", errors="replace"))
            return
        line = raw.decode("utf-8", errors="replace")
        if line[0] == ":":
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
