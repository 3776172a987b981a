"""The OpenAI-compatible HTTP face of a door: the Starlette app that ``interlock serve`` runs.

::

    app = build_app(door, virtual_keys={"sk-ilk-...": VirtualKey(tenant="acme", caller="svc")})

Endpoints: ``POST /v1/chat/completions`` (streamed or not), ``GET /v1/models`` and
``/v1/models/{id}`` (jobs and models), ``GET /healthz`` (the process) and ``GET /readyz`` (some
provider healthy, breaker not open). Every error is OpenAI's ``{"error": {...}}`` shape.

- Keys, body limits, request ids, streams and a client that goes away are the edge's
  (``_edge``), shared with every other inbound dialect: a key maps to a tenant and caller,
  ``virtual_keys=None`` accepts any key (or none) as tenant ``default``; provider keys live in
  the door and never reach a client; a client that leaves cancels its upstream call, recorded
  as cancelled.
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

import os
from collections.abc import Mapping
from pathlib import Path

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from interlock._clock import Clock, RealClock
from interlock._errors import InterlockError
from interlock.adapters.dashboard._access import admin_key_from
from interlock.adapters.dashboard._app import dashboard_routes
from interlock.adapters.gateway._answers import Answer, ChunkWriter, stream_headers
from interlock.adapters.gateway._edge import (
    CLIENT_GONE,
    OPEN_ACCESS,
    Edge,
    GatewayDoor,
    ProviderState,
    Reject,
    VirtualKey,
    fold_unless_gone,
    guarded,
    json_response,
    mask_key,
    openai_error,
    start_stream,
    trace_of,
)
from interlock.adapters.gateway._embeddings import embeddings_route
from interlock.adapters.gateway._failures import failure, routing_miss
from interlock.adapters.gateway._messages import Messages, anthropic_error
from interlock.adapters.gateway._requests import (
    check_tools,
    decode_error,
    sensitivity_of,
    to_chat_request,
    too_deep,
    unsupported_parameter,
)
from interlock.adapters.gateway._responses import responses_routes
from interlock.adapters.gateway._wire import ProviderStateOut, ReadinessOut
from interlock.adapters.providers.openai._server_wire import REQUEST_DECODER, ModelListOut, ModelOut

__all__ = ["OPEN_ACCESS", "GatewayDoor", "ProviderState", "VirtualKey", "build_app", "mask_key"]


def build_app(
    door: GatewayDoor,
    *,
    virtual_keys: Mapping[str, VirtualKey] | None = None,
    max_body_bytes: int = 8 * 1024 * 1024,
    clock: Clock | None = None,
    dashboard_ledger: str | Path | None = None,
    admin_key: str | None = None,
) -> Starlette:
    """The gateway over ``door``; ``virtual_keys=None`` serves everyone as tenant ``default``.

    Every API route is served with and without the ``/v1`` prefix, as other gateways accept.
    The read-only dashboard is at ``/ui`` over ``dashboard_ledger`` (default: the config's ledger
    file), for the virtual keys and the admin key (default: ``$INTERLOCK_ADMIN_KEY``).
    """
    edge = Edge(door, virtual_keys, max_body_bytes, clock or RealClock())
    gw = _Gateway(edge)
    messages = Messages(edge)
    api = [
        Route("/chat/completions", guarded(gw.chat), methods=["POST"]),
        Route("/models", guarded(gw.models), methods=["GET"]),
        Route("/models/{model:path}", guarded(gw.model), methods=["GET"]),
        embeddings_route(edge),
        *responses_routes(edge),
        Route("/messages", guarded(messages.create, anthropic_error), methods=["POST"]),
        Route("/messages/count_tokens", guarded(messages.count_tokens, anthropic_error), methods=["POST"]),
    ]
    routes = [
        *(Route("/v1" + r.path, r.endpoint, methods=r.methods) for r in api),
        *api,
        Route("/healthz", gw.healthz, methods=["GET"]),
        Route("/readyz", gw.readyz, methods=["GET"]),
        *dashboard_routes(
            dashboard_ledger or door.config.ledger.path,
            virtual_keys=virtual_keys,
            admin_key=admin_key if admin_key is not None else admin_key_from(os.environ),
            budgets=door.config.budgets,
            health=door.health,
            clock=clock,
        ),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception, 500: _internal})


class _Gateway:
    """The OpenAI chat-completions endpoints and the health checks, over one edge."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge
        self._door = edge.door

    async def chat(self, request: Request) -> Response:
        edge = self._edge
        who = edge.authenticate(request)
        body = await edge.read_body(request)
        try:
            wire = REQUEST_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise decode_error(exc) from None
        except RecursionError:  # msgspec descends containers on the C stack: a deep body runs out of it
            raise too_deep(body) from None
        unsupported = unsupported_parameter(wire)
        if unsupported is not None:
            problem = f"Unsupported parameter: {unsupported!r} is not supported by interlock."
            raise Reject(failure("unsupported_parameter", problem, param=unsupported))
        request_id, wall = edge.new_request_id()
        chat = to_chat_request(
            wire,
            tenant=who.tenant,
            caller=who.caller,
            metadata=trace_of(request),
            request_id=request_id,
            sensitivity=sensitivity_of(request.headers.get("x-interlock-sensitivity")),
            max_tokens_ceiling=edge.ceiling,
        )
        await check_tools(chat)  # before the door: a bad schema is never paid for upstream
        if wire.stream:
            planned: list[str] = []
            events = self._door.send(chat, on_plan=planned.append)
            usage = wire.stream_options is not None and wire.stream_options.include_usage
            writer = ChunkWriter(request_id, int(wall), wire.model, include_usage=usage)
            return await start_stream(request.receive, events, writer, lambda: stream_headers(request_id, planned))
        answer = Answer()
        if await fold_unless_gone(request.receive, self._door.send(chat), answer.add):
            return Response(status_code=CLIENT_GONE)
        out = answer.completion(request_id, int(wall), wire.model)
        return json_response(out, headers=answer.headers(request_id))

    async def models(self, request: Request) -> Response:
        self._edge.authenticate(request)
        return json_response(ModelListOut(self._catalog()))

    async def model(self, request: Request) -> Response:
        self._edge.authenticate(request)
        wanted = request.path_params["model"]
        config = self._door.config
        for entry in self._catalog():
            if entry.id == wanted:
                return json_response(entry)
        for model in config.models.values():
            if model.id == wanted:
                return json_response(ModelOut(model.id, model.provider))
        problem = f"no job or model named {wanted!r}"
        raise Reject(failure("model_not_found", problem, param="model"))

    def _catalog(self) -> list[ModelOut]:
        config = self._door.config
        jobs = [ModelOut(name, "interlock") for name in config.jobs]
        return jobs + [ModelOut(name, model.provider) for name, model in config.models.items()]

    async def healthz(self, request: Request) -> Response:
        return json_response(ReadinessOut("ok", {}))

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
        return json_response(ReadinessOut("ready" if ready else "unavailable", providers), status=200 if ready else 503)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Routing misses (404, 405) in the shape of the dialect the path belongs to, keeping ``Allow``."""
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    message = f"{request.method} {request.url.path}: {exc.detail}"
    anthropic = request.url.path.startswith(("/v1/messages", "/messages"))
    response = (anthropic_error if anthropic else openai_error)(routing_miss(exc.status_code, message))
    response.headers.update(exc.headers or {})
    return response


async def _internal(request: Request, exc: Exception) -> Response:
    return openai_error(failure("internal", "internal error in the gateway"))
