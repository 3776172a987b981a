"""The OpenAI-compatible HTTP face of a door: the Starlette app that ``interlock serve`` runs.

::

    app = build_app(door, virtual_keys={"sk-ilk-...": VirtualKey(tenant="acme", caller="svc")})

Endpoints: ``POST /v1/chat/completions`` (streamed or not), ``GET /v1/models`` and
``/v1/models/{id}`` (jobs and models), ``GET /healthz`` (the process) and ``GET /readyz`` (some
provider healthy, breaker not open). Every error is OpenAI's ``{"error": {...}}`` shape.

- Keys: a bearer key maps to a tenant and caller; keys are kept only as SHA-256 digests and an
  error shows at most a key's first 6 characters. ``virtual_keys=None`` accepts any bearer (or
  none) as tenant ``default``. Provider keys live in the door and never reach a client.
- A client that goes away cancels its request: the body is read, then ``receive()`` is watched
  for ``http.disconnect`` while the door works, and the door's stream is closed, which cancels
  the upstream call and records the request as cancelled.
- A malformed request is a 400 naming the field before the door sees it (so nothing is paid for
  upstream): a wrong shape, a body nested past the decoder's stack, a token limit above every
  model's context window, a tool schema ``check_tool_schemas`` refuses, an option interlock cannot
  honour (``unsupported_parameter``).
- Every error's status, code and retry hints come from one table, ``_failures.FAILURES``
  (rendered in docs/errors.md).
- A stream starts only once its first event is in, so that a failure before the first token
  is still a real HTTP status; a failure after it is a ``data: {"error": ...}`` event, then the end.
  Its response headers carry ``x-interlock-request-id`` and ``x-interlock-first-choice`` (the
  door's ``on_plan``): how it was served is known only at its end, in the final chunk's
  ``interlock`` member and the trailing SSE comments.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from interlock._clock import Clock, RealClock
from interlock._errors import InterlockError
from interlock._types import ChatRequest, RouteEvent, StreamEvent
from interlock.adapters.gateway._answers import Answer, ChunkWriter, route_headers
from interlock.adapters.gateway._failures import HttpFailure, failure, http_failure, routing_miss
from interlock.adapters.gateway._requests import (
    check_tools,
    decode_error,
    sensitivity_of,
    to_chat_request,
    too_deep,
    unsupported_parameter,
)
from interlock.adapters.gateway._wire import ProviderStateOut, ReadinessOut
from interlock.adapters.providers.openai._server_wire import ENCODER, REQUEST_DECODER, ModelListOut, ModelOut
from interlock.policies._config import Config

Events = AsyncIterator[StreamEvent | RouteEvent]
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_CLIENT_GONE = 499  # nginx's "client closed request": nobody reads it, the access log does


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


def build_app(
    door: GatewayDoor,
    *,
    virtual_keys: Mapping[str, VirtualKey] | None = None,
    max_body_bytes: int = 8 * 1024 * 1024,
    clock: Clock | None = None,
) -> Starlette:
    """The gateway over ``door``; ``virtual_keys=None`` serves everyone as tenant ``default``."""
    gw = _Gateway(door, virtual_keys, max_body_bytes, clock or RealClock())
    routes = [
        Route("/v1/chat/completions", _guarded(gw.chat), methods=["POST"]),
        Route("/v1/models", _guarded(gw.models), methods=["GET"]),
        Route("/v1/models/{model:path}", _guarded(gw.model), methods=["GET"]),
        Route("/healthz", gw.healthz, methods=["GET"]),
        Route("/readyz", gw.readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception, 500: _internal})


class _Reject(Exception):
    """The gateway itself refuses a request (key, body, decoding): answered as ``failure``."""

    def __init__(self, failure: HttpFailure) -> None:
        super().__init__(failure.body.error.message)
        self.failure = failure


class _Gateway:
    """The endpoints, over one door."""

    def __init__(self, door: GatewayDoor, keys: Mapping[str, VirtualKey] | None, max_body: int, clock: Clock) -> None:
        self._door = door
        self._keys = None if keys is None else {_digest(k): v for k, v in keys.items()}
        self._max_body = max_body
        self._clock = clock
        self._ceiling = max((m.context_window for m in door.config.models.values()), default=None)

    async def chat(self, request: Request) -> Response:
        who = self._authenticate(request)
        body = await self._read_body(request)
        try:
            wire = REQUEST_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise decode_error(exc) from None
        except RecursionError:  # msgspec descends containers on the C stack: a deep body runs out of it
            raise too_deep(body) from None
        unsupported = unsupported_parameter(wire)
        if unsupported is not None:
            problem = f"Unsupported parameter: {unsupported!r} is not supported by interlock."
            raise _Reject(failure("unsupported_parameter", problem, param=unsupported))
        wall = self._clock.wall()
        # Time-ordered, like the ids the door gives (``new_request_id``, in actors/_router_actor.py).
        request_id = f"{int(wall * 1000):012x}{uuid.uuid4().hex[:16]}"
        chat = to_chat_request(
            wire,
            tenant=who.tenant,
            caller=who.caller,
            metadata=_trace(request),
            request_id=request_id,
            sensitivity=sensitivity_of(request.headers.get("x-interlock-sensitivity")),
            max_tokens_ceiling=self._ceiling,
        )
        await check_tools(chat)  # before the door: a bad schema is never paid for upstream
        if wire.stream:
            planned: list[str] = []
            events = self._door.send(chat, on_plan=planned.append)
            usage = wire.stream_options is not None and wire.stream_options.include_usage
            writer = ChunkWriter(request_id, int(wall), wire.model, include_usage=usage)
            return await _start_stream(request.receive, events, writer, lambda: _stream_headers(request_id, planned))
        events = self._door.send(chat)
        answer = Answer()

        async def consume() -> None:
            async for event in events:
                answer.add(event)

        try:
            gone = await _unless_gone(request.receive, consume)
        finally:
            await _aclose(events)
        if gone:
            return Response(status_code=_CLIENT_GONE)
        out = answer.completion(request_id, int(wall), wire.model)
        return _json(out, headers=answer.headers(request_id))

    async def models(self, request: Request) -> Response:
        self._authenticate(request)
        return _json(ModelListOut(self._catalog()))

    async def model(self, request: Request) -> Response:
        self._authenticate(request)
        wanted = request.path_params["model"]
        config = self._door.config
        for entry in self._catalog():
            if entry.id == wanted:
                return _json(entry)
        for model in config.models.values():
            if model.id == wanted:
                return _json(ModelOut(model.id, model.provider))
        problem = f"no job or model named {wanted!r}"
        raise _Reject(failure("model_not_found", problem, param="model"))

    def _catalog(self) -> list[ModelOut]:
        config = self._door.config
        jobs = [ModelOut(name, "interlock") for name in config.jobs]
        return jobs + [ModelOut(name, model.provider) for name, model in config.models.items()]

    async def healthz(self, request: Request) -> Response:
        return _json(ReadinessOut("ok", {}))

    async def readyz(self, request: Request) -> Response:
        states: Mapping[str, ProviderState] = {}
        with anyio.move_on_after(5.0):
            try:
                states = await self._door.health()
            except InterlockError:
                states = {}
        providers = {
            name: ProviderStateOut(s.breaker, s.healthy, s.cooling_down_s, s.free_slots, s.in_flight)
            for name, s in states.items()
        }
        ready = any(s.healthy and s.breaker != "open" for s in states.values())
        return _json(ReadinessOut("ready" if ready else "unavailable", providers), status=200 if ready else 503)

    def _authenticate(self, request: Request) -> VirtualKey:
        if self._keys is None:
            return OPEN_ACCESS
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            message = "You didn't provide an API key: send it as 'Authorization: Bearer <key>'."
            raise _Reject(failure("missing_api_key", message))
        who = self._keys.get(_digest(token))
        if who is None:
            message = f"Incorrect API key provided: {mask_key(token)}"
            raise _Reject(failure("invalid_api_key", message))
        return who

    async def _read_body(self, request: Request) -> bytes:
        limit = self._max_body
        too_big = failure("request_too_large", f"the request body exceeds {limit} bytes")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _Reject(too_big)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _Reject(too_big)
                chunks.append(chunk)
        except ClientDisconnect:
            raise _Reject(failure("cancelled", "client closed the request")) from None
        return b"".join(chunks)


# -- streaming ----------------------------------------------------------------------------------


def _stream_headers(request_id: str, planned: list[str]) -> dict[str, str]:
    """A stream's headers, sent before its route is known: the request id and the job's first choice."""
    headers = route_headers(None, request_id)
    if planned and planned[0]:
        headers["x-interlock-first-choice"] = planned[0]
    return headers


async def _start_stream(
    receive: Receive, events: Events, writer: ChunkWriter, headers: Callable[[], dict[str, str]]
) -> Response:
    """Wait for the first event (a failure before it is still an HTTP status), then stream with ``headers()``."""
    first: list[StreamEvent | RouteEvent] = []

    async def pull() -> None:
        async for event in events:
            first.append(event)
            return

    try:
        gone = await _unless_gone(receive, pull)
    except BaseException:
        await _aclose(events)
        raise
    if gone or not first:
        await _aclose(events)
        if gone:
            return Response(status_code=_CLIENT_GONE)
        raise _Reject(failure("internal", "the answer ended before it started"))
    return _EventStream(events, first[0], writer, headers())


class _EventStream(Response):
    """``text/event-stream`` of one answer; closing the door's stream on every exit cancels upstream."""

    media_type = "text/event-stream"

    def __init__(
        self, events: Events, first: StreamEvent | RouteEvent, writer: ChunkWriter, headers: dict[str, str]
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({**headers, "cache-control": "no-cache", "x-accel-buffering": "no"})
        self._events, self._first, self._writer = events, first, writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if not await _unless_gone(receive, lambda: self._pump(send)):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await _aclose(self._events)

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
        except InterlockError as exc:
            data = writer.error(http_failure(exc).body)
            await send({"type": "http.response.body", "body": data, "more_body": True})


async def _unless_gone(receive: Receive, work: Callable[[], Awaitable[None]]) -> bool:
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


async def _aclose(events: Events) -> None:
    # The door's stream is an async generator; closing it is what cancels an unfinished request.
    aclose: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


# -- helpers ------------------------------------------------------------------------------------


def _guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except _Reject as exc:
            return _error(exc.failure)
        except InterlockError as exc:
            return _error(http_failure(exc))

    return endpoint


def _error(fail: HttpFailure) -> Response:
    return _json(fail.body, status=fail.status, headers=fail.headers())


def _json(body: msgspec.Struct, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(ENCODER.encode(body), status_code=status, headers=headers, media_type="application/json")


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Routing misses (404, 405) in OpenAI's error shape, keeping headers such as ``Allow``."""
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    message = f"{request.method} {request.url.path}: {exc.detail}"
    response = _error(routing_miss(exc.status_code, message))
    response.headers.update(exc.headers or {})
    return response


async def _internal(request: Request, exc: Exception) -> Response:
    return _error(failure("internal", "internal error in the gateway"))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _trace(request: Request) -> dict[str, str]:
    """W3C trace context to continue; an invalid ``traceparent`` is dropped, as the spec says."""
    parent = request.headers.get("traceparent", "").strip().lower()
    if not _TRACEPARENT.match(parent):
        return {}
    state = request.headers.get("tracestate")
    return {"traceparent": parent, **({"tracestate": state} if state else {})}
