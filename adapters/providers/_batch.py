"""Provider batch APIs, the shared part: what a batch client does, what it answers, its HTTP seam.

A ``BatchClient`` submits many requests of one model at once, reports a batch's progress, gives
each item's result (its events, as the codec decodes a non-streamed body, or its typed
``ProviderError``) once the batch ended, and cancels. ``openai._batch`` and ``anthropic._batch``
implement it over their codecs: each item's body is the codec's ``encode(stream=False)``, each
result's body goes through ``decode_response`` or ``classify``, so a batched answer is decoded
exactly as an interactive one.

``BatchHttp`` is the one seam of both clients: foreign exceptions become ``ProviderError``
(connect, timeout, server_error), a non-2xx status the codec's ``classify``. Its credentials are
the headers of the codec's probe request: the codec is the one place that knows how its
provider authenticates, and the key stays in the headers (never in an error: details are
scrubbed of every header value).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import httpx2
import msgspec

from interlock._errors import ErrorClass, ProviderError, RequestError
from interlock._types import ChatRequest, StreamEvent
from interlock.adapters.providers._codec import Codec
from interlock.adapters.providers._http_client import HttpTimeouts, build_client

__all__ = [
    "BatchClient", "BatchCounts", "BatchHttp", "BatchPhase", "BatchStatus", "ItemResult", "Submitted",
    "missing_result",
]  # fmt: skip

BatchPhase = Literal["in_progress", "cancelling", "ended"]
E = ErrorClass
_PUBLIC_HEADERS = frozenset({"accept", "anthropic-version", "anthropic-beta", "content-type"})
_BODY_LIMIT = 64 * 1024  # an error body is classified from its start


class BatchCounts(msgspec.Struct, frozen=True, kw_only=True):
    """A batch's items by state; providers count only some until the batch ends."""

    total: int = 0
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    cancelled: int = 0
    expired: int = 0


class BatchStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where a batch is: ``phase`` (ours), ``status`` (the provider's own word) and its counts.

    ``failure`` says why a batch failed as a whole (its input did not validate): every item
    of it is then an error with that detail.
    """

    batch_id: str
    provider: str
    phase: BatchPhase
    status: str
    counts: BatchCounts
    failure: str = ""

    @property
    def ended(self) -> bool:
        """True once every item has its result."""
        return self.phase == "ended"


class ItemResult(msgspec.Struct, frozen=True):
    """One item's outcome: the events of its answer, or the error it ended with (then ``events`` is empty)."""

    custom_id: str
    events: tuple[StreamEvent, ...] = ()
    error: ProviderError | None = None


class Submitted(msgspec.Struct, frozen=True):
    """A submission: the batch's id ("" when no item could be sent) and the items the codec refused."""

    batch_id: str
    refused: dict[str, RequestError]


class BatchClient(Protocol):
    """One provider's batch API."""

    provider: str

    async def submit(self, items: Sequence[tuple[str, ChatRequest]], model_id: str) -> Submitted:
        """Send ``(custom_id, request)`` pairs as one batch of ``model_id``."""
        ...

    async def status(self, batch_id: str) -> BatchStatus:
        """The batch's progress now."""
        ...

    async def results(self, batch_id: str, model_id: str, custom_ids: Sequence[str]) -> dict[str, ItemResult]:
        """Each of ``custom_ids``'s result, once the batch ended (``missing_result`` for one it lacks)."""
        ...

    async def cancel(self, batch_id: str) -> BatchStatus:
        """Ask the provider to stop the batch; items not yet run end as cancelled."""
        ...

    async def aclose(self) -> None:
        """Close the client's connections."""
        ...


def missing_result(status: BatchStatus, custom_id: str, model_id: str) -> ItemResult:
    """The result of an item a finished batch gave no line for, from how the batch ended."""
    if status.failure:
        kind, detail = E.BAD_REQUEST, f"batch {status.batch_id} failed: {status.failure}"
    elif status.status in ("cancelled", "canceled"):
        kind, detail = E.CANCELLED, f"batch {status.batch_id} was cancelled before this item ran"
    elif status.status == "expired":
        kind, detail = E.TIMEOUT, f"batch {status.batch_id} expired before this item ran"
    else:
        kind, detail = E.SERVER_ERROR, f"batch {status.batch_id} gave no result for this item"
    return ItemResult(custom_id, error=ProviderError(kind, status.provider, model=model_id, detail=detail))


class BatchHttp:
    """One provider's batch endpoints over a small pooled client; every failure a ``ProviderError``."""

    def __init__(self, provider: str, base_url: str, codec: Codec, timeouts: HttpTimeouts) -> None:
        self.provider = provider
        self._codec = codec
        # httpx2's own pool: batch calls are few, and its errors need no aiohttp unwrapping.
        self._client = build_client(base_url, transport="httpx", timeouts=timeouts, max_connections=4)
        probe = codec.probe_request().headers
        self._headers = {k: v for k, v in probe.items() if k.lower() not in ("content-type", "accept")}
        # A message may echo the key without its scheme: both spellings are scrubbed.
        values = [v for k, v in probe.items() if k.lower() not in _PUBLIC_HEADERS and v]
        self._secrets = sorted({*values, *(v.removeprefix("Bearer ") for v in values)} - {""}, key=len, reverse=True)

    def __repr__(self) -> str:
        return f"BatchHttp({self.provider!r}, {str(self._client.base_url)!r})"

    def same_origin(self, url: str) -> bool:
        """True when ``url`` is on this provider's host: only there may its key be sent."""
        base, other = self._client.base_url, httpx2.URL(url)
        return (base.scheme, base.host, base.port) == (other.scheme, other.host, other.port)

    async def send(
        self, method: str, path: str, *, json: bytes | None = None, files: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None, model_id: str | None = None,
    ) -> bytes:  # fmt: skip
        """The body of a 2xx answer to ``method path``; else the codec's classified ``ProviderError``."""
        headers = dict(self._headers)
        if json is not None:
            headers["content-type"] = "application/json"
        try:
            response = await self._client.request(
                method, path, headers=headers, content=json, files=files, data=data
            )  # fmt: skip
        except httpx2.HTTPError as exc:
            raise self._translate(exc, model_id) from exc
        if not response.is_success:
            raise self._codec.classify(response.status_code, response.headers, response.content[:_BODY_LIMIT], model_id)
        return response.content

    def _translate(self, exc: httpx2.HTTPError, model_id: str | None) -> ProviderError:
        if isinstance(exc, httpx2.TimeoutException):
            kind, what = E.TIMEOUT, "timed out"
        elif isinstance(exc, httpx2.ConnectError):
            kind, what = E.CONNECT, "cannot connect"
        else:
            kind, what = E.SERVER_ERROR, "connection lost or malformed HTTP response"
        return ProviderError(
            kind, self.provider, model=model_id, detail=self.scrub(f"{what} ({type(exc).__name__}: {exc})")
        )

    def scrub(self, text: str) -> str:
        """``text`` with every credential header value replaced: a provider's message may echo one."""
        for secret in self._secrets:
            text = text.replace(secret, "****")
        return text

    async def aclose(self) -> None:
        """Close the pooled client."""
        await self._client.aclose()


def jsonl(data: bytes) -> list[bytes]:
    """The non-blank lines of a JSONL body."""
    return [line for line in data.splitlines() if line.strip()]
