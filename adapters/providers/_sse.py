"""Incremental Server-Sent Events parser: bytes in any chunking -> (event, data) pairs.

Follows the WHATWG event-stream rules that matter for LLM APIs: lines end in LF, CR or CRLF;
``data`` lines of one event are joined with LF; a blank line dispatches; ``:`` starts a comment.
The parser keeps only the unfinished tail between feeds.

Two faces over one parser: ``feed``/``close`` give ``SSEEvent``s with text data (invalid UTF-8
replaced), ``feed_raw``/``close_raw`` give ``(event, data)`` with the data as raw bytes, for a
JSON decoder that reads bytes (no text round trip). Most LLM events are one ``data: ...`` line
followed by a blank line; a run of such events is cut at its blank lines and each is taken whole,
without being split into lines.
"""

from __future__ import annotations

from typing import NamedTuple

RawEvent = tuple[str, bytes]
"""One dispatched event as ``(event, data)``, the data as the raw bytes of its ``data`` lines."""

_MESSAGE = "message"


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
        self._data: list[bytes] = []
        self._pending_cr = False
        self.offset = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse ``chunk`` and return the events it completes."""
        out: list[SSEEvent] = []
        for event, data in self.feed_raw(chunk):  # a loop: cheaper than a comprehension for one event
            out.append(SSEEvent(event, data.decode("utf-8", "replace")))
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream: an event without its blank line is dispatched only if complete."""
        return [SSEEvent(event, data.decode("utf-8", "replace")) for event, data in self.close_raw()]

    def feed_raw(self, chunk: bytes) -> list[RawEvent]:
        """``feed`` with each event's data left as bytes (its ``data`` lines joined with LF)."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
            self.offset += 1
        self._pending_cr = False
        self.offset += len(chunk)
        buf = self._buf + chunk if self._buf else chunk
        # find, not ``in``: the operator costs twice as much on bytes
        if buf.find(b"\r") >= 0:
            self._pending_cr = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out: list[RawEvent] = []
        if buf[:6] == b"data: " and not self._data and not self._event:
            end = buf.rfind(b"\n\n")
            if end >= 0:
                # A run of one-line data events: split at once, taken if every LF is in a separator.
                run = buf[6:end]
                events = run.split(b"\n\ndata: ")
                if run.count(b"\n") == 2 * len(events) - 2:
                    for data in events:
                        out.append((_MESSAGE, data))
                    buf = buf[end + 2 :]
                    if not buf:
                        self._buf = b""
                        return out
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        for raw in lines:
            self._line(raw, out)
        return out

    def close_raw(self) -> list[RawEvent]:
        """``close`` with the data left as bytes."""
        out: list[RawEvent] = []
        if self._buf:
            self._line(self._buf, out)
            self._buf = b""
        self._line(b"", out)
        return out

    @property
    def has_pending(self) -> bool:
        """True while an event has started but not been dispatched."""
        return bool(self._buf or self._data or self._event)

    def _line(self, raw: bytes, out: list[RawEvent]) -> None:
        if not raw:
            if self._data:
                out.append((self._event or _MESSAGE, b"\n".join(self._data)))
            self._data = []
            self._event = ""
            return
        if raw[:6] == b"data: ":
            self._data.append(raw[6:])
            return
        if raw[:1] == b":":
            return
        name, sep, value = raw.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
