"""OpenAI Batch API client: chat completions as a JSONL file, one batch, results as files.

The wire, from OpenAI's API reference and SDK types (``Batch``, ``BatchRequestCounts``,
``FileObject``, the request input and output line objects); paths are relative to a base URL
that ends in ``/v1``:

- ``POST /files`` (multipart, ``purpose=batch``) uploads the input: one
  ``{custom_id, method: "POST", url: "/v1/chat/completions", body}`` per line, ``body`` the
  codec's non-streamed request;
- ``POST /batches`` with ``input_file_id``, ``endpoint`` and ``completion_window: "24h"``;
- ``GET /batches/{id}``: ``status`` is ``validating``, ``in_progress`` or ``finalizing`` while it
  runs, ``cancelling``, then ``completed``, ``failed`` (``errors.data``), ``expired`` or
  ``cancelled``; ``request_counts`` has ``total``, ``completed``, ``failed``;
- ``GET /files/{id}/content`` for ``output_file_id`` and ``error_file_id``: a line is
  ``{id, custom_id, response: {status_code, request_id, body}, error: {code, message}}``;
- ``POST /batches/{id}/cancel``.

A 2xx line's body is decoded by the codec's ``decode_response``, another status by its
``classify``; a line with ``error`` and no response never ran: ``batch_expired`` is a
``timeout``, ``batch_cancelled`` is ``cancelled``.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from interlock._errors import ErrorClass, ProviderError, RequestError
from interlock._types import ChatRequest
from interlock.adapters.providers._batch import (
    BatchCounts,
    BatchHttp,
    BatchPhase,
    BatchStatus,
    ItemResult,
    Submitted,
    jsonl,
    missing_result,
)
from interlock.adapters.providers._http_client import HttpTimeouts
from interlock.adapters.providers.openai._codec import OpenAICodec

__all__ = ["OpenAIBatchClient"]

ENDPOINT = "/v1/chat/completions"
_PHASE: dict[str, BatchPhase] = {
    "validating": "in_progress", "in_progress": "in_progress", "finalizing": "in_progress",
    "cancelling": "cancelling",
    "completed": "ended", "failed": "ended", "expired": "ended", "cancelled": "ended",
}  # fmt: skip
_NEVER_RAN = {"batch_expired": ErrorClass.TIMEOUT, "batch_cancelled": ErrorClass.CANCELLED}


class _InputLine(msgspec.Struct, frozen=True):
    custom_id: str
    method: str
    url: str
    body: msgspec.Raw


class _Create(msgspec.Struct, frozen=True):
    input_file_id: str
    endpoint: str
    completion_window: str


class _File(msgspec.Struct, frozen=True):
    id: str


class _Counts(msgspec.Struct, frozen=True):
    total: int = 0
    completed: int = 0
    failed: int = 0


class _ErrorItem(msgspec.Struct, frozen=True):
    code: str | None = None
    message: str | None = None
    line: int | None = None


class _Errors(msgspec.Struct, frozen=True):
    data: list[_ErrorItem] | None = None


class _Batch(msgspec.Struct, frozen=True):
    id: str
    status: str
    request_counts: _Counts | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: _Errors | None = None


class _LineResponse(msgspec.Struct, frozen=True):
    status_code: int
    body: msgspec.Raw = msgspec.Raw(b"null")
    request_id: str | None = None


class _LineError(msgspec.Struct, frozen=True):
    code: str | None = None
    message: str | None = None


class _OutputLine(msgspec.Struct, frozen=True):
    custom_id: str
    response: _LineResponse | None = None
    error: _LineError | None = None


_ENC = msgspec.json.Encoder()
_FILE = msgspec.json.Decoder(_File)
_BATCH = msgspec.json.Decoder(_Batch)
_LINE = msgspec.json.Decoder(_OutputLine)


class OpenAIBatchClient:
    """The Batch API of one OpenAI provider (or of the simulator speaking OpenAI's wire)."""

    def __init__(self, provider: str, base_url: str, codec: OpenAICodec, timeouts: HttpTimeouts) -> None:
        self.provider = provider
        self._codec = codec
        self._http = BatchHttp(provider, base_url, codec, timeouts)

    def __repr__(self) -> str:
        return f"OpenAIBatchClient({self.provider!r})"

    async def submit(self, items: Sequence[tuple[str, ChatRequest]], model_id: str) -> Submitted:
        """Upload the items as one input file and create a batch of it."""
        lines: list[bytes] = []
        refused: dict[str, RequestError] = {}
        for custom_id, request in items:
            try:
                body = self._codec.encode(request, model_id, stream=False).body
            except RequestError as exc:
                refused[custom_id] = exc
                continue
            lines.append(_ENC.encode(_InputLine(custom_id, "POST", ENDPOINT, msgspec.Raw(body))))
        if not lines:
            return Submitted("", refused)
        upload = b"".join(line + b"\n" for line in lines)
        files = {"file": ("interlock-batch.jsonl", upload, "application/jsonl")}
        file = _FILE.decode(await self._http.send("POST", "/files", files=files, data={"purpose": "batch"}))
        create = _ENC.encode(_Create(file.id, ENDPOINT, "24h"))
        batch = _BATCH.decode(await self._http.send("POST", "/batches", json=create, model_id=model_id))
        return Submitted(batch.id, refused)

    async def status(self, batch_id: str) -> BatchStatus:
        """``GET /batches/{id}``, as a ``BatchStatus``."""
        return self._status(await self._batch(batch_id))

    async def cancel(self, batch_id: str) -> BatchStatus:
        """``POST /batches/{id}/cancel``."""
        return self._status(_BATCH.decode(await self._http.send("POST", f"/batches/{batch_id}/cancel", json=b"{}")))

    async def results(self, batch_id: str, model_id: str, custom_ids: Sequence[str]) -> dict[str, ItemResult]:
        """Every item's result from the output and error files of an ended batch."""
        batch = await self._batch(batch_id)
        status = self._status(batch)
        found: dict[str, ItemResult] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                for raw in jsonl(await self._http.send("GET", f"/files/{file_id}/content")):
                    result = self._item(raw, model_id)
                    if result is not None:
                        found[result.custom_id] = result
        return {c: found.get(c) or missing_result(status, c, model_id) for c in custom_ids}

    async def aclose(self) -> None:
        """Close the client."""
        await self._http.aclose()

    async def _batch(self, batch_id: str) -> _Batch:
        return _BATCH.decode(await self._http.send("GET", f"/batches/{batch_id}"))

    def _status(self, batch: _Batch) -> BatchStatus:
        phase = _PHASE.get(batch.status, "in_progress")
        counts = batch.request_counts or _Counts()
        ended = phase == "ended"
        failure = ""
        if batch.status == "failed":
            first = (batch.errors.data or [_ErrorItem()])[0] if batch.errors is not None else _ErrorItem()
            where = f" (line {first.line})" if first.line is not None else ""
            failure = f"{first.code or 'failed'}: {first.message or 'the input did not validate'}{where}"
        done = BatchCounts(
            total=counts.total, succeeded=counts.completed, errored=counts.failed,
            processing=0 if ended else max(counts.total - counts.completed - counts.failed, 0),
        )  # fmt: skip
        return BatchStatus(
            batch_id=batch.id, provider=self.provider, phase=phase, status=batch.status, counts=done, failure=failure
        )

    def _item(self, raw: bytes, model_id: str) -> ItemResult | None:
        """One output line's result; None for a line that cannot be read (its item is then missing)."""
        try:
            line = _LINE.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        response = line.response
        if response is None:
            err = line.error or _LineError()
            kind = _NEVER_RAN.get(err.code or "", ErrorClass.SERVER_ERROR)
            detail = self._http.scrub(f"{err.code or 'error'}: {err.message or 'the item did not run'}")
            return ItemResult(line.custom_id, error=ProviderError(kind, self.provider, model=model_id, detail=detail))
        body = bytes(response.body)
        if 200 <= response.status_code < 300:
            try:
                return ItemResult(line.custom_id, events=tuple(self._codec.decode_response(body, model_id)))
            except ProviderError as exc:
                return ItemResult(line.custom_id, error=exc)
        error = self._codec.classify(response.status_code, {}, body, model_id)
        return ItemResult(line.custom_id, error=error)
