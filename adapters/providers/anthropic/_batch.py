"""Anthropic Message Batches client: many Messages requests in one call, results as JSONL.

The wire, from Anthropic's API reference and SDK types (``MessageBatch``,
``MessageBatchRequestCounts``, ``MessageBatchIndividualResponse`` and its result types); paths
carry ``/v1``, as the codec's do:

- ``POST /v1/messages/batches`` with ``{requests: [{custom_id, params}]}``, ``params`` the
  codec's non-streamed Messages body (a ``custom_id`` is 1-64 letters, digits, ``-`` or ``_``);
- ``GET /v1/messages/batches/{id}``: ``processing_status`` is ``in_progress``, ``canceling`` or
  ``ended``; ``request_counts`` has ``processing``, ``succeeded``, ``errored``, ``canceled``,
  ``expired`` (only ``processing`` moves before the batch ends); ``results_url`` once ended;
- the results, JSONL at ``results_url`` (in no promised order): ``{custom_id, result}`` with
  ``result.type`` ``succeeded`` (``message``: a Message, decoded by the codec's
  ``decode_response``), ``errored`` (``error``: an error response, classified by the codec at
  the status its error type stands for), ``canceled`` (``cancelled``) or ``expired``
  (``timeout``);
- ``POST /v1/messages/batches/{id}/cancel``.

``results_url`` is fetched with the key only when it is on the provider's own host.
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
from interlock.adapters.providers.anthropic._codec import AnthropicCodec

__all__ = ["AnthropicBatchClient"]

_PATH = "/v1/messages/batches"
_PHASE: dict[str, BatchPhase] = {"in_progress": "in_progress", "canceling": "cancelling", "ended": "ended"}
# The HTTP status each error type of the Messages API is sent with (an errored result carries none).
_STATUS_OF_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}  # fmt: skip


class _Request(msgspec.Struct, frozen=True):
    custom_id: str
    params: msgspec.Raw


class _Create(msgspec.Struct, frozen=True):
    requests: list[_Request]


class _Counts(msgspec.Struct, frozen=True):
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


class _Batch(msgspec.Struct, frozen=True):
    id: str
    processing_status: str
    request_counts: _Counts = _Counts()
    results_url: str | None = None


class _ErrorObject(msgspec.Struct, frozen=True):
    type: str = ""
    message: str = ""


class _ErrorResponse(msgspec.Struct, frozen=True):
    error: _ErrorObject = _ErrorObject()


_NULL = msgspec.Raw(b"null")


class _Result(msgspec.Struct, frozen=True):
    type: str
    message: msgspec.Raw = _NULL  # a Raw field cannot be optional: an absent one reads as null
    error: msgspec.Raw = _NULL


class _Line(msgspec.Struct, frozen=True):
    custom_id: str
    result: _Result


_ENC = msgspec.json.Encoder()
_BATCH = msgspec.json.Decoder(_Batch)
_LINE = msgspec.json.Decoder(_Line)
_ERROR = msgspec.json.Decoder(_ErrorResponse)


class AnthropicBatchClient:
    """The Message Batches API of one Anthropic provider (or of the simulator speaking its wire)."""

    def __init__(self, provider: str, base_url: str, codec: AnthropicCodec, timeouts: HttpTimeouts) -> None:
        self.provider = provider
        self._codec = codec
        self._http = BatchHttp(provider, base_url, codec, timeouts)

    def __repr__(self) -> str:
        return f"AnthropicBatchClient({self.provider!r})"

    async def submit(self, items: Sequence[tuple[str, ChatRequest]], model_id: str) -> Submitted:
        """Create one message batch of the items the codec can encode."""
        requests: list[_Request] = []
        refused: dict[str, RequestError] = {}
        for custom_id, request in items:
            try:
                body = self._codec.encode(request, model_id, stream=False).body
            except RequestError as exc:
                refused[custom_id] = exc
                continue
            requests.append(_Request(custom_id, msgspec.Raw(body)))
        if not requests:
            return Submitted("", refused)
        batch = _BATCH.decode(
            await self._http.send("POST", _PATH, json=_ENC.encode(_Create(requests)), model_id=model_id)
        )
        return Submitted(batch.id, refused)

    async def status(self, batch_id: str) -> BatchStatus:
        """``GET /v1/messages/batches/{id}``, as a ``BatchStatus``."""
        return self._status(await self._batch(batch_id))

    async def cancel(self, batch_id: str) -> BatchStatus:
        """``POST /v1/messages/batches/{id}/cancel``."""
        return self._status(_BATCH.decode(await self._http.send("POST", f"{_PATH}/{batch_id}/cancel", json=b"{}")))

    async def results(self, batch_id: str, model_id: str, custom_ids: Sequence[str]) -> dict[str, ItemResult]:
        """Every item's result from the batch's results file."""
        batch = await self._batch(batch_id)
        status = self._status(batch)
        found: dict[str, ItemResult] = {}
        url = batch.results_url
        if url:
            if not self._http.same_origin(url):
                detail = f"results_url of batch {batch_id} is on another host; the key is not sent there"
                raise ProviderError(ErrorClass.SERVER_ERROR, self.provider, model=model_id, detail=detail)
            for raw in jsonl(await self._http.send("GET", url, model_id=model_id)):
                result = self._item(raw, model_id)
                if result is not None:
                    found[result.custom_id] = result
        return {c: found.get(c) or missing_result(status, c, model_id) for c in custom_ids}

    async def aclose(self) -> None:
        """Close the client."""
        await self._http.aclose()

    async def _batch(self, batch_id: str) -> _Batch:
        return _BATCH.decode(await self._http.send("GET", f"{_PATH}/{batch_id}"))

    def _status(self, batch: _Batch) -> BatchStatus:
        c = batch.request_counts
        counts = BatchCounts(
            total=c.processing + c.succeeded + c.errored + c.canceled + c.expired, processing=c.processing,
            succeeded=c.succeeded, errored=c.errored, cancelled=c.canceled, expired=c.expired,
        )  # fmt: skip
        phase = _PHASE.get(batch.processing_status, "in_progress")
        # Anthropic has no "cancelled" or "expired" batch status: say how it ended from its counts.
        status = batch.processing_status
        if phase == "ended" and c.canceled:
            status = "cancelled"
        elif phase == "ended" and c.expired:
            status = "expired"
        return BatchStatus(batch_id=batch.id, provider=self.provider, phase=phase, status=status, counts=counts)

    def _item(self, raw: bytes, model_id: str) -> ItemResult | None:
        """One results line's result; None for a line that cannot be read (its item is then missing)."""
        try:
            line = _LINE.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        result, cid = line.result, line.custom_id
        if result.type == "succeeded" and bytes(result.message) != b"null":
            try:
                return ItemResult(cid, events=tuple(self._codec.decode_response(bytes(result.message), model_id)))
            except ProviderError as exc:
                return ItemResult(cid, error=exc)
        if result.type == "errored":
            body = bytes(result.error)
            try:
                kind = _ERROR.decode(body).error.type
            except (msgspec.DecodeError, msgspec.ValidationError):
                kind = ""
            return ItemResult(cid, error=self._codec.classify(_STATUS_OF_TYPE.get(kind, 500), {}, body, model_id))
        never = {"canceled": (ErrorClass.CANCELLED, "cancelled"), "expired": (ErrorClass.TIMEOUT, "expired")}
        kind_detail = never.get(result.type)
        if kind_detail is None:
            kind_detail = (ErrorClass.SERVER_ERROR, f"unknown result type {result.type!r}")
        error_kind, word = kind_detail
        detail = f"the batch item {word} before it ran" if result.type in never else word
        return ItemResult(cid, error=ProviderError(error_kind, self.provider, model=model_id, detail=detail))
