"""The gateway's Anthropic Messages dialect: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

The official ``anthropic`` SDK, and every tool that takes an ``ANTHROPIC_BASE_URL``, speaks to
interlock here; the request goes through the same door, rails and ledger as a chat completion,
and any provider family may serve it (the canonical types are the bridge):

- Requests: ``system`` (a string or text blocks), text / image / tool_use / tool_result blocks,
  custom ``tools`` (a server tool is a 400 naming ``tools[i].type``), ``tool_choice``,
  ``stop_sequences``, ``max_tokens`` (required), ``temperature``, ``top_p``, ``metadata.user_id``,
  ``output_config.format`` (json_schema), ``cache_control`` breakpoints. An option the canonical
  request cannot carry (``top_k``, ``output_config.effort``, ``container``, ``mcp_servers``...) is
  a 400 naming it. ``thinking: {"type": "enabled", "budget_tokens": N}`` asks for the model's
  thinking (``ChatRequest.reasoning``; only models with ``reasoning = true`` serve it). Earlier
  turns' ``thinking`` blocks are dropped: the canonical conversation carries no reasoning.
  ``anthropic-version`` is accepted, whatever it says.
- Answers: a ``message`` with content blocks in the order the model produced them (thinking,
  text, tool_use), or the event stream (``message_start``, ``ping``, content block events,
  ``message_delta``, ``message_stop``; ``event: error`` on a failure after the start). The stop
  reason maps the canonical finish: stop -> ``end_turn`` (``stop_sequence`` when the provider
  said so), length -> ``max_tokens``, tool_calls -> ``tool_use``, content_filter or a refusal
  -> ``refusal`` (the refusal's text is a text block). Usage the provider did not report is
  ``null``, never zeros (``message_start`` has none yet: the stream's counts are in
  ``message_delta``, as the SDK's accumulator reads them).
- Errors: Anthropic's ``{"type": "error", "error": {"type", "message"}}`` with the status, the
  ``retry-after`` / ``x-should-retry`` hints of ``_failures.FAILURES`` and ``request-id``; the
  error's ``type`` follows the status (``ANTHROPIC_TYPES``), interlock's code is in
  ``details.error_code``. An overloaded fleet stays 503 rather than Anthropic's 529: the status
  is the one the table gives every dialect (and the ledger, the docs), and the SDK retries a
  503 as it does a 529, the error type ``overloaded_error`` saying the same.
- ``count_tokens`` answers interlock's own estimate (``estimate_input_tokens``, about four
  characters a token): no provider is called, and the count is the same whatever the model.
"""
from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from interlock._errors import InterlockError
from interlock.adapters.gateway import _messages_wire as w
from interlock.adapters.gateway._answers import stream_headers
from interlock.adapters.gateway._edge import CLIENT_GONE, Edge, Reject, fold_unless_gone, start_stream, trace_of
from interlock.adapters.gateway._failures import failure, http_failure
from interlock.adapters.gateway._messages_answers import (
    EventWriter,
    MessageFold,
    anthropic_error,
    error_response,
    json_out,
)
from interlock.adapters.gateway._messages_requests import decode_body, prompt_request, to_chat_request
from interlock.adapters.gateway._requests import check_tools, sensitivity_of
from interlock.policies._tokens import estimate_input_tokens

__all__ = ["Messages", "anthropic_error"]

_NEUTRAL_RAW = frozenset({b"", b"null", b"[]", b"{}"})  # what asks for nothing, sent or not

# Each option interlock cannot honour, and when it is sent asking for something.
_UNSUPPORTED: tuple[tuple[str, Callable[[w.MessagesIn], bool]], ...] = (
    ("top_k", lambda b: bytes(b.top_k) not in _NEUTRAL_RAW),
    ("thinking", lambda b: b.thinking is not None and b.thinking.type not in ("disabled", "enabled")),
    ("output_config.effort", lambda b: b.output_config is not None and b.output_config.effort is not None),
    ("container", lambda b: bytes(b.container) not in _NEUTRAL_RAW),
    ("mcp_servers", lambda b: bytes(b.mcp_servers) not in _NEUTRAL_RAW),
    ("context_management", lambda b: bytes(b.context_management) not in _NEUTRAL_RAW),
    ("inference_geo", lambda b: bytes(b.inference_geo) not in _NEUTRAL_RAW),
    ("service_tier", lambda b: b.service_tier not in (None, "auto", "standard_only")),
    ("speed", lambda b: b.speed not in (None, "standard")),
)


class Messages:
    """The Messages endpoints over one edge."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge

    async def create(self, request: Request) -> Response:
        """``POST /v1/messages``: one answer, streamed or not; every error in Anthropic's shape."""
        request_id, _ = self._edge.new_request_id()
        try:
            return await self._create(request, request_id)
        except Reject as exc:
            return error_response(exc.failure, request_id)
        except InterlockError as exc:
            return error_response(http_failure(exc), request_id)

    async def count_tokens(self, request: Request) -> Response:
        """``POST /v1/messages/count_tokens``: interlock's estimate of the prompt's input tokens."""
        edge = self._edge
        edge.authenticate(request)
        body = decode_body(w.COUNT_DECODER, await edge.read_body(request))
        chat = prompt_request(body)
        return json_out(w.TokenCountOut(estimate_input_tokens(chat)))

    async def _create(self, request: Request, request_id: str) -> Response:
        edge = self._edge
        who = edge.authenticate(request)
        body = decode_body(w.REQUEST_DECODER, await edge.read_body(request))
        unsupported = next((name for name, is_set in _UNSUPPORTED if is_set(body)), None)
        if unsupported is not None:
            problem = f"Unsupported parameter: {unsupported!r} is not supported by interlock."
            raise Reject(failure("unsupported_parameter", problem, param=unsupported))
        chat = to_chat_request(
            body,
            tenant=who.tenant,
            caller=who.caller,
            metadata=trace_of(request),
            request_id=request_id,
            sensitivity=sensitivity_of(request.headers.get("x-interlock-sensitivity")),
            max_tokens_ceiling=edge.ceiling,
        )
        await check_tools(chat, "tools[{i}].input_schema")  # before the door: a bad schema is never paid for upstream
        message_id = f"msg_{request_id}"
        if body.stream:
            planned: list[str] = []
            events = edge.door.send(chat, on_plan=planned.append)
            writer = EventWriter(message_id, request_id, body.model)

            def headers() -> dict[str, str]:  # and ``request-id``, where Anthropic's clients read it
                return {**stream_headers(request_id, planned), "request-id": request_id}

            return await start_stream(request.receive, events, writer, headers)
        fold = MessageFold()
        if await fold_unless_gone(request.receive, edge.door.send(chat), fold.add):
            return Response(status_code=CLIENT_GONE)
        return json_out(fold.message(message_id, request_id, body.model), headers=fold.headers(request_id))


# -- errors -------------------------------------------------------------------------------------
