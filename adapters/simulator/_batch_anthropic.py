"""Simulator, Anthropic Message Batches: many Messages requests in one, results as JSONL.

Facts from Anthropic's API reference and SDK types (``MessageBatch``,
``MessageBatchRequestCounts``, ``MessageBatchIndividualResponse`` and the four result types):

- ``POST /v1/messages/batches`` takes ``{requests: [{custom_id, params}]}``, ``params`` being a
  Messages request body, and answers a ``message_batch``: ``id``, ``processing_status``
  (``in_progress``, ``canceling``, ``ended``), ``request_counts {processing, succeeded,
  errored, canceled, expired}`` (all but ``processing`` zero until the batch ends), RFC 3339
  ``created_at`` / ``expires_at`` / ``ended_at`` / ``cancel_initiated_at``, and ``results_url``
  once it ended;
- ``GET /v1/messages/batches/{id}`` polls it, ``POST .../{id}/cancel`` asks it to stop;
- ``results_url`` serves JSONL, one ``{custom_id, result}`` a line, ``result`` one of
  ``{type: "succeeded", message}``, ``{type: "errored", error: <an error response>}``,
  ``{type: "canceled"}``, ``{type: "expired"}``, in no promised order.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from aiohttp import web

from interlock.adapters.simulator._anthropic import ANTHROPIC
from interlock.adapters.simulator._batch_store import BatchStore, StoredBatch, StoredItem, StoredResult
from interlock.adapters.simulator._playback import JSON, error_response

__all__ = ["add_anthropic_batch_routes"]

_DAY_S = 24 * 3600.0


class _Request(msgspec.Struct, frozen=True):
    custom_id: str
    params: msgspec.Raw


class _Create(msgspec.Struct, frozen=True):
    requests: list[_Request]


class _Counts(msgspec.Struct, frozen=True):
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int


class _BatchOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str = "message_batch"
    processing_status: str
    request_counts: _Counts
    created_at: str
    expires_at: str
    ended_at: str | None = None
    cancel_initiated_at: str | None = None
    archived_at: str | None = None
    results_url: str | None = None


class _Result(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    message: msgspec.Raw | None = None
    error: msgspec.Raw | None = None


class _Line(msgspec.Struct, frozen=True):
    custom_id: str
    result: _Result


_ENC = msgspec.json.Encoder()
_CREATE = msgspec.json.Decoder(_Create)


def _rfc3339(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _batch_out(batch: StoredBatch, origin: str) -> bytes:
    ended = batch.phase == "ended"
    counts = _Counts(
        0 if ended else len(batch.items), batch.count("succeeded"), batch.count("errored"), batch.count("canceled"),
        batch.count("expired"),
    )  # fmt: skip
    out = _BatchOut(
        id=batch.id, processing_status="canceling" if batch.phase == "cancelling" else batch.phase,
        request_counts=counts, created_at=_rfc3339(batch.created_at) or "",
        expires_at=_rfc3339(batch.created_at + _DAY_S) or "", ended_at=_rfc3339(batch.ended_at),
        cancel_initiated_at=_rfc3339(batch.cancel_requested_at),
        results_url=f"{origin}/v1/messages/batches/{batch.id}/results" if ended else None,
    )  # fmt: skip
    return _ENC.encode(out)


def _line(result: StoredResult) -> bytes:
    if result.kind == "succeeded":
        outcome = _Result("succeeded", message=msgspec.Raw(result.body.encode()))
    elif result.kind == "errored":
        outcome = _Result("errored", error=msgspec.Raw(result.body.encode()))
    else:
        outcome = _Result(result.kind)
    return _ENC.encode(_Line(result.custom_id, outcome))


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def add_anthropic_batch_routes(app: web.Application, store: BatchStore) -> None:
    """Register the Message Batches endpoints on ``app``."""

    async def create(request: web.Request) -> web.StreamResponse:
        try:
            ask = _CREATE.decode(await request.read())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return error_response(ANTHROPIC, 400, f"invalid request body: {exc}")
        ids = [r.custom_id for r in ask.requests]
        if not ids or len(set(ids)) != len(ids):
            return error_response(ANTHROPIC, 400, "requests must be non-empty, each custom_id unique")
        items = tuple(StoredItem(r.custom_id, bytes(r.params).decode()) for r in ask.requests)
        batch = await store.create("anthropic", items, prefix="msgbatch_sim")
        return web.Response(body=_batch_out(batch, _origin(request)), content_type=JSON)

    async def found(request: web.Request, batch: StoredBatch | None) -> web.StreamResponse:
        if batch is None or batch.format != "anthropic":
            return error_response(ANTHROPIC, 404, "no such message batch")
        return web.Response(body=_batch_out(batch, _origin(request)), content_type=JSON)

    async def retrieve(request: web.Request) -> web.StreamResponse:
        return await found(request, await store.get(request.match_info["batch_id"], ANTHROPIC))

    async def cancel(request: web.Request) -> web.StreamResponse:
        return await found(request, await store.cancel(request.match_info["batch_id"]))

    async def results(request: web.Request) -> web.StreamResponse:
        batch = await store.get(request.match_info["batch_id"], ANTHROPIC)
        if batch is None or batch.format != "anthropic" or batch.phase != "ended":
            return error_response(ANTHROPIC, 404, "no results: no such batch, or it has not ended")
        # Results come in no promised order: reversed here, so a client that relies on order fails.
        body = b"".join(_line(r) + b"\n" for r in reversed(batch.results))
        return web.Response(body=body, content_type="application/binary")

    app.router.add_post("/v1/messages/batches", create)
    app.router.add_get("/v1/messages/batches/{batch_id}", retrieve)
    app.router.add_post("/v1/messages/batches/{batch_id}/cancel", cancel)
    app.router.add_get("/v1/messages/batches/{batch_id}/results", results)
