"""How the simulator plays one planned answer onto its HTTP response: the fault, the latencies, the bytes.

``Playback.answer`` takes the ``Plan`` drawn for a request and the ``Reply`` built for it, and
writes it as the plan says: an error status (with ``Retry-After`` for a rate limit), a TCP reset,
headers held back, a late first token, tokens at their drawn gaps, a stream or body cut short
(``Drop``) or broken JSON (``Malformed``). Which plan a request gets is the server's business
(``_server``); this module only carries it out. A refusal, a usage-less answer and an in-band
error after the usage are the ``Reply``'s to say (``_wire.build_reply``): the formats write them.
Latencies are ``clock.sleep`` calls, and a zero latency never touches the clock.
"""

from __future__ import annotations

import socket
import struct

from aiohttp import web

from interlock._clock import Clock
from interlock.adapters.simulator._behaviour import (
    STATUS_OF,
    Drop,
    ErrorAfterUsage,
    Fault,
    Malformed,
    Plan,
    RateLimit,
    Reset,
    StallFirstToken,
    StallHeaders,
    fault_kind,
)
from interlock.adapters.simulator._wire import Ask, Reply, StreamParts, WireFormat

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
JSON = "application/json"
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a TCP RST


class ClientGone(Exception):
    """A write found the connection closed; carries the response to hand back to aiohttp."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("client disconnected")
        self.response = response


class Playback:
    """Writes planned answers, sleeping on ``clock``."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def answer(
        self, request: web.Request, wire: WireFormat, ask: Ask, plan: Plan, reply: Reply
    ) -> tuple[web.StreamResponse, bool]:
        """The response, and whether it counts as completed (a 200 written to its end, or as the fault says)."""
        fault = plan.fault
        status = STATUS_OF.get(type(fault))
        if status is not None:
            headers = {"retry-after": f"{fault.retry_after:g}"} if isinstance(fault, RateLimit) else None
            return error_response(wire, status, f"simulated {fault_kind(fault)}", headers), False
        if isinstance(fault, Reset):
            abort(request, reset=True)
            return web.Response(), False
        if isinstance(fault, ErrorAfterUsage) and not ask.stream:
            # A body cannot fail half way as a stream does: the error is the whole answer.
            return error_response(wire, fault.status, f"simulated {fault_kind(fault)}"), False
        if isinstance(fault, StallHeaders):
            await self._sleep(fault.seconds)
        ttft = fault.seconds if isinstance(fault, StallFirstToken) else plan.ttft
        if ask.stream:
            resp = await self._stream(request, wire.stream(reply, ask.include_usage), reply, plan, ttft)
        else:
            resp = await self._body(request, wire.body(reply), fault, ttft + sum(plan.delays[1:]))
        return resp, not isinstance(fault, Drop)

    async def _stream(
        self, request: web.Request, parts: StreamParts, reply: Reply, plan: Plan, ttft: float
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        fault = plan.fault
        cut = fault.after_tokens if isinstance(fault, Drop) else None
        bad = fault.after_tokens if isinstance(fault, Malformed) else None
        try:
            await resp.prepare(request)
            if parts.head:
                await resp.write(parts.head)
            await self._sleep(ttft)
            if reply.calls:
                frames = [parts.template.malformed()] if bad is not None else []
                await resp.write(b"".join(frames if cut is not None else [*frames, *parts.calls]))
            else:
                await self._tokens(resp, parts, reply, plan.delays, cut, bad)
            if cut is not None:
                abort(request, reset=False)
                return resp
            await resp.write(parts.tail)
            await resp.write_eof()
        except ConnectionError as exc:
            raise ClientGone(resp) from exc
        return resp

    async def _tokens(
        self, resp: web.StreamResponse, parts: StreamParts, reply: Reply, delays: tuple[float, ...],
        cut: int | None, bad: int | None,
    ) -> None:
        # Tokens with no delay between them go out in one write: the server stays cheap under load.
        template, pending = parts.template, list[bytes]()
        frames = (
            (template.text(p) for p in reply.pieces) if reply.pieces
            else (template.token(w, i == 0) for i, w in enumerate(reply.words))
        )
        for i, frame in enumerate(frames):
            if i == cut:
                break
            if i == bad:
                pending.append(template.malformed())
            if i and i < len(delays) and delays[i] > 0:
                await resp.write(b"".join(pending))
                pending.clear()
                await self._sleep(delays[i])
            pending.append(frame)
        if bad is not None and bad >= len(reply.pieces or reply.words):
            pending.append(template.malformed())
        if pending:
            await resp.write(b"".join(pending))

    async def _body(self, request: web.Request, body: bytes, fault: Fault, delay: float) -> web.StreamResponse:
        await self._sleep(delay)
        if isinstance(fault, Malformed):
            body = body[: len(body) // 2]
        resp = web.StreamResponse(headers={"Content-Type": JSON})
        resp.content_length = len(body)
        try:
            await resp.prepare(request)
            if isinstance(fault, Drop):
                await resp.write(body[: len(body) // 2])
                abort(request, reset=False)
                return resp
            await resp.write(body)
            await resp.write_eof()
        except ConnectionError as exc:
            raise ClientGone(resp) from exc
        return resp

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the clock, unless ``seconds`` is zero (a test's clock is then never touched)."""
        if seconds > 0:
            await self._clock.sleep(seconds)


def error_response(wire: WireFormat, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error in ``wire``'s own body shape."""
    return web.Response(status=status, body=wire.error(status, message), content_type=JSON, headers=headers)


def abort(request: web.Request, *, reset: bool) -> None:
    """Close the connection at once, with a TCP RST when ``reset``."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if reset and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    transport.abort()
