"""The thin HTTP transport: any codec over one pooled httpx2 client (aiohttp underneath by default).

Foreign exceptions are translated at one seam, ``_translate``: connect failures, timeouts and
broken bodies become ``ProviderError`` / ``MidStreamError`` with the provider and model named.
Timeouts are split: ``connect_s`` to open a connection, ``first_byte_s`` until the response
headers and first body chunk, ``read_s`` for the gap between body chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, final

import anyio
import httpx2
import msgspec
from httpx_aiohttp.httpx2 import AiohttpTransport

from interlock._clock import Clock
from interlock._errors import ErrorClass, InterlockError, MidStreamError, ProviderError
from interlock._types import ChatRequest, StreamEvent
from interlock.adapters._codec import Codec, StreamDecoder, WireRequest


class HttpTimeouts(msgspec.Struct, frozen=True, kw_only=True):
    """Connect, first-byte and between-chunk timeouts in seconds (defaults suit slow flagships)."""

    connect_s: float = 10.0
    first_byte_s: float = 120.0
    read_s: float = 60.0


_DEFAULT_TIMEOUTS = HttpTimeouts()


@final
class HttpAdapter:
    """Runs one provider's codec over HTTP; implements ``ProviderAdapter``."""

    def __init__(
        self,
        name: str,
        base_url: str,
        codec: Codec,
        *,
        transport: Literal["aiohttp", "httpx"] = "aiohttp",
        timeouts: HttpTimeouts = _DEFAULT_TIMEOUTS,
        max_connections: int = 100,
        clock: Clock,
    ) -> None:
        self._name = name
        self._base = base_url.rstrip("/")
        self._codec = codec
        self._timeouts = timeouts
        self._clock = clock
        limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        timeout = httpx2.Timeout(timeouts.first_byte_s, connect=timeouts.connect_s, read=timeouts.read_s)
        pool: httpx2.AsyncBaseTransport = (
            AiohttpTransport(limits=limits) if transport == "aiohttp" else httpx2.AsyncHTTPTransport(limits=limits)
        )
        self._client = httpx2.AsyncClient(transport=pool, timeout=timeout, follow_redirects=False)

    @property
    def name(self) -> str:
        """The provider's configured name."""
        return self._name

    def __repr__(self) -> str:
        return f"HttpAdapter({self._name!r}, {self._base!r})"

    async def stream(self, request: ChatRequest, model_id: str, *, stream: bool = True) -> AsyncIterator[StreamEvent]:
        """Run one call and yield canonical events; see ``ProviderAdapter.stream``."""
        wire = self._codec.encode(request, model_id, stream=stream)
        decoder = self._codec.stream_decoder(model_id)
        response = await self._open(wire, model_id, decoder)
        try:
            if response.status_code >= 300:
                body = await self._read_all(response, model_id, decoder)
                raise self._codec.classify(response.status_code, response.headers, body, model_id)
            if not stream:
                body = await self._read_all(response, model_id, decoder)
                for event in self._codec.decode_response(body, model_id):
                    yield event
                return
            chunks = response.aiter_raw().__aiter__()
            gap = self._timeouts.read_s
            with anyio.fail_after(self._timeouts.first_byte_s):
                chunk = await self._next(chunks, model_id, decoder)
            while chunk is not None:
                for event in decoder.feed(chunk):
                    yield event
                with anyio.fail_after(gap):
                    chunk = await self._next(chunks, model_id, decoder)
            for event in decoder.close():
                yield event
        except TimeoutError:
            raise MidStreamError(
                ErrorClass.TIMEOUT, self._name, partial=decoder.partial_text, model=model_id,
                detail="no data within the read timeout",
            ) from None
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()

    async def _open(self, wire: WireRequest, model_id: str, decoder: StreamDecoder) -> httpx2.Response:
        req = self._client.build_request(wire.method, self._base + wire.path, headers=wire.headers, content=wire.body)
        try:
            with anyio.fail_after(self._timeouts.connect_s + self._timeouts.first_byte_s):
                return await self._client.send(req, stream=True)
        except TimeoutError:
            raise ProviderError(ErrorClass.TIMEOUT, self._name, model=model_id, detail="no response headers") from None
        except Exception as exc:
            raise self._translate(exc, model_id, decoder, started=False) from exc

    async def _next(self, chunks: AsyncIterator[bytes], model_id: str, decoder: StreamDecoder) -> bytes | None:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return None
        except Exception as exc:
            raise self._translate(exc, model_id, decoder, started=True) from exc

    async def _read_all(self, response: httpx2.Response, model_id: str, decoder: StreamDecoder) -> bytes:
        try:
            with anyio.fail_after(self._timeouts.read_s):
                return await response.aread()
        except TimeoutError:
            raise ProviderError(ErrorClass.TIMEOUT, self._name, model=model_id, detail="body read timed out") from None
        except Exception as exc:
            raise self._translate(exc, model_id, decoder, started=True) from exc

    def _translate(self, exc: Exception, model_id: str, decoder: StreamDecoder, *, started: bool) -> InterlockError:
        """The one seam where transport exceptions become interlock errors, most specific first."""
        if isinstance(exc, InterlockError):
            return exc
        if isinstance(exc, httpx2.ConnectTimeout):
            return ProviderError(ErrorClass.TIMEOUT, self._name, model=model_id, detail="connect timed out")
        if isinstance(exc, httpx2.ConnectError):
            return ProviderError(ErrorClass.CONNECT, self._name, model=model_id, detail="connection failed")
        if isinstance(exc, httpx2.TimeoutException):
            return ProviderError(ErrorClass.TIMEOUT, self._name, model=model_id, detail=type(exc).__name__)
        if isinstance(exc, (httpx2.TransportError, OSError)):
            if started:
                return MidStreamError(
                    ErrorClass.SERVER_ERROR, self._name, partial=decoder.partial_text, model=model_id,
                    detail=f"connection broke: {type(exc).__name__}",
                )
            return ProviderError(ErrorClass.CONNECT, self._name, model=model_id, detail=type(exc).__name__)
        return ProviderError(ErrorClass.INTERNAL, self._name, model=model_id, detail=type(exc).__name__)

    async def probe(self) -> None:
        """Send the codec's cheap probe request; raise the classified error unless it answers 2xx."""
        wire = self._codec.probe_request()
        req = self._client.build_request(wire.method, self._base + wire.path, headers=wire.headers)
        try:
            response = await self._client.send(req)
        except Exception as exc:
            raise self._translate(exc, "", self._codec.stream_decoder(""), started=False) from exc
        if response.status_code >= 300:
            raise self._codec.classify(response.status_code, response.headers, response.content, None)

    async def aclose(self) -> None:
        """Close the pooled client and its connections."""
        await self._client.aclose()
