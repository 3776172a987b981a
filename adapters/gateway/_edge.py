"""What every inbound dialect of the gateway shares: keys, bodies, request ids, streams, errors.

The gateway speaks several wires (OpenAI chat completions in ``_app``; each other dialect in its
own module); all of them stand on this edge, so that a key, a body limit, a client that leaves,
or a failure before the first token behave the same whatever the client speaks:

- ``Edge.authenticate``: a key from ``Authorization: Bearer`` or ``x-api-key`` (Anthropic's
  clients send that) maps to a tenant and caller; keys are kept as SHA-256 digests, an error
  shows at most a key's first 6 characters; without keys everyone is tenant ``default``.
- ``Edge.read_body``: at most ``max_body`` bytes, a client gone while sending is ``cancelled``.
- ``start_stream``: a stream starts only once its first event is in, so that a failure before
  the first token is still a real HTTP status; after it, the dialect's writer says it in-band.
- ``fold_unless_gone``: a whole answer folded while ``receive()`` is watched; a client that
  goes away closes the door's stream, which cancels the upstream call.
- ``guarded``: the gateway's own refusals (``Reject``) and every ``InterlockError`` answered as
  the dialect renders an ``HttpFailure`` (OpenAI's error body by default).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

import anyio
import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from interlock._clock import Clock
from interlock._errors import InterlockError
from interlock._types import ChatRequest, RouteEvent, StreamEvent
from interlock.adapters.gateway._failures import HttpFailure, failure, http_failure
from interlock.adapters.providers.openai._server_wire import ENCODER
from interlock.policies._config import Config

Events = AsyncIterator[StreamEvent | RouteEvent]
CLIENT_GONE = 499  # nginx's "client closed request": nobody reads it, the access log does
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


class VirtualKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who a gateway key stands for: the tenant billed and governed, and the calling service."""

    tenant: str
    caller: str = "default"


OPEN_ACCESS = VirtualKey(tenant="default", caller="default")


class ProviderState(Protocol):
    """What ``/readyz`` reads of each provider's health."""

    @property
    def breaker(self) -> str: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def cooling_down_s(self) -> float: ...
    @property
    def free_slots(self) -> int: ...
    @property
    def in_flight(self) -> int: ...


class GatewayDoor(Protocol):
    """The part of ``interlock.Door`` the gateway uses (adapters may not import actors)."""

    @property
    def config(self) -> Config: ...
    def send(self, request: ChatRequest, *, on_plan: Callable[[str], None] | None = None) -> Events: ...
    async def health(self) -> Mapping[str, ProviderState]: ...


def mask_key(key: str) -> str:
    """A key as it may be shown: its first 6 characters, and nothing of a short key."""
    return f"{key[:6]}..." if len(key) >= 16 else "..."


class Reject(Exception):
    """The gateway itself refuses a request (key, body, decoding): answered as ``failure``."""

    def __init__(self, failure: HttpFailure) -> None:
        super().__init__(failure.body.error.message)
        self.failure = failure


class Edge:
    """One gateway's door, keys, body limit and clock, shared by every dialect's endpoints."""

    def __init__(self, door: GatewayDoor, keys: Mapping[str, VirtualKey] | None, max_body: int, clock: Clock) -> None:
        self.door = door
        self.clock = clock
        self._keys = None if keys is None else {_digest(k): v for k, v in keys.items()}
        self._max_body = max_body
        # No model of the fleet can take more: a larger token limit is refused before the door.
        self.ceiling = max((m.context_window for m in door.config.models.values()), default=None)

    @property
    def open_access(self) -> bool:
        """True when the gateway has no keys: any key (or none) is tenant ``default``."""
        return self._keys is None

    def authenticate(self, request: Request) -> VirtualKey:
        """The caller a request's key names (``Authorization: Bearer`` or ``x-api-key``); ``Reject`` else."""
        if self._keys is None:
            return OPEN_ACCESS
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        token = token or request.headers.get("x-api-key", "").strip()
        if not token:
            message = "You didn't provide an API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'."
            raise Reject(failure("missing_api_key", message))
        who = self._keys.get(_digest(token))
        if who is None:
            raise Reject(failure("invalid_api_key", f"Incorrect API key provided: {mask_key(token)}"))
        return who

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused past the size limit before it is all read."""
        limit = self._max_body
        too_big = failure("request_too_large", f"the request body exceeds {limit} bytes")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise Reject(too_big)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Reject(too_big)
                chunks.append(chunk)
        except ClientDisconnect:
            raise Reject(failure("cancelled", "client closed the request")) from None
        return b"".join(chunks)

    def new_request_id(self) -> tuple[str, float]:
        """A fresh request id and the wall time it was made at.

        Time-ordered, like the ids the door gives (``new_request_id``, in actors/_router_actor.py).
        """
        wall = self.clock.wall()
        return f"{int(wall * 1000):012x}{uuid.uuid4().hex[:16]}", wall


def trace_of(request: Request) -> dict[str, str]:
    """W3C trace context to continue; an invalid ``traceparent`` is dropped, as the spec says."""
    parent = request.headers.get("traceparent", "").strip().lower()
    if not _TRACEPARENT.match(parent):
        return {}
    state = request.headers.get("tracestate")
    return {"traceparent": parent, **({"tracestate": state} if state else {})}


# -- errors -------------------------------------------------------------------------------------

Render = Callable[[HttpFailure], Response]


def openai_error(fail: HttpFailure) -> Response:
    """An error as OpenAI's wire answers it: ``{"error": {...}}``, the status and the retry headers."""
    return json_response(fail.body, status=fail.status, headers=fail.headers())


def guarded(
    handler: Callable[[Request], Awaitable[Response]], render: Render = openai_error
) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` with the gateway's refusals and interlock's errors answered by ``render``."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Reject as exc:
            return render(exc.failure)
        except InterlockError as exc:
            return render(http_failure(exc))

    return endpoint


def json_response(body: msgspec.Struct, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``body`` as JSON with ``status`` and ``headers``."""
    return Response(ENCODER.encode(body), status_code=status, headers=headers, media_type="application/json")


# -- answers ------------------------------------------------------------------------------------


class StreamWriter(Protocol):
    """A dialect's stream encoder: the bytes for each event, for a failure after the first, and the end.

    ``end`` gives the bytes that close a stream which ran to its end, once the writer's own
    work for it is done (the Responses dialect keeps a stored response before its final event).
    """

    def feed(self, event: StreamEvent | RouteEvent) -> bytes: ...
    def fail(self, error: InterlockError) -> bytes: ...
    async def end(self) -> bytes: ...


async def start_stream(
    receive: Receive, events: Events, writer: StreamWriter, headers: Callable[[], dict[str, str]]
) -> Response:
    """Wait for the first event (a failure before it is still an HTTP status), then stream with ``headers()``."""
    first: list[StreamEvent | RouteEvent] = []

    async def pull() -> None:
        async for event in events:
            first.append(event)
            return

    try:
        gone = await unless_gone(receive, pull)
    except BaseException:
        await aclose(events)
        raise
    if gone or not first:
        await aclose(events)
        if gone:
            return Response(status_code=CLIENT_GONE)
        raise Reject(failure("internal", "the answer ended before it started"))
    return EventStream(events, first[0], writer, headers())


async def fold_unless_gone(receive: Receive, events: Events, fold: Callable[[StreamEvent | RouteEvent], None]) -> bool:
    """Feed every event of ``events`` to ``fold`` unless the client leaves first (then True)."""

    async def consume() -> None:
        async for event in events:
            fold(event)

    try:
        return await unless_gone(receive, consume)
    finally:
        await aclose(events)


class EventStream(Response):
    """``text/event-stream`` of one answer; closing the door's stream on every exit cancels upstream."""

    media_type = "text/event-stream"

    def __init__(
        self, events: Events, first: StreamEvent | RouteEvent, writer: StreamWriter, headers: dict[str, str]
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({**headers, "cache-control": "no-cache", "x-accel-buffering": "no"})
        self._events, self._first, self._writer = events, first, writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if not await unless_gone(receive, lambda: self._pump(send)):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await aclose(self._events)

    async def _pump(self, send: Send) -> None:
        writer = self._writer
        data = writer.feed(self._first)
        try:
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            async for event in self._events:
                data = writer.feed(event)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            data = await writer.end()
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
        except InterlockError as exc:
            await send({"type": "http.response.body", "body": writer.fail(exc), "more_body": True})


async def unless_gone(receive: Receive, work: Callable[[], Awaitable[None]]) -> bool:
    """Run ``work`` unless the client disconnects first; True when it did (``work`` is then cancelled)."""
    gone = False
    error: InterlockError | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            await work()
        except InterlockError as exc:  # kept out of the task group, which would wrap it in a group
            error = exc
        tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return gone


async def aclose(events: Events) -> None:
    """Close the door's stream: it is an async generator, and closing it cancels an unfinished request."""
    close: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
    if close is not None:
        await close()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
