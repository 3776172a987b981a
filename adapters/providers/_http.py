"""The thin HTTP transport: any provider codec over one pooled httpx2 client (aiohttp underneath).

One call: ``codec.encode`` -> send, streamed -> a non-2xx status raises ``codec.classify`` of the
status, headers and body -> a 2xx body goes chunk by chunk, as raw bytes, into the codec's stream
decoder (or whole into ``decode_response``) and its events are yielded as they come -> at the end
``decoder.close()``. Closing the iterator early or cancelling its task closes the response, which
closes the connection of an unfinished body (the server sees the client go).

Foreign exceptions are translated at one seam, ``_Call`` entered as ``async with``, most specific
first:

============================================  =================================================
connect refused / unreachable / DNS / TLS     ``ProviderError(connect)``
connect timeout, no first byte in time,       ``timeout`` (before the headers: ``ProviderError``;
silence between chunks longer than read_s      after them: ``MidStreamError`` with the partial)
body cut, connection reset, bad HTTP          ``server_error`` (``MidStreamError`` once the body
                                               started, with the decoder's partial text)
anything else                                 ``internal``
============================================  =================================================

A 2xx whose body then breaks is always a ``MidStreamError``, as the decoder's own in-band errors
are; its ``partial`` is empty when nothing was decoded yet. ``RequestError`` from ``encode`` and the
codec's ``ProviderError`` pass through unchanged. The API key rides in the wire headers only: no
error, detail or repr here shows a header, and details are scrubbed of every header value.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Self, final

import aiohttp
import anyio
import httpx2

from interlock._clock import Clock
from interlock._errors import ErrorClass, MidStreamError, ProviderError
from interlock._types import ChatRequest, StreamEvent, Usage
from interlock.adapters.providers._codec import Codec, StreamDecoder, WireRequest
from interlock.adapters.providers._embed import EmbedCodec, Embedded
from interlock.adapters.providers._http_client import (
    HttpTimeouts,
    RequestBuilder,
    TransportName,
    body_chunks,
    build_client,
    set_read_timeout,
)
from interlock.adapters.providers._retry_after import parse_retry_after
from interlock.policies._embed import batches as embed_batches

__all__ = ["HttpAdapter", "HttpTimeouts"]

E = ErrorClass
_ERROR_BODY_LIMIT = 64 * 1024  # classify reads a short JSON error; an HTML error page is cut here
_CLOSE_GRACE_S = 5.0
_DEFAULT_TIMEOUTS = HttpTimeouts()
# Headers that never carry a credential; every other header value is scrubbed from error details.
_PUBLIC_HEADERS = frozenset({"accept", "accept-encoding", "anthropic-beta", "anthropic-version", "content-type"})
_RETRYABLE = frozenset({E.RATE_LIMIT, E.OVERLOADED, E.SERVER_ERROR, E.TIMEOUT})

# (exception, class, what happened); the first match wins, so subclasses come first. aiohttp's own
# errors are judged before httpx2's because httpx_aiohttp maps every ClientConnectionError
# (refused, reset, server gone) to httpx2.ConnectTimeout; see _root.
_FOREIGN: tuple[tuple[type[BaseException], ErrorClass, str], ...] = (
    (aiohttp.ConnectionTimeoutError, E.TIMEOUT, "connect timed out"),
    (aiohttp.ServerTimeoutError, E.TIMEOUT, "read timed out"),
    (aiohttp.ClientConnectorError, E.CONNECT, "cannot connect"),
    (aiohttp.ClientPayloadError, E.SERVER_ERROR, "response body broken"),
    (aiohttp.ClientConnectionError, E.SERVER_ERROR, "connection lost"),
    (aiohttp.ClientResponseError, E.SERVER_ERROR, "malformed HTTP response"),
    (httpx2.ConnectTimeout, E.TIMEOUT, "connect timed out"),
    (httpx2.TimeoutException, E.TIMEOUT, "read timed out"),
    (httpx2.ConnectError, E.CONNECT, "cannot connect"),
    (httpx2.RemoteProtocolError, E.SERVER_ERROR, "malformed HTTP response or connection lost"),
    (httpx2.NetworkError, E.SERVER_ERROR, "connection lost"),
    (TimeoutError, E.TIMEOUT, "first byte timed out"),  # our own deadline (anyio.fail_after)
)


class _Call:
    """One exchange, as the seam sees it: what was sent, how far it got, what to close.

    ``async with`` it is the seam: a foreign exception leaving the block becomes ``translate``'s
    interlock error, and the response is closed. (A class, not an ``asynccontextmanager``: it
    is entered once per call, and the generator behind a decorated one costs about 5x as much.)
    """

    __slots__ = ("chunks", "decoder", "model_id", "response", "started", "translate", "wire")

    def __init__(
        self,
        wire: WireRequest,
        model_id: str | None,
        decoder: StreamDecoder | None,
        translate: Callable[[Exception, _Call], ProviderError],
    ) -> None:
        self.wire = wire
        self.model_id = model_id
        self.decoder = decoder
        self.translate = translate
        self.response: httpx2.Response | None = None
        self.chunks: AsyncIterator[bytes] | None = None
        self.started = False  # a 2xx status and headers are in: later failures are mid-stream

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            # The codec's own verdicts (classify, decoders) are already typed; cancellation and
            # GeneratorExit are not ours to translate.
            if isinstance(exc, Exception) and not isinstance(exc, ProviderError):
                raise self.translate(exc, self) from exc
        finally:
            # A body read to the end was released then; only an unfinished one needs the shield.
            if self.response is not None and not self.response.is_closed:
                with anyio.move_on_after(_CLOSE_GRACE_S, shield=True):
                    if isinstance(self.chunks, AsyncGenerator):
                        await self.chunks.aclose()
                    await self.response.aclose()


@final
class HttpAdapter:
    """Runs one provider's codec over HTTP with one pooled client; implements ``ProviderAdapter``."""

    def __init__(
        self,
        name: str,
        base_url: str,
        codec: Codec,
        *,
        transport: TransportName = "aiohttp",
        timeouts: HttpTimeouts = _DEFAULT_TIMEOUTS,
        max_connections: int = 100,
        clock: Clock,
        embed_codec: EmbedCodec | None = None,
    ) -> None:
        self._name = name
        self._base_url = base_url
        self._codec = codec
        self._embed_codec = embed_codec
        self._transport = transport
        self._timeouts = timeouts
        self._clock = clock
        self._client = build_client(base_url, transport=transport, timeouts=timeouts, max_connections=max_connections)
        self._requests = RequestBuilder(self._client)

    @property
    def name(self) -> str:
        """The provider's configured name."""
        return self._name

    def __repr__(self) -> str:
        return f"HttpAdapter({self._name!r}, {self._base_url!r}, transport={self._transport!r})"

    async def stream(
        self, request: ChatRequest, model_id: str, *, stream: bool = True
    ) -> AsyncGenerator[StreamEvent, None]:
        """Run one call, yielding canonical events; see ``ProviderAdapter.stream``.

        An async generator: run it under ``contextlib.aclosing`` so that leaving early closes
        the response at once rather than whenever the generator is collected.
        """
        batches = self.batches(request, model_id, stream=stream)
        try:
            async for batch in batches:
                for event in batch:
                    yield event
        finally:
            await batches.aclose()

    async def batches(
        self, request: ChatRequest, model_id: str, *, stream: bool = True
    ) -> AsyncGenerator[list[StreamEvent], None]:
        """Like ``stream``, with the events of each network chunk as one list (never an empty one).

        This method is the adapter's ``ProviderAdapter.batches`` (a ``Batches``): the provider
        actor relays a list to its caller with one wake-up instead of one per token.
        """
        wire = self._codec.encode(request, model_id, stream=stream)
        decoder = self._codec.stream_decoder(model_id) if stream else None
        async with _Call(wire, model_id, decoder, self._translate) as call:
            first, chunks = await self._open(call)
            if decoder is None:
                body = [first]
                async for chunk in chunks:
                    body.append(chunk)
                await self._release(call)
                yield list(self._codec.decode_response(b"".join(body), model_id))
                return
            events = decoder.feed(first)
            if events:
                yield events
            async for chunk in chunks:
                events = decoder.feed(chunk)
                if events:
                    yield events
            await self._release(call)
            events = decoder.close()
            if events:
                yield events

    async def embed(self, inputs: Sequence[str], model_id: str, dimensions: int | None = None) -> Embedded:
        """Embed ``inputs`` on ``model_id``: batches of the embed codec's ``max_batch``, sent in turn.

        The vectors come back in input order; the usage is the batches' sum, or None when any
        batch reported none. A provider without an embed codec is a ``bad_request`` saying so.
        """
        codec = self._embed_codec
        if codec is None:
            detail = f"{self._name} has no embeddings API"
            raise ProviderError(E.BAD_REQUEST, self._name, model=model_id, detail=detail)
        vectors: list[tuple[float, ...]] = []
        usage: Usage | None = Usage()
        served = ""
        for _, texts in embed_batches(inputs, codec.max_batch):
            part = await self._embed_batch(codec, texts, model_id, dimensions)
            vectors.extend(part.vectors)
            usage = None if usage is None or part.usage is None else usage + part.usage
            served = served or part.served_model
        return Embedded(vectors=tuple(vectors), usage=usage, served_model=served)

    async def _embed_batch(
        self, codec: EmbedCodec, texts: Sequence[str], model_id: str, dimensions: int | None
    ) -> Embedded:
        async with _Call(codec.encode_embed(texts, model_id, dimensions), model_id, None, self._translate) as call:
            first, chunks = await self._open(call)
            body = [first]
            async for chunk in chunks:
                body.append(chunk)
            await self._release(call)
        return codec.decode_embed(b"".join(body), model_id, len(texts))

    async def probe(self) -> None:
        """Send the codec's probe request; raise its classified error unless it answers 2xx."""
        async with _Call(self._codec.probe_request(), None, None, self._translate) as call:
            with anyio.fail_after(self._timeouts.first_byte_s):
                response = call.response = await self._client.send(self._build(call.wire), stream=True)
                if not response.is_success:
                    raise await self._refusal(response, None)
                await response.aread()  # read to the end, so the connection goes back to the pool

    async def aclose(self) -> None:
        """Close the pooled client and every connection it holds."""
        await self._client.aclose()

    # -- one exchange ---------------------------------------------------------------------

    def _build(self, wire: WireRequest) -> httpx2.Request:
        return self._requests.build(wire.method, wire.path, wire.headers, wire.body)

    async def _open(self, call: _Call) -> tuple[bytes, AsyncIterator[bytes]]:
        """Send, check the status, and take the first body chunk, all within the first-byte deadline."""
        with anyio.fail_after(self._timeouts.first_byte_s):
            response = call.response = await self._client.send(self._build(call.wire), stream=True)
            if not response.is_success:
                raise await self._refusal(response, call.model_id)
            call.started = True
            set_read_timeout(response, self._timeouts.read_s)
            chunks = call.chunks = body_chunks(response)
            return await anext(chunks, b""), chunks

    async def _release(self, call: _Call) -> None:
        # The body is in: the connection goes back to the pool before the last events go out.
        if call.response is not None:
            await call.response.aclose()

    async def _refusal(self, response: httpx2.Response, model_id: str | None) -> ProviderError:
        body = bytearray()
        async with contextlib.aclosing(response.aiter_raw()) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) >= _ERROR_BODY_LIMIT:
                    break
        error = self._codec.classify(response.status_code, response.headers, bytes(body[:_ERROR_BODY_LIMIT]), model_id)
        if error.retry_after is None and error.kind in _RETRYABLE:
            # A Retry-After given as an HTTP date needs the wall clock, which codecs do not read.
            error.retry_after = parse_retry_after(response.headers, self._clock.wall())
        return error

    def _translate(self, exc: Exception, call: _Call) -> ProviderError:
        root = _root(exc)
        kind, what = next(((k, w) for t, k, w in _FOREIGN if isinstance(root, t)), (E.INTERNAL, "unexpected error"))
        if kind is E.TIMEOUT:
            what = self._timeout_text(root, call.started)
        said = str(root)
        detail = _scrub(f"{what} ({type(root).__name__}{': ' + said if said else ''})", call.wire)
        if call.started:
            decoder = call.decoder
            partial = decoder.partial_text if decoder is not None else ""
            # Usage the provider reported before the connection broke was billed all the same.
            usage = decoder.usage_so_far if decoder is not None else None
            return MidStreamError(kind, self._name, partial=partial, model=call.model_id, detail=detail, usage=usage)
        return ProviderError(kind, self._name, model=call.model_id, detail=detail)

    def _timeout_text(self, root: BaseException, started: bool) -> str:
        t = self._timeouts
        if isinstance(root, aiohttp.ConnectionTimeoutError | httpx2.ConnectTimeout):
            return f"connect timed out after {t.connect_s:g}s"
        if started and isinstance(root, aiohttp.ServerTimeoutError | httpx2.TimeoutException):
            return f"no data for {t.read_s:g}s mid-body"
        return f"no first byte within {t.first_byte_s:g}s"


def _root(exc: Exception) -> BaseException:
    """The exception to judge: httpx_aiohttp re-raises aiohttp's errors with a lossy mapping."""
    cause = exc.__cause__
    return cause if isinstance(exc, httpx2.HTTPError) and isinstance(cause, aiohttp.ClientError) else exc


def _scrub(text: str, wire: WireRequest) -> str:
    """``text`` without any header value (or word of one) that may be a credential, then cut short."""
    for name, value in wire.headers.items():
        if name.lower() in _PUBLIC_HEADERS:
            continue
        for secret in (value, *value.split()):
            if len(secret) >= 8:
                text = text.replace(secret, "****")
    return text[:300]
