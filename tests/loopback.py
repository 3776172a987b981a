"""A loopback HTTP server for provider tests, and HttpAdapters over it on either transport.

``serve`` runs an aiohttp app on 127.0.0.1 (an ephemeral port) that answers every path with one
handler; ``adapter`` builds an ``HttpAdapter`` for any codec at that URL, with deadlines short
enough that a test that goes wrong fails in seconds rather than hanging.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from aiohttp import web

from interlock._clock import RealClock
from interlock._errors import ProviderError
from interlock._types import ChatRequest, Message, StreamEvent, TextDelta
from interlock.adapters.providers._codec import Codec
from interlock.adapters.providers._http import HttpAdapter, HttpTimeouts
from interlock.adapters.providers._http_client import TransportName

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST = ChatRequest(messages=(Message.text("user", "Say hello."),))
SSE_HEADERS = {"Content-Type": "text/event-stream"}
TIMEOUTS = HttpTimeouts(connect_s=5, first_byte_s=10, read_s=10)


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """An aiohttp app on 127.0.0.1:<ephemeral> answering every path with ``handler``; yields its URL."""
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
async def adapter(url: str, codec: Codec, transport: TransportName = "aiohttp") -> AsyncIterator[HttpAdapter]:
    """An ``HttpAdapter`` running ``codec`` against ``url``, closed on exit."""
    made = HttpAdapter(codec.provider, url, codec, transport=transport, timeouts=TIMEOUTS, clock=RealClock())
    try:
        yield made
    finally:
        await made.aclose()


async def run(
    made: HttpAdapter, model: str, *, stream: bool = True
) -> tuple[list[StreamEvent], ProviderError | None]:
    """Every event of one call, and the error that ended it, if any (within 20 s)."""
    events: list[StreamEvent] = []
    try:
        with anyio.fail_after(20):
            async with contextlib.aclosing(made.stream(REQUEST, model, stream=stream)) as it:
                async for event in it:
                    events.append(event)
    except ProviderError as err:
        return events, err
    return events, None


def text_of(events: list[StreamEvent]) -> str:
    """The answer text of ``events``."""
    return "".join(e.text for e in events if isinstance(e, TextDelta))
