"""The OpenAI Responses API dialect: ``POST /v1/responses`` and ``GET /v1/responses/{id}``.

A request is decoded (``_responses_wire``), mapped onto the canonical ``ChatRequest`` and sent
through the same door, rails and ledger as a chat completion; its answer is written back as a
``response`` object or as the typed event stream the SDKs accumulate (``_responses_answers``).
A failure before the first token is a real HTTP status; the error table is the gateway's.

Mapping: ``input`` is a string or items: messages (``input_text`` / ``input_image`` parts, earlier
``output_text`` / ``refusal``), ``function_call`` items (joined onto the assistant turn before
them) and ``function_call_output`` items (tool results); ``reasoning`` items are dropped.
``instructions`` is the system prompt, and is not carried over to a continuation, as OpenAI does.
Only function tools are served; anything else interlock cannot honour (built-in tools,
``background``, ``include``, a reasoning ``summary``...) is a 400 ``unsupported_parameter`` naming
the field; ``reasoning.effort`` asks for the model's thinking (``ChatRequest.reasoning``).

Stored responses: a completed response (``store`` is true unless set false) is kept with its whole
conversation, so that ``previous_response_id`` continues it and ``GET`` returns it, keyed by tenant
(a tenant never sees another's), for ``STORE_TTL_S`` (30 days, as OpenAI keeps them). Over a door
that can ``remember`` (``interlock.Door``), they are kept in the door's state store, which every
process of the host shares (``--workers``, a restart); a streamed response's final event goes out
only once it is kept, so a client that has it can continue from any process. Over a door
without one (a test double), an in-process store (``MemoryKept``, ``STORE_CAPACITY`` responses,
least recently used dropped first) stands in. An unknown id is a 404 naming the parameter.

Route info is as chat's: ``x-interlock-*`` headers on a whole answer; the request id and the job's
first choice on a stream's headers (the rest at its end: ``_responses_answers``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from interlock._errors import InterlockError, RequestError
from interlock._types import (
    ChatRequest,
    ImagePart,
    JsonObjectFormat,
    JsonSchemaFormat,
    Message,
    Part,
    ResponseFormat,
    Role,
    TextFormat,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolChoiceNamed,
    ToolResultPart,
    ToolSpec,
)
from interlock.adapters.gateway import _responses_wire as w
from interlock.adapters.gateway._answers import route_headers, stream_headers
from interlock.adapters.gateway._edge import (
    CLIENT_GONE,
    Edge,
    Reject,
    VirtualKey,
    fold_unless_gone,
    guarded,
    json_response,
    start_stream,
    trace_of,
)
from interlock.adapters.gateway._failures import failure
from interlock.adapters.gateway._requests import decode_error, reasoning_of, sensitivity_of, too_deep
from interlock.adapters.gateway._responses_answers import Keep, Output, ResponseWriter, Shell
from interlock.adapters.gateway._responses_store import KeptValues, MemoryKept, ResponseStore, Stored, not_found
from interlock.policies._tool_validate import check_tool_schemas

_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
# Each option interlock cannot honour, and when it is set: to anything but the value that asks for nothing.
_UNSUPPORTED: tuple[tuple[str, Callable[[w.ResponsesRequest], bool]], ...] = (
    ("background", lambda b: b.background is True),
    ("include", lambda b: bool(b.include)),
    ("reasoning.summary", lambda b: (b.reasoning or {}).get("summary") is not None),
    ("reasoning.generate_summary", lambda b: (b.reasoning or {}).get("generate_summary") is not None),
    ("prompt", lambda b: b.prompt is not None),
    ("conversation", lambda b: b.conversation is not None),
    ("truncation", lambda b: b.truncation not in (None, "disabled")),
    ("top_logprobs", lambda b: bool(b.top_logprobs)),
    ("max_tool_calls", lambda b: b.max_tool_calls is not None),
    ("service_tier", lambda b: b.service_tier not in (None, "auto", "default")),
    ("context_management", lambda b: b.context_management is not None),
    ("text.verbosity", lambda b: b.text is not None and b.text.verbosity is not None),
)

_log = logging.getLogger("interlock.gateway")


def responses_routes(edge: Edge) -> list[HttpRoute]:
    """The dialect's routes over ``edge``, storing responses where the door can keep them."""
    door: Any = edge.door
    kept: KeptValues = door if callable(getattr(door, "remember", None)) else MemoryKept()
    api = Responses(edge, ResponseStore(kept))
    return [
        HttpRoute("/responses", guarded(api.create), methods=["POST"]),
        HttpRoute("/responses/{response_id}", guarded(api.retrieve), methods=["GET"]),
    ]


# -- the endpoint -------------------------------------------------------------------------------


class Responses:
    """``POST /v1/responses`` and ``GET /v1/responses/{id}`` over one edge and one store."""

    def __init__(self, edge: Edge, store: ResponseStore) -> None:
        self._edge = edge
        self._store = store

    async def create(self, request: Request) -> Response:
        """Answer a Responses request, streamed or whole."""
        edge = self._edge
        who = edge.authenticate(request)
        wire = _decode(await edge.read_body(request))
        unsupported = next((name for name, is_set in _UNSUPPORTED if is_set(wire)), None)
        if unsupported is not None:
            problem = f"Unsupported parameter: {unsupported!r} is not supported by interlock."
            raise Reject(failure("unsupported_parameter", problem, param=unsupported))
        history = await self._history(who.tenant, wire.previous_response_id)
        request_id, wall = edge.new_request_id()
        tools, specs = _tools(wire.tools)
        conversation = (*history, *_input_messages(wire.input))
        if not conversation:
            raise RequestError("input", "there is nothing to answer: input is empty")
        chat = _chat_request(wire, conversation, specs, request, who, request_id, edge.ceiling)
        if specs:  # a first-seen schema costs jsonschema milliseconds: a worker thread pays them
            await anyio.to_thread.run_sync(check_tool_schemas, specs)
        shell = Shell(wire, tools, request_id, int(wall))
        keep = None if wire.store is False else self._keeper(who.tenant, conversation)
        if wire.stream:
            planned: list[str] = []
            events = edge.door.send(chat, on_plan=planned.append)
            writer = ResponseWriter(shell, keep)
            return await start_stream(request.receive, events, writer, lambda: stream_headers(request_id, planned))
        output = Output(shell)
        if await fold_unless_gone(request.receive, edge.door.send(chat), output.fold):
            return Response(status_code=CLIENT_GONE)
        body = output.final()
        if keep is not None:
            await keep(body, output.assistant())
        return json_response(body, headers=route_headers(output.route, request_id, output.provider_reason))

    async def retrieve(self, request: Request) -> Response:
        """A stored response of the caller's tenant, or a 404."""
        who = self._edge.authenticate(request)
        response_id = request.path_params["response_id"]
        stored = await self._store.get(who.tenant, response_id)
        if stored is None:
            raise Reject(not_found(response_id, None))
        return json_response(stored.response)

    async def _history(self, tenant: str, previous: str | None) -> tuple[Message, ...]:
        """The conversation ``previous_response_id`` continues; a 404 when the tenant has no such response."""
        if previous is None:
            return ()
        prior = await self._store.get(tenant, previous)
        if prior is None:
            raise Reject(not_found(previous, "previous_response_id"))
        return prior.conversation

    def _keeper(self, tenant: str, conversation: tuple[Message, ...]) -> Keep:
        async def keep(response: w.ResponseOut, answer: Message | None) -> None:
            turn = (answer,) if answer is not None else ()
            try:
                await self._store.put(tenant, Stored(response, (*conversation, *turn)))
            except InterlockError as exc:
                # The answer is made and paid for: it still goes to the caller. Only a later
                # retrieve or continuation of it finds nothing (a 404), and the log says why.
                _log.warning("response %s was answered but not stored: %s", response.id, exc)

        return keep


# -- request mapping ----------------------------------------------------------------------------


def _chat_request(
    wire: w.ResponsesRequest,
    conversation: tuple[Message, ...],
    specs: tuple[ToolSpec, ...],
    request: Request,
    who: VirtualKey,
    request_id: str,
    ceiling: int | None,
) -> ChatRequest:
    """The canonical request: instructions first as the system prompt, then the conversation."""
    system = (Message.text("system", wire.instructions),) if wire.instructions else ()
    return ChatRequest(
        messages=(*system, *conversation),
        tools=specs,
        tool_choice=_tool_choice(wire.tool_choice, specs),
        parallel_tool_calls=wire.parallel_tool_calls,
        response_format=_format(wire.text),
        temperature=wire.temperature,
        top_p=wire.top_p,
        max_tokens=_max_tokens(wire.max_output_tokens, ceiling),
        reasoning=reasoning_of((wire.reasoning or {}).get("effort"), "reasoning.effort"),
        model=wire.model,
        tenant=who.tenant,
        caller=who.caller,
        sensitivity=sensitivity_of(request.headers.get("x-interlock-sensitivity")),
        metadata={**(wire.metadata or {}), **_user_fields(wire), **trace_of(request)},
        request_id=request_id,
    )


def _decode(body: bytes) -> w.ResponsesRequest:
    try:
        return w.REQUEST_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from None
    except RecursionError:  # msgspec descends containers on the C stack: a deep body runs out of it
        raise too_deep(body) from None


def _decode_at(field: str, raw: msgspec.Raw, decoder: msgspec.json.Decoder[Any]) -> Any:
    """``raw`` decoded, an error's path named from the top of the body (``input[2].call_id``)."""
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError as exc:
        inner = decode_error(exc)
        path = field if inner.field == "body" else f"{field}.{inner.field}"
        raise RequestError(path, inner.problem) from None


def _unsupported(field: str, what: str) -> Reject:
    problem = f"Unsupported parameter: {field!r} is {what}, which interlock does not serve."
    return Reject(failure("unsupported_parameter", problem, param=field))


def _input_messages(given: str | list[msgspec.Raw]) -> list[Message]:
    if isinstance(given, str):
        return [Message.text("user", given)]
    messages: list[Message] = []
    for i, raw in enumerate(given):
        field = f"input[{i}]"
        kind = _decode_at(field, raw, w.ITEM_HEAD).type
        if kind in w.DROPPED_ITEMS:
            continue
        decoder = w.ITEM_DECODERS.get(kind)
        if decoder is None:
            raise _unsupported(f"{field}.type", repr(kind))
        item = _decode_at(field, raw, decoder)
        if isinstance(item, w.FunctionCallIn):
            call = ToolCallPart(item.call_id, item.name, item.arguments)
            if messages and messages[-1].role == "assistant":  # one turn's calls are one assistant message
                last = messages.pop()
                messages.append(Message(role="assistant", content=(*last.content, call)))
            else:
                messages.append(Message(role="assistant", content=(call,)))
        elif isinstance(item, w.FunctionCallOutputIn):
            text = _plain(f"{field}.output", item.output)
            messages.append(Message(role="tool", content=(ToolResultPart(item.call_id, text),)))
        else:
            messages.append(_message(field, item))
    return messages


def _message(field: str, item: w.MessageItemIn) -> Message:
    role: Role = "user" if item.role == "user" else "assistant" if item.role == "assistant" else "system"
    if isinstance(item.content, str):
        return Message.text(role, item.content)
    parts: list[Part] = []
    for j, part in enumerate(item.content):
        if isinstance(part, w.InputImageIn):
            if role != "user":
                raise RequestError(f"{field}.content[{j}]", "only a user message may hold an image")
            parts.append(_image(f"{field}.content[{j}]", part))
        else:
            parts.append(TextPart(part.refusal if isinstance(part, w.RefusalIn) else part.text))
    return Message(role=role, content=tuple(parts))


def _image(field: str, part: w.InputImageIn) -> ImagePart:
    if part.file_id is not None:
        raise _unsupported(f"{field}.file_id", "a file id")
    url = part.image_url
    if not url:
        raise RequestError(f"{field}.image_url", "an input_image needs an image_url")
    if not url.startswith("data:"):
        return ImagePart(url=url)
    match = _DATA_URL.match(url)
    if match is None:
        raise RequestError(f"{field}.image_url", "a data URL must be data:<media type>;base64,<data>")
    return ImagePart(data=match["data"], media_type=match["media"])


def _plain(field: str, output: str | list[w.ContentIn]) -> str:
    if isinstance(output, str):
        return output
    texts: list[str] = []
    for j, part in enumerate(output):
        if isinstance(part, w.InputImageIn):
            raise _unsupported(f"{field}[{j}]", "an image in a tool result")
        texts.append(part.refusal if isinstance(part, w.RefusalIn) else part.text)
    return "".join(texts)


def _tools(given: list[msgspec.Raw]) -> tuple[list[w.FunctionToolIn], tuple[ToolSpec, ...]]:
    tools: list[w.FunctionToolIn] = []
    for i, raw in enumerate(given):
        kind = _decode_at(f"tools[{i}]", raw, w.ITEM_HEAD).type
        if kind != "function":
            raise _unsupported(f"tools[{i}].type", f"{kind!r} (only function tools are)")
        tools.append(_decode_at(f"tools[{i}]", raw, w.FUNCTION_TOOL))
    specs = tuple(
        ToolSpec(t.name, t.description or "")
        if t.parameters is None
        else ToolSpec(t.name, t.description or "", t.parameters)
        for t in tools
    )
    return tools, specs


def _tool_choice(choice: str | w.ToolChoiceIn | None, tools: tuple[ToolSpec, ...]) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, w.ToolChoiceIn):
        if choice.type != "function":
            raise _unsupported("tool_choice.type", repr(choice.type))
        if choice.name is None:
            raise RequestError("tool_choice.name", "a function tool_choice names its function")
        if choice.name not in {t.name for t in tools}:
            raise RequestError("tool_choice.name", f"names tool {choice.name!r}, which is not in tools")
        return ToolChoiceNamed(choice.name)
    if choice == "required" and not tools:
        raise RequestError("tool_choice", "'required' needs at least one tool")
    return ToolChoiceMode("none" if choice == "none" else "required" if choice == "required" else "auto")


def _format(text: w.TextConfigIn | None) -> ResponseFormat | None:
    match text.format if text is not None else None:
        case w.JsonSchemaIn(name=name, schema=schema, strict=strict):
            return JsonSchemaFormat(name, schema, strict=strict is True)
        case w.JsonObjectIn():
            return JsonObjectFormat()
        case w.TextFormatIn():
            return TextFormat()
    return None


def _max_tokens(value: int | None, ceiling: int | None) -> int | None:
    if value is not None and ceiling is not None and value > ceiling:
        raise RequestError("max_output_tokens", f"{value} is more than any model here can produce (at most {ceiling})")
    return value


def _user_fields(wire: w.ResponsesRequest) -> dict[str, str]:
    fields = {"user": wire.user, "safety_identifier": wire.safety_identifier}
    return {k: v for k, v in fields.items() if v is not None}
