"""HttpAdapter over real HTTP on 127.0.0.1: purpose-built aiohttp servers, both transports.

The Anthropic codec supplies the wire format; each server below plays one behaviour (a status,
a stall, a cut body, a client that goes away) and the tests check what the adapter makes of it.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from email.utils import formatdate
from typing import Any

import anyio
import anyio.abc
import msgspec
import pytest
from aiohttp import web

from interlock._clock import Clock, FakeClock, RealClock
from interlock._errors import ConfigError, ErrorClass, MidStreamError, ProviderError
from interlock._secret import Secret
from interlock._types import ChatRequest, Finish, Message, StreamEvent, TextDelta, Usage, UsageEvent
from interlock.adapters.providers._codec import Codec, StreamDecoder, WireRequest
from interlock.adapters.providers._http import HttpAdapter, HttpTimeouts, _scrub
from interlock.adapters.providers._http_client import TransportName
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.simulator._server import dead_url

KEY = "sk-ant-TESTKEY-0123456789abcdef"
REQUEST = ChatRequest(messages=(Message.text("user", "Say hello."),))
SSE = {"Content-Type": "text/event-stream"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _event(name: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


def _text(text: str) -> bytes:
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return _event("content_block_delta", delta)


HEAD = _event(
    "message_start",
    {"type": "message_start", "message": {"type": "message", "content": [], "usage": {"input_tokens": 7}}},
) + _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}})
USAGE = {"output_tokens": 2}
TAIL = (
    _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    + _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": USAGE})
    + _event("message_stop", {"type": "message_stop"})
)
DONE = [UsageEvent(Usage(input_tokens=7, output_tokens=2)), Finish("stop", provider_reason="end_turn")]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """An aiohttp app on 127.0.0.1:<ephemeral> answering every path with ``handler``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_raw(reply: bytes) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that answers any request with ``reply`` bytes and hangs up."""

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(reply)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


async def stream_then(request: web.Request, body: bytes) -> web.StreamResponse:
    """Start an SSE response and write ``body``; the caller decides what happens next."""
    response = web.StreamResponse(headers=SSE)
    await response.prepare(request)
    await response.write(body)
    return response


async def hang(gone: anyio.Event) -> None:
    """Wait until the client goes away (aiohttp cancels the handler), and say so."""
    try:
        await anyio.sleep_forever()
    finally:
        gone.set()


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> TransportName:
    """Both transports the adapter can run over."""
    return "httpx" if request.param == "httpx" else "aiohttp"


Make = Callable[..., HttpAdapter]


@pytest.fixture
async def make(transport: TransportName) -> AsyncIterator[Make]:
    """Build adapters on the parametrized transport; every one is closed at the end."""
    made: list[HttpAdapter] = []

    def factory(
        url: str, *, codec: Codec | None = None, timeouts: HttpTimeouts | None = None, clock: Clock | None = None
    ) -> HttpAdapter:
        adapter = HttpAdapter(
            "anthropic",
            url,
            codec or AnthropicCodec("anthropic", Secret(KEY)),
            transport=transport,
            timeouts=timeouts or HttpTimeouts(connect_s=5, first_byte_s=10, read_s=10),
            clock=clock or RealClock(),
        )
        made.append(adapter)
        return adapter

    yield factory
    for adapter in made:
        await adapter.aclose()


async def run(adapter: HttpAdapter, *, stream: bool = True) -> tuple[list[StreamEvent], ProviderError | None]:
    """Every event of one call, and the error that ended it, if any."""
    events: list[StreamEvent] = []
    try:
        async with contextlib.aclosing(adapter.stream(REQUEST, "m-1", stream=stream)) as it:
            async for event in it:
                events.append(event)
    except ProviderError as err:
        return events, err
    return events, None


def texts(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stream_yields_each_chunk_before_the_next_arrives(make: Make) -> None:
    """Events of a chunk reach the caller while the server still holds back the rest of the body."""
    seen: dict[str, Any] = {}
    first_seen = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.update(path=request.path, headers=dict(request.headers), body=msgspec.json.decode(await request.read()))
        response = await stream_then(request, HEAD + _text("Hel"))
        await first_seen.wait()
        await response.write(_text("lo") + TAIL)
        return response

    async with serve(handler) as url:
        events: list[StreamEvent] = []
        with anyio.fail_after(10):
            async with contextlib.aclosing(make(url).stream(REQUEST, "m-1")) as it:
                async for event in it:
                    events.append(event)
                    if event == TextDelta("Hel"):
                        first_seen.set()
    assert events == [TextDelta("Hel"), TextDelta("lo"), *DONE]
    assert seen["path"] == "/v1/messages"
    assert seen["headers"]["x-api-key"] == KEY
    assert seen["headers"]["Accept-Encoding"] == "identity"
    assert seen["body"]["model"] == "m-1"
    assert seen["body"]["stream"] is True


@pytest.mark.anyio
async def test_batches_hand_over_each_chunks_events_together(make: Make) -> None:
    """``batches`` yields one non-empty list per chunk that completed events, in the order ``stream`` gives."""
    second_sent = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await stream_then(request, HEAD + _text("Hel") + _text("lo"))
        await second_sent.wait()
        await response.write(_text(" there") + TAIL)
        return response

    async with serve(handler) as url:
        batches: list[list[StreamEvent]] = []
        with anyio.fail_after(10):
            async with contextlib.aclosing(make(url).batches(REQUEST, "m-1")) as it:
                async for batch in it:
                    batches.append(batch)
                    second_sent.set()
    assert all(batches)
    assert batches[0] == [TextDelta("Hel"), TextDelta("lo")]  # one chunk, one hand-over
    assert [e for batch in batches for e in batch] == [TextDelta("Hel"), TextDelta("lo"), TextDelta(" there"), *DONE]


@pytest.mark.anyio
async def test_non_stream_decodes_the_whole_body(make: Make) -> None:
    """``stream=False`` asks for a whole message and yields the events a stream of it would give."""
    bodies: list[Any] = []
    message = {
        "type": "message",
        "content": [{"type": "text", "text": "Hello"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 7, "output_tokens": 2},
    }

    async def handler(request: web.Request) -> web.StreamResponse:
        bodies.append(msgspec.json.decode(await request.read()))
        return web.json_response(message)

    async with serve(handler) as url:
        events, error = await run(make(url), stream=False)
    assert error is None
    assert events == [TextDelta("Hello"), *DONE]
    assert "stream" not in bodies[0]


@pytest.mark.anyio
async def test_paths_join_the_base_url_path(make: Make) -> None:
    """A base URL with a path prefix keeps it: the codec's path is appended, not substituted."""
    paths: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        paths.append(request.path)
        return await stream_then(request, HEAD + _text("x") + TAIL)

    async with serve(handler) as url:
        _, error = await run(make(url + "/proxy/anthropic"))
    assert error is None
    assert paths == ["/proxy/anthropic/v1/messages"]


@pytest.mark.anyio
async def test_connections_are_pooled_and_an_early_close_drops_one(make: Make) -> None:
    """Two finished calls share one connection; after a call closed early, the next opens a new one."""
    ports: list[int] = []
    gone = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        ports.append(request.transport.get_extra_info("peername")[1] if request.transport else -1)
        if len(ports) != 3:
            return await stream_then(request, HEAD + _text("x") + TAIL)
        response = await stream_then(request, HEAD + _text("x"))  # the third body stays open
        await hang(gone)
        return response

    async with serve(handler) as url:
        adapter = make(url)
        for _ in range(2):
            assert (await run(adapter))[1] is None
        async with contextlib.aclosing(adapter.stream(REQUEST, "m-1")) as it:
            await anext(it)  # the first event; the body is closed unread
        assert (await run(adapter))[1] is None
    assert ports[0] == ports[1] == ports[2]
    assert ports[3] != ports[2]


# -- refusals ----------------------------------------------------------------------------------


def _error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retry_after"),
    [
        (429, _error_body("rate_limit_error", "slow down"), {"retry-after": "7"}, ErrorClass.RATE_LIMIT, 7.0),
        (529, _error_body("overloaded_error", "busy"), {}, ErrorClass.OVERLOADED, None),
        (503, {}, {}, ErrorClass.OVERLOADED, None),
        (500, _error_body("api_error", "oops"), {}, ErrorClass.SERVER_ERROR, None),
        (401, _error_body("authentication_error", "bad key"), {}, ErrorClass.AUTH, None),
        (400, _error_body("invalid_request_error", "prompt is too long"), {}, ErrorClass.CONTEXT_LENGTH, None),
    ],
)
@pytest.mark.anyio
async def test_status_and_body_map_through_the_codec(
    make: Make, status: int, body: dict[str, Any], headers: dict[str, str], kind: ErrorClass, retry_after: float | None
) -> None:
    """A non-2xx answer raises the codec's classification, with status, model and retry hint."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status, headers=headers)

    async with serve(handler) as url:
        events, error = await run(make(url))
    assert events == []
    assert type(error) is ProviderError
    assert (error.kind, error.status, error.model, error.retry_after) == (kind, status, "m-1", retry_after)


@pytest.mark.anyio
async def test_retry_after_as_http_date_is_read_on_the_injected_clock(make: Make) -> None:
    """A Retry-After HTTP date becomes seconds from the adapter clock's wall time."""
    clock = FakeClock(wall_start=1_700_000_000.0)

    async def handler(request: web.Request) -> web.StreamResponse:
        when = formatdate(clock.wall() + 30, usegmt=True)
        return web.json_response(_error_body("overloaded_error", "busy"), status=529, headers={"retry-after": when})

    async with serve(handler) as url:
        _, error = await run(make(url, clock=clock))
    assert error is not None
    assert error.kind is ErrorClass.OVERLOADED
    assert error.retry_after == pytest.approx(30.0)


# -- transport failures ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_connect_refused_is_a_connect_error(make: Make) -> None:
    """Nothing listening on the port: ProviderError(connect), before any event, with no status."""
    with anyio.fail_after(10):
        events, error = await run(make(dead_url()))
    assert events == []
    assert type(error) is ProviderError
    assert (error.kind, error.status, error.model) == (ErrorClass.CONNECT, None, "m-1")


@pytest.mark.anyio
async def test_stall_before_headers_is_a_first_byte_timeout(make: Make) -> None:
    """No headers within first_byte_s: ProviderError(timeout), and the connection is dropped."""
    gone = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        await hang(gone)
        raise AssertionError("unreachable")

    async with serve(handler) as url:
        with anyio.fail_after(10):
            events, error = await run(make(url, timeouts=HttpTimeouts(first_byte_s=0.3, read_s=30)))
            await gone.wait()
    assert events == []
    assert type(error) is ProviderError
    assert error.kind is ErrorClass.TIMEOUT
    assert "first byte" in error.detail


@pytest.mark.anyio
async def test_stall_before_the_first_chunk_is_a_first_byte_timeout(make: Make) -> None:
    """Headers in but no body chunk by the first-byte deadline: a timeout with empty partial."""
    gone = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE)
        await response.prepare(request)
        await hang(gone)
        return response

    async with serve(handler) as url:
        with anyio.fail_after(10):
            events, error = await run(make(url, timeouts=HttpTimeouts(first_byte_s=0.3, read_s=30)))
            await gone.wait()
    assert events == []
    assert isinstance(error, MidStreamError)
    assert (error.kind, error.partial) == (ErrorClass.TIMEOUT, "")


@pytest.mark.anyio
async def test_stall_between_chunks_is_a_read_timeout_with_the_partial(make: Make) -> None:
    """Silence longer than read_s mid-body: MidStreamError(timeout) holding the text so far."""
    gone = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await stream_then(request, HEAD + _text("Hel"))
        await hang(gone)
        return response

    async with serve(handler) as url:
        with anyio.fail_after(10):  # far below first_byte_s: only read_s can have fired
            events, error = await run(make(url, timeouts=HttpTimeouts(first_byte_s=60, read_s=0.3)))
            await gone.wait()
    assert events == [TextDelta("Hel")]
    assert isinstance(error, MidStreamError)
    assert (error.kind, error.partial, error.model) == (ErrorClass.TIMEOUT, "Hel", "m-1")
    assert "0.3s" in error.detail


@pytest.mark.anyio
async def test_body_cut_mid_stream_is_a_mid_stream_error(make: Make) -> None:
    """The connection dropping mid-body: MidStreamError(server_error) with the partial text."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await stream_then(request, HEAD + _text("Hel"))
        assert request.transport is not None
        request.transport.abort()
        return response

    async with serve(handler) as url:
        with anyio.fail_after(10):
            events, error = await run(make(url))
    assert events == [TextDelta("Hel")]
    assert isinstance(error, MidStreamError)
    assert (error.kind, error.partial) == (ErrorClass.SERVER_ERROR, "Hel")


@pytest.mark.anyio
async def test_body_ending_before_the_answer_is_the_decoders_error(make: Make) -> None:
    """A cleanly closed body that stops before message_stop ends in the decoder's MidStreamError."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await stream_then(request, HEAD + _text("Hel"))
        await response.write_eof()
        return response

    async with serve(handler) as url:
        events, error = await run(make(url))
    assert events == [TextDelta("Hel")]
    assert isinstance(error, MidStreamError)
    assert (error.kind, error.partial) == (ErrorClass.SERVER_ERROR, "Hel")
    assert "message_stop" in error.detail


@pytest.mark.anyio
async def test_garbage_instead_of_http_is_a_server_error(make: Make) -> None:
    """A peer that does not speak HTTP: ProviderError(server_error) before any event."""
    async with serve_raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as url:
        with anyio.fail_after(10):
            events, error = await run(make(url))
    assert events == []
    assert type(error) is ProviderError
    assert error.kind is ErrorClass.SERVER_ERROR


class _ExplodingCodec:
    """The Anthropic codec, except that its stream decoder has a bug."""

    provider = "anthropic"

    def __init__(self) -> None:
        self._inner = AnthropicCodec("anthropic", Secret(KEY))

    def encode(self, request: ChatRequest, model_id: str, *, stream: bool) -> WireRequest:
        return self._inner.encode(request, model_id, stream=stream)

    def stream_decoder(self, model_id: str) -> StreamDecoder:
        return _ExplodingDecoder()

    def decode_response(self, body: bytes, model_id: str) -> list[StreamEvent]:
        return self._inner.decode_response(body, model_id)

    def classify(self, status: int, headers: Mapping[str, str], body: bytes, model_id: str | None) -> ProviderError:
        return self._inner.classify(status, headers, body, model_id)

    def probe_request(self) -> WireRequest:
        return self._inner.probe_request()


class _ExplodingDecoder:
    partial_text = ""
    usage_so_far = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        raise RuntimeError("decoder bug")

    def close(self) -> list[StreamEvent]:
        return []


@pytest.mark.anyio
async def test_an_unexpected_exception_is_internal(make: Make) -> None:
    """Anything the seam does not know becomes a ProviderError of kind internal, cause kept."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_then(request, HEAD + TAIL)

    async with serve(handler) as url:
        _, error = await run(make(url, codec=_ExplodingCodec()))
    assert isinstance(error, ProviderError)
    assert error.kind is ErrorClass.INTERNAL
    assert isinstance(error.__cause__, RuntimeError)


# -- the consumer goes away ------------------------------------------------------------------


@pytest.mark.anyio
async def test_closing_the_iterator_early_closes_the_connection(make: Make) -> None:
    """aclose() after the first event drops the connection: the server sees its client go."""
    gone = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await stream_then(request, HEAD + _text("Hel"))
        await hang(gone)
        return response

    async with serve(handler) as url:
        with anyio.fail_after(10):
            async with contextlib.aclosing(make(url).stream(REQUEST, "m-1")) as it:
                assert await anext(it) == TextDelta("Hel")
            await gone.wait()
    assert gone.is_set()


@pytest.mark.anyio
async def test_cancelling_the_consumer_closes_the_connection(make: Make) -> None:
    """Cancelling the task that iterates the stream drops the connection as well."""
    gone = anyio.Event()
    first = anyio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await stream_then(request, HEAD + _text("Hel"))
        await hang(gone)
        return response

    async def consume(adapter: HttpAdapter) -> None:
        async with contextlib.aclosing(adapter.stream(REQUEST, "m-1")) as it:
            async for _ in it:
                first.set()

    async with serve(handler) as url:
        adapter = make(url)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume, adapter)
                await first.wait()
                tg.cancel_scope.cancel()
            await gone.wait()
    assert gone.is_set()


# -- secrets, probe, settings ----------------------------------------------------------------


@pytest.mark.anyio
async def test_no_error_or_repr_shows_the_api_key(make: Make) -> None:
    """Errors of every path (echoed key, refused, timeout, cut body) and reprs never hold the key."""

    async def echo(request: web.Request) -> web.StreamResponse:
        body = _error_body("authentication_error", f"invalid x-api-key {request.headers['x-api-key']}")
        return web.json_response(body, status=401)

    async def stall(request: web.Request) -> web.StreamResponse:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def cut(request: web.Request) -> web.StreamResponse:
        response = await stream_then(request, HEAD + _text("Hel"))
        assert request.transport is not None
        request.transport.abort()
        return response

    errors: list[ProviderError | None] = []
    quick = HttpTimeouts(first_byte_s=0.3, read_s=0.3)
    for handler in (echo, stall, cut):
        async with serve(handler) as url:
            errors.append((await run(make(url, timeouts=quick)))[1])
    refused = make(dead_url())
    errors.append((await run(refused))[1])
    with pytest.raises(ProviderError) as probe_error:
        await refused.probe()
    errors.append(probe_error.value)
    assert all(e is not None for e in errors)
    for error in errors:
        shown = "".join(traceback.format_exception(error)) + repr(error) + str(error.__dict__)
        assert KEY not in shown
    assert KEY not in repr(refused)


def test_error_details_are_scrubbed_of_every_credential_header() -> None:
    """A detail naming a key (bare, or as the whole header value) loses it, even past the length cut."""
    wire = WireRequest("POST", "/x", {"Authorization": f"Bearer {KEY}", "x-goog-api-key": KEY, "accept": "text/plain"})
    text = "x" * 290 + f"key {KEY} then Bearer {KEY} accept text/plain"
    scrubbed = _scrub(text, wire)
    assert KEY not in scrubbed
    assert KEY[:8] not in scrubbed
    assert scrubbed.startswith("x" * 290 + "key ****")
    assert len(scrubbed) <= 300


@pytest.mark.anyio
async def test_probe_passes_on_2xx_and_raises_the_classified_error(make: Make) -> None:
    """probe() sends the codec's probe request; a 401 comes back as ProviderError(auth)."""
    seen: list[tuple[str, str]] = []
    status = {"code": 200}

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.path))
        if status["code"] != 200:
            return web.json_response(_error_body("authentication_error", "no"), status=status["code"])
        return web.json_response({"data": [], "has_more": False})

    async with serve(handler) as url:
        adapter = make(url)
        await adapter.probe()
        status["code"] = 401
        with pytest.raises(ProviderError) as caught:
            await adapter.probe()
    assert seen == [("GET", "/v1/models")] * 2
    assert (caught.value.kind, caught.value.status) == (ErrorClass.AUTH, 401)


@pytest.mark.anyio
async def test_probe_times_out_on_a_silent_server(make: Make) -> None:
    """A probe whose answer never comes ends in ProviderError(timeout) after first_byte_s."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with serve(handler) as url:
        with anyio.fail_after(10), pytest.raises(ProviderError) as caught:
            await make(url, timeouts=HttpTimeouts(first_byte_s=0.3)).probe()
    assert caught.value.kind is ErrorClass.TIMEOUT


def test_timeouts_must_be_positive() -> None:
    """A zero, negative or NaN timeout is a ConfigError naming the field."""
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError) as caught:
            HttpTimeouts(read_s=bad)
        assert caught.value.key == "timeouts.read_s"


def test_unknown_transport_is_a_config_error() -> None:
    """Only aiohttp and httpx are transports."""
    with pytest.raises(ConfigError):
        HttpAdapter("x", "http://127.0.0.1:1", AnthropicCodec("x", None), transport="curl", clock=RealClock())  # type: ignore[arg-type]
