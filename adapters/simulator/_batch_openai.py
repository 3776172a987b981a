"""Simulator, OpenAI Batch API: files in, a batch of chat completions, files out.

Facts from OpenAI's API reference and SDK types (``Batch``, ``BatchRequestCounts``,
``FileObject``; the request input and output line objects):

- ``POST /v1/files`` (multipart: ``purpose=batch``, ``file``) answers a file object (``id``,
  ``object: "file"``, ``bytes``, ``created_at``, ``filename``, ``purpose``, ``status``);
- the input file is JSONL, one ``{custom_id, method, url, body}`` per line, ``url`` the batch's
  endpoint; ``POST /v1/batches`` takes ``input_file_id``, ``endpoint`` and
  ``completion_window: "24h"``, and answers the batch object, ``status: "validating"``;
- ``GET /v1/batches/{id}`` moves through ``in_progress`` to ``completed`` (``expired`` when items
  ran out of window, ``cancelled`` after ``POST /v1/batches/{id}/cancel``, which answers
  ``cancelling``; ``failed`` when the input did not validate, with ``errors.data``), with
  ``request_counts {total, completed, failed}`` and, once done, ``output_file_id`` and
  ``error_file_id``;
- ``GET /v1/files/{id}/content`` gives a file's bytes; an output line is ``{id, custom_id,
  response: {status_code, request_id, body}, error}``: a 200's body is the chat completion, an
  errored item's is the error body with its status; an item that never ran has ``response: null``
  and ``error: {code: "batch_expired" | "batch_cancelled", message}``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from interlock.adapters.simulator._batch_store import BatchStore, StoredBatch, StoredItem, StoredResult
from interlock.adapters.simulator._openai import OPENAI
from interlock.adapters.simulator._playback import JSON, error_response

__all__ = ["add_openai_batch_routes"]

ENDPOINT = "/v1/chat/completions"
_OUT, _ERR = "-output", "-errors"  # an output file's id is its batch's id with one of these


class _InputLine(msgspec.Struct, frozen=True):
    custom_id: str
    method: str
    url: str
    body: msgspec.Raw


class _Create(msgspec.Struct, frozen=True):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None


class _Counts(msgspec.Struct, frozen=True):
    total: int
    completed: int
    failed: int


class _ErrorItem(msgspec.Struct, frozen=True):
    code: str
    message: str
    line: int | None = None


class _Errors(msgspec.Struct, frozen=True):
    data: list[_ErrorItem]
    object: str = "list"


class _BatchOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    object: str = "batch"
    endpoint: str
    input_file_id: str
    completion_window: str = "24h"
    status: str
    created_at: int
    request_counts: _Counts
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: _Errors | None = None
    in_progress_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    completed_at: int | None = None
    expired_at: int | None = None
    failed_at: int | None = None
    expires_at: int | None = None


class _FileOut(msgspec.Struct, frozen=True):
    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    object: str = "file"
    status: str = "processed"


class _LineResponse(msgspec.Struct, frozen=True):
    status_code: int
    request_id: str
    body: msgspec.Raw


class _LineError(msgspec.Struct, frozen=True):
    code: str
    message: str


class _OutputLine(msgspec.Struct, frozen=True):
    id: str
    custom_id: str
    response: _LineResponse | None
    error: _LineError | None


_ENC = msgspec.json.Encoder()
_LINE = msgspec.json.Decoder(_InputLine)
_CREATE = msgspec.json.Decoder(_Create)
_NEVER_RAN = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "canceled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
}


def _status(batch: StoredBatch, fresh: bool) -> str:
    if batch.failure:
        return "failed"
    if batch.phase != "ended":
        return "validating" if fresh else "in_progress" if batch.phase == "in_progress" else "cancelling"
    if batch.cancel_requested_at is not None:
        return "cancelled"
    return "expired" if batch.count("expired") else "completed"


def _batch_out(batch: StoredBatch, fresh: bool = False) -> bytes:
    status = _status(batch, fresh)
    ended = batch.phase == "ended" and not batch.failure
    done = batch.count("succeeded")
    failed = len(batch.items) - done if ended else 0
    ended_at = int(batch.ended_at) if batch.ended_at is not None else None
    stamps: dict[str, Any] = {f"{status}_at": ended_at} if status in ("completed", "cancelled", "expired") else {}
    if batch.cancel_requested_at is not None:
        stamps["cancelling_at"] = int(batch.cancel_requested_at)
    errors = _Errors([_ErrorItem("invalid_request", batch.failure)]) if batch.failure else None
    out = _BatchOut(
        id=batch.id, endpoint=batch.endpoint, input_file_id=batch.input_file_id, status=status,
        created_at=int(batch.created_at), request_counts=_Counts(len(batch.items), done if ended else 0, failed),
        output_file_id=batch.id + _OUT if ended and done else None,
        error_file_id=batch.id + _ERR if ended and failed else None,
        errors=errors, in_progress_at=None if fresh else int(batch.created_at),
        failed_at=ended_at if batch.failure else None, expires_at=int(batch.created_at) + 24 * 3600, **stamps,
    )  # fmt: skip
    return _ENC.encode(out)


def _line(result: StoredResult, n: int) -> bytes:
    never = _NEVER_RAN.get(result.kind)
    if never is not None:
        line = _OutputLine(f"batch_req_sim{n:06d}", result.custom_id, None, _LineError(*never))
    else:
        response = _LineResponse(result.status, f"req_sim{n:06d}", msgspec.Raw(result.body.encode()))
        line = _OutputLine(f"batch_req_sim{n:06d}", result.custom_id, response, None)
    return _ENC.encode(line)


def _output_file(batch: StoredBatch, errors: bool) -> bytes:
    lines = [_line(r, n) for n, r in enumerate(batch.results) if (r.kind != "succeeded") == errors]
    return b"".join(line + b"\n" for line in lines)


def _validate(data: bytes) -> tuple[tuple[StoredItem, ...], str]:
    """The items of an input file, or why it does not validate (its first bad line)."""
    items: list[StoredItem] = []
    seen: set[str] = set()
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = _LINE.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return (), f"line {number}: not a request line ({exc})"
        if line.method != "POST" or line.url != ENDPOINT:
            return (), f"line {number}: expected POST {ENDPOINT}, got {line.method} {line.url}"
        if line.custom_id in seen:
            return (), f"line {number}: duplicate custom_id {line.custom_id!r}"
        seen.add(line.custom_id)
        items.append(StoredItem(line.custom_id, bytes(line.body).decode()))
    return tuple(items), "" if items else "the input file holds no requests"


def add_openai_batch_routes(app: web.Application, store: BatchStore) -> None:
    """Register the files and batches endpoints of OpenAI's Batch API on ``app``."""

    async def upload(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField) or purpose != "batch":
            return error_response(OPENAI, 400, "expected multipart fields file and purpose=batch")
        meta = await store.put_file(upload.file.read(), upload.filename or "batch.jsonl", "batch")
        body = _FileOut(meta.id, meta.size, int(meta.created_at), meta.filename, meta.purpose)
        return web.Response(body=_ENC.encode(body), content_type=JSON)

    async def create(request: web.Request) -> web.StreamResponse:
        try:
            ask = _CREATE.decode(await request.read())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return error_response(OPENAI, 400, f"invalid request body: {exc}")
        if ask.endpoint != ENDPOINT or ask.completion_window != "24h":
            return error_response(OPENAI, 400, f"the simulator batches {ENDPOINT} in a 24h window")
        found = await store.file(ask.input_file_id)
        if found is None or found[0].purpose != "batch":
            return error_response(OPENAI, 404, f"no batch file {ask.input_file_id!r}")
        items, failure = _validate(found[1])
        batch = await store.create(
            "openai", items, prefix="batch_sim", endpoint=ask.endpoint, input_file_id=ask.input_file_id,
            failure=failure,
        )  # fmt: skip
        return web.Response(body=_batch_out(batch, fresh=not failure), content_type=JSON)

    async def retrieve(request: web.Request) -> web.StreamResponse:
        batch = await store.get(request.match_info["batch_id"], OPENAI)
        if batch is None or batch.format != "openai":
            return error_response(OPENAI, 404, "no such batch")
        return web.Response(body=_batch_out(batch), content_type=JSON)

    async def cancel(request: web.Request) -> web.StreamResponse:
        batch = await store.cancel(request.match_info["batch_id"])
        if batch is None or batch.format != "openai":
            return error_response(OPENAI, 404, "no such batch")
        return web.Response(body=_batch_out(batch), content_type=JSON)

    async def content(request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        for suffix, errors in ((_OUT, False), (_ERR, True)):
            if file_id.endswith(suffix):
                batch = await store.get(file_id.removesuffix(suffix), OPENAI)
                if batch is not None and batch.phase == "ended":
                    return web.Response(body=_output_file(batch, errors), content_type="application/jsonl")
        found = await store.file(file_id)
        if found is None:
            return error_response(OPENAI, 404, f"no file {file_id!r}")
        return web.Response(body=found[1], content_type="application/octet-stream")

    app.router.add_post("/v1/files", upload)
    app.router.add_get("/v1/files/{file_id}/content", content)
    app.router.add_post("/v1/batches", create)
    app.router.add_get("/v1/batches/{batch_id}", retrieve)
    app.router.add_post("/v1/batches/{batch_id}/cancel", cancel)
