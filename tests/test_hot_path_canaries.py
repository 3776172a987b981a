"""Canaries for the adapter and store fast paths: each proves a dependency internal they rely on.

The hot path (docs/architecture.md, "Hot path") leans on a few things no dependency promises:
aiohttp's connection protocol and its read timer, where httpx_aiohttp keeps the aiohttp response,
how httpx2 builds a request and its timeout dict, what msgspec does with SSE data given as bytes,
how SQLite binds NaN and pads multi-row inserts, and where aiosqlite pulls ``executemany``'s rows.
When an upgrade changes one of them, the test named after it fails here, before a benchmark or a
user finds out. The kernel's own canaries (event-loop futures, light tasks) are in
``tests/test_kernel_canaries.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import math
import sqlite3
import threading
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import anyio
import httpx2
import msgspec
import pytest
from aiohttp import web
from aiohttp.client_proto import ResponseHandler

from interlock._records import AttemptRecord, RequestRecord
from interlock._secret import Secret
from interlock._types import ChatRequest, Message, TextDelta
from interlock.adapters.providers._codec import Codec
from interlock.adapters.providers._http_client import (
    _AIOHTTP_RESPONSE,
    HttpTimeouts,
    RequestBuilder,
    TransportName,
    body_chunks,
    build_client,
    set_read_timeout,
)
from interlock.adapters.providers._sse import SSEParser
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.providers.gemini._codec import GeminiCodec
from interlock.adapters.providers.openai._codec import OpenAICodec
from interlock.adapters.providers.openai._stream import OpenAIStreamDecoder
from interlock.adapters.providers.openai._wire import CHUNK_DECODER
from interlock.adapters.simulator._server import dead_url
from interlock.adapters.stores._ledger_store import (
    ATTEMPT_COLUMNS,
    REQUEST_COLUMNS,
    ROWS_PER_INSERT,
    SqliteLedgerStore,
    _attempt_row,
    _parameters,
    _request_row,
)

DATA = Path(__file__).parent / "data"
FIRST_BYTE_S = 60.0  # long enough that a timer armed with it is told apart from one armed with READ_S
READ_S = 0.2
REQUEST = ChatRequest(messages=(Message.text("user", "Say hello."),))
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- helpers -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """An aiohttp app on 127.0.0.1:<ephemeral> answering every path with ``handler``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def held_open(first: bytes, release: anyio.Event) -> Handler:
    """A handler that sends its headers and ``first``, then holds the body open until ``release``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(first)
        await release.wait()
        return response

    return handle


@contextlib.asynccontextmanager
async def client_for(url: str, transport: TransportName) -> AsyncIterator[httpx2.AsyncClient]:
    """The adapter's own pooled client, closed at the end."""
    timeouts = HttpTimeouts(connect_s=5.0, first_byte_s=FIRST_BYTE_S, read_s=READ_S)
    client = build_client(url, transport=transport, timeouts=timeouts, max_connections=4)
    try:
        yield client
    finally:
        await client.aclose()


async def open_stream(client: httpx2.AsyncClient, path: str = "/x") -> httpx2.Response:
    """Send a request built as the adapter builds it; returns once the headers are in."""
    request = RequestBuilder(client).build("POST", path, {"content-type": "application/json"}, b"{}")
    return await client.send(request, stream=True)


def aiohttp_protocol(response: httpx2.Response) -> ResponseHandler:
    """The aiohttp connection protocol behind ``response`` (aiohttp transport only)."""
    aio = response.extensions[_AIOHTTP_RESPONSE]
    assert isinstance(aio, aiohttp.ClientResponse)
    assert aio.connection is not None
    protocol = aio.connection.protocol
    assert isinstance(protocol, ResponseHandler)
    return protocol


def timer_left(protocol: ResponseHandler) -> float | None:
    """Seconds until the protocol's read timer fires; None when no timer is armed."""
    handle = protocol._read_timeout_handle
    if handle is None or handle.cancelled():
        return None
    return handle.when() - asyncio.get_running_loop().time()


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> TransportName:
    """Both transports ``HttpAdapter`` can run over."""
    return "httpx" if request.param == "httpx" else "aiohttp"


# -- aiohttp's read timer, as set_read_timeout drives it ----------------------------------------


def test_aiohttp_protocol_has_a_settable_read_timeout_and_start_timeout() -> None:
    """aiohttp's ResponseHandler still has a settable ``read_timeout`` property and a ``start_timeout`` method."""
    prop = ResponseHandler.__dict__.get("read_timeout")
    assert isinstance(prop, property)
    assert prop.fset is not None
    assert callable(getattr(ResponseHandler, "start_timeout", None))


@pytest.mark.anyio
async def test_transport_keeps_the_aiohttp_response_under_the_key_the_adapter_reads() -> None:
    """httpx_aiohttp's stream still holds the aiohttp response, so ``_Aiohttp`` can expose it in the extensions."""
    release = anyio.Event()
    async with serve(held_open(b"data: 1\n\n", release)) as url, client_for(url, "aiohttp") as client:
        response = await open_stream(client)
        try:
            aio = response.extensions.get(_AIOHTTP_RESPONSE)
            assert isinstance(aio, aiohttp.ClientResponse)
            # httpx2's read timeout reaches aiohttp as sock_read, the protocol's read_timeout.
            assert aiohttp_protocol(response).read_timeout == FIRST_BYTE_S
        finally:
            release.set()
            await response.aclose()


@pytest.mark.anyio
async def test_set_read_timeout_rearms_the_running_read_timer() -> None:
    """Once the headers are in, ``set_read_timeout`` replaces the timer armed with first_byte_s by one of read_s."""
    release = anyio.Event()
    async with serve(held_open(b"data: 1\n\n", release)) as url, client_for(url, "aiohttp") as client:
        response = await open_stream(client)
        try:
            protocol = aiohttp_protocol(response)
            before = timer_left(protocol)
            assert before is not None
            assert before > FIRST_BYTE_S / 2  # armed by the bytes that brought the headers
            set_read_timeout(response, READ_S)
            assert protocol.read_timeout == READ_S
            after = timer_left(protocol)
            assert after is not None
            assert 0 < after <= READ_S
        finally:
            release.set()
            await response.aclose()


@pytest.mark.anyio
async def test_a_body_that_came_whole_is_not_rearmed() -> None:
    """A body that came whole with its headers reads as EOF (aiohttp has released or disarmed it): no timer is armed."""

    async def whole(request: web.Request) -> web.Response:
        return web.Response(body=b"data: 1\n\n", content_type="text/event-stream")

    async with serve(whole) as url, client_for(url, "aiohttp") as client:
        response = await open_stream(client)
        try:
            aio = response.extensions[_AIOHTTP_RESPONSE]
            assert isinstance(aio, aiohttp.ClientResponse)
            await aio.content.wait_eof()
            assert aio.content.is_eof()  # the guard set_read_timeout tests before re-arming
            connection = aio.connection  # aiohttp 3.14 releases it to the pool at EOF
            set_read_timeout(response, READ_S)
            if connection is not None:
                protocol = connection.protocol
                assert isinstance(protocol, ResponseHandler)
                assert timer_left(protocol) is None
        finally:
            await response.aclose()


@pytest.mark.anyio
async def test_a_stalled_body_times_out_at_the_narrowed_read_timeout(transport: TransportName) -> None:
    """After ``set_read_timeout`` a body silent for read_s times out on both transports, long before first_byte_s."""
    release = anyio.Event()
    async with serve(held_open(b"data: 1\n\n", release)) as url, client_for(url, transport) as client:
        response = await open_stream(client)
        try:
            set_read_timeout(response, READ_S)
            chunks = body_chunks(response)
            with anyio.fail_after(FIRST_BYTE_S / 4):  # far below first_byte_s, far above read_s
                assert await anext(chunks) == b"data: 1\n\n"
                with pytest.raises(httpx2.TimeoutException):
                    await anext(chunks)
        finally:
            release.set()
            await response.aclose()


@pytest.mark.anyio
async def test_httpx_aiohttp_keeps_the_aiohttp_error_as_the_cause() -> None:
    """httpx_aiohttp raises its mapped error ``from`` aiohttp's, which ``_root`` in ``_http.py`` judges instead."""
    async with client_for(dead_url(), "aiohttp") as client:
        with pytest.raises(httpx2.HTTPError) as caught:
            await open_stream(client)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)


@pytest.mark.anyio
async def test_body_chunks_are_an_async_generator_of_the_raw_bytes(transport: TransportName) -> None:
    """The transport's stream is an async generator (``_Call`` closes it) that yields the body undecoded."""
    body = gzip.compress(b"data: 1\n\n" * 20)

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/event-stream"})

    async with serve(gzipped) as url, client_for(url, transport) as client:
        response = await open_stream(client)
        try:
            chunks = body_chunks(response)
            assert isinstance(chunks, AsyncGenerator)
            received = b"".join([chunk async for chunk in chunks])
        finally:
            await response.aclose()
    assert received == body


# -- httpx2: the request RequestBuilder hands over, and its timeout dict ----------------------


def _codec_wires() -> list[tuple[str, str, dict[str, str], bytes]]:
    """Every wire request the three codecs make: stream, whole answer and probe."""
    codecs: dict[str, Codec] = {
        "openai": OpenAICodec("openai", Secret("sk-test-0123456789")),
        "openai_compatible": OpenAICodec("local", None, compatible=True),
        "anthropic": AnthropicCodec("anthropic", Secret("sk-ant-test-0123456789")),
        "gemini": GeminiCodec("gemini", Secret("g-test-0123456789")),
    }
    wires = []
    for name, codec in codecs.items():
        for what, wire in (
            ("stream", codec.encode(REQUEST, "m-1", stream=True)),
            ("whole", codec.encode(REQUEST, "m-1", stream=False)),
            ("probe", codec.probe_request()),
        ):
            wires.append((f"{name}-{what}", wire.method, dict(wire.headers), wire.body))
    return wires


CODEC_WIRES = _codec_wires()
SYNTHETIC = [
    ("post-body", "POST", {"x-api-key": "k"}, b'{"a":1}'),
    ("post-empty", "POST", {}, b""),
    ("put-empty", "PUT", {}, b""),
    ("get", "GET", {"Authorization": "Bearer t"}, b""),
    ("lowercase-method", "get", {}, b""),
    ("override-default", "POST", {"user-agent": "other"}, b"{}"),
    ("framing-slow-path", "POST", {"Content-Length": "2"}, b"{}"),
    ("host-slow-path", "GET", {"HOST": "elsewhere"}, b""),
]
BASES = ["http://127.0.0.1:8080/v1", "https://api.example.com"]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    ("method", "headers", "body"), [pytest.param(*wire, id=case) for case, *wire in CODEC_WIRES + SYNTHETIC]
)
def test_request_builder_equals_httpx2_request_header_for_header(
    base: str, method: str, headers: dict[str, str], body: bytes
) -> None:
    """RequestBuilder's request is byte for byte what ``httpx2.Request(content=...)`` builds over the merged headers."""
    client = build_client(base, transport="httpx", timeouts=HttpTimeouts(), max_connections=1)
    path = "/chat/completions?x=1"
    built = RequestBuilder(client).build(method, path, headers, body)
    url = client.build_request(method, path).url
    merged = httpx2.Headers(dict(client.headers))
    merged.update(headers)  # without regard to case, as client.build_request merges
    reference = httpx2.Request(method, url, headers=merged, content=body or None)
    assert built.method == reference.method
    assert built.url == reference.url
    assert list(built.headers.raw) == list(reference.headers.raw)
    assert built.headers.encoding == reference.headers.encoding
    assert built.content == reference.content


def _build_request_cases() -> list[Any]:
    return [pytest.param(method, headers, body, id=case) for case, method, headers, body in CODEC_WIRES]


def _folded(request: httpx2.Request) -> list[tuple[bytes, bytes]]:
    """Headers as a server reads them: names without case, in order."""
    return [(name.lower(), value) for name, value in request.headers.raw]


@pytest.mark.parametrize(("method", "headers", "body"), _build_request_cases())
def test_request_builder_sends_what_client_build_request_would(
    method: str, headers: dict[str, str], body: bytes
) -> None:
    """For each codec's wire, the built request carries the URL, headers and body ``client.build_request`` would."""
    client = build_client(BASES[0], transport="httpx", timeouts=HttpTimeouts(), max_connections=1)
    built = RequestBuilder(client).build(method, "/p", headers, body)
    reference = client.build_request(method, "/p", headers=headers, content=body or None)
    assert built.method == reference.method
    assert built.url == reference.url
    assert built.content == reference.content
    assert _folded(built) == _folded(reference)


@pytest.mark.anyio
async def test_send_gives_each_request_its_own_timeout_dict(transport: TransportName) -> None:
    """httpx2 adds a fresh timeout dict to each built request, so ``set_read_timeout`` narrows one request only."""
    release = anyio.Event()
    async with serve(held_open(b"data: 1\n\n", release)) as url, client_for(url, transport) as client:
        first = await open_stream(client)
        second = await open_stream(client)
        try:
            one, two = first.request.extensions["timeout"], second.request.extensions["timeout"]
            assert isinstance(one, dict)
            assert one is not two
            set_read_timeout(first, READ_S)
            assert one["read"] == READ_S
            assert two["read"] == FIRST_BYTE_S
        finally:
            release.set()
            await first.aclose()
            await second.aclose()


# -- msgspec: SSE data handed over as bytes ----------------------------------------------------


def _recorded_data() -> list[tuple[str, bytes, str]]:
    """Every event of the recorded OpenAI streams, as raw bytes and as the text parser gives it."""
    found = []
    for path in sorted(DATA.glob("openai_*.sse")):
        body = path.read_bytes()
        raw = [data for _, data in SSEParser().feed_raw(body)]
        text = [event.data for event in SSEParser().feed(body)]
        assert len(raw) == len(text) > 0, path.name
        found += [(path.name, r, t) for r, t in zip(raw, text, strict=True)]
    return found


def test_msgspec_decodes_sse_data_bytes_as_it_decodes_the_text() -> None:
    """For every recorded OpenAI event, decoding the data bytes gives what decoding its text gives."""
    checked = 0
    for name, raw, text in _recorded_data():
        assert raw.decode() == text, name
        if raw == b"[DONE]":
            continue
        assert CHUNK_DECODER.decode(raw) == CHUNK_DECODER.decode(text), name
        checked += 1
    assert checked > 10


GOOD = b'{"choices":[{"index":0,"delta":{"content":"hi"}}]}'


ODD_DATA = {
    "empty": b"",
    "blank": b"   ",
    "vertical-tab": b"\x0b" + GOOD,
    "nbsp": b"\xc2\xa0" + GOOD,
    "bom": b"\xef\xbb\xbf" + GOOD,
    "invalid-utf8": GOOD.replace(b"hi", b"h\xffi"),
    "truncated": GOOD[:20],
}


@pytest.mark.parametrize("data", list(ODD_DATA.values()), ids=list(ODD_DATA))
def test_msgspec_refuses_odd_data_with_the_errors_the_decoder_catches(data: bytes) -> None:
    """Data the text path must repair makes msgspec raise DecodeError or UnicodeDecodeError, never anything else."""
    with pytest.raises((msgspec.DecodeError, UnicodeDecodeError)):
        CHUNK_DECODER.decode(data)


def test_msgspec_accepts_json_whitespace_around_the_bytes() -> None:
    """JSON whitespace around the data decodes on the bytes path itself, as the text path's strip would allow."""
    assert CHUNK_DECODER.decode(b" \t\r\n" + GOOD + b"\n ") == CHUNK_DECODER.decode(GOOD.decode())


@pytest.mark.parametrize(
    "data",
    [b"  " + GOOD + b" ", b"\x0b" + GOOD, b"\xc2\xa0" + GOOD + b"\xc2\xa0", GOOD.replace(b"hi", b"h\xffi")],
    ids=["json-whitespace", "vertical-tab", "nbsp", "invalid-utf8"],
)
def test_bytes_first_decoding_reaches_the_text_first_outcome(data: bytes) -> None:
    """The stream decoder's text, for data msgspec may refuse, is what a text-first decoder would read."""
    text_first = CHUNK_DECODER.decode(data.decode("utf-8", "replace").strip())
    decoder = OpenAIStreamDecoder("openai", "m-1", None, compatible=False)
    events = decoder.feed(b"data: " + data + b"\n\n")
    assert [e.text for e in events if isinstance(e, TextDelta)] == [text_first.choices[0].delta.content]


# -- SQLite and aiosqlite: the ledger's write path ---------------------------------------------


def _value(annotation: Any, n: int) -> Any:
    """A value of ``annotation`` (a record field's type) that differs from its default."""
    if annotation is bool:
        return True
    if annotation is int:
        return 100 + n
    if annotation is float:
        return n + 0.25
    if annotation is str:
        return f"v{n}"
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return args[-1]
    inner = [a for a in args if a is not type(None)]
    assert len(inner) == 1, annotation
    return _value(inner[0], n)


def _records(kind: type[AttemptRecord] | type[RequestRecord]) -> list[Any]:
    """Records of ``kind``: every field set, only the required ones, and the full one with bools False."""
    fields = msgspec.structs.fields(kind)
    full = kind(**{f.name: _value(f.type, i) for i, f in enumerate(fields)})
    sparse = kind(**{f.name: _value(f.type, i) for i, f in enumerate(fields) if f.required})
    falsy = msgspec.structs.replace(full, **{f.name: False for f in fields if f.type is bool})
    return [full, sparse, falsy]


def _plain_row(record: Any, columns: tuple[str, ...]) -> tuple[object, ...]:
    """The reference row: one value per column, read by name, bool as 0/1 and None as NaN."""
    row: list[object] = []
    for name in columns:
        value = getattr(record, name)
        if isinstance(value, bool):
            row.append(int(value))
        elif value is None:
            row.append(math.nan)
        else:
            row.append(value)
    return tuple(row)


def _same(a: object, b: object) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


CASES = [(RequestRecord, _request_row, REQUEST_COLUMNS), (AttemptRecord, _attempt_row, ATTEMPT_COLUMNS)]


@pytest.mark.parametrize(("kind", "build", "columns"), CASES, ids=["request", "attempt"])
def test_exec_built_row_builder_equals_a_plain_per_field_build(
    kind: type[Any], build: Callable[[Any], tuple[object, ...]], columns: tuple[str, ...]
) -> None:
    """The generated row builder yields, column for column, what reading each field by name would, in exact types."""
    for record in _records(kind):
        row = build(record)
        expected = _plain_row(record, columns)
        assert len(row) == len(columns)
        assert all(_same(got, want) for got, want in zip(row, expected, strict=True)), (row, expected)
        assert all(type(v) in (int, float, str) for v in row)  # sqlite3 binds these without its adapters


def test_msgspec_fields_resolve_postponed_annotations_to_types() -> None:
    """msgspec.structs.fields gives real types (bool, X | None) for the records' postponed annotations."""
    for kind in (RequestRecord, AttemptRecord):
        for field in msgspec.structs.fields(kind):
            assert not isinstance(field.type, str), field.name
    hedge = {f.name: f.type for f in msgspec.structs.fields(AttemptRecord)}
    assert hedge["hedge"] is bool
    assert type(None) in typing.get_args(hedge["ttft_ms"])


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "columns", "table"), [
    (RequestRecord, REQUEST_COLUMNS, "requests"), (AttemptRecord, ATTEMPT_COLUMNS, "attempts"),
], ids=["request", "attempt"])  # fmt: skip
async def test_every_schema_column_stores_what_the_plain_build_means(
    tmp_path: Path, kind: type[Any], columns: tuple[str, ...], table: str
) -> None:
    """Through the real store, each column holds the field's value, NaN lands as NULL and bools as 0/1."""
    path = tmp_path / "ledger.sqlite"
    records = _records(kind)
    records = [msgspec.structs.replace(r, request_id=f"r-{i}") for i, r in enumerate(records)]
    async with SqliteLedgerStore(path) as store:
        await store.write(records)
    conn = sqlite3.connect(path)
    try:
        table_columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        assert table_columns == set(columns)
        select = f"SELECT {', '.join(columns)} FROM {table} ORDER BY request_id"
        stored = conn.execute(select).fetchall()
    finally:
        conn.close()
    for record, row in zip(records, stored, strict=True):
        for name, got in zip(columns, row, strict=True):
            value = getattr(record, name)
            want = int(value) if isinstance(value, bool) else value
            assert got == want, (name, got, want)
            assert type(got) is type(want), (name, got, want)


def test_sqlite_binds_nan_as_null() -> None:
    """sqlite3 binds a float NaN as SQL NULL, which is what the row builders put in place of None."""
    conn = sqlite3.connect(":memory:")
    try:
        assert conn.execute("SELECT ? IS NULL, typeof(?)", (math.nan, math.nan)).fetchone() == (1, "null")
    finally:
        conn.close()


def test_lax_convert_reads_sqlite_integers_back_as_bools() -> None:
    """msgspec's lax convert turns the 0/1 and NULL the ledger stores back into the records' bools and None."""
    row = {"request_id": "r", "ts": 1.0, "tenant": "t", "caller": "c", "task": "x", "hedged": 1, "cache_hit": 0}
    record = msgspec.convert({**row, "verdict": None}, RequestRecord, strict=False)
    assert record.hedged is True
    assert record.cache_hit is False
    assert record.verdict is None


def test_a_multi_row_insert_fits_the_lowest_sqlite_variable_limit() -> None:
    """``ROWS_PER_INSERT`` rows of the widest record stay under 999 bind variables, and under this SQLite's limit."""
    widest = max(len(REQUEST_COLUMNS), len(ATTEMPT_COLUMNS))
    assert ROWS_PER_INSERT * widest <= 999
    conn = sqlite3.connect(":memory:")
    try:
        assert ROWS_PER_INSERT * widest <= conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        conn.close()


def test_insert_or_ignore_drops_repeated_rows_within_one_statement() -> None:
    """One multi-row INSERT OR IGNORE that repeats its last row stores it once (how a short batch is padded)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
        conn.execute("INSERT OR IGNORE INTO t (k, v) VALUES (?, ?), (?, ?), (?, ?)", ("a", 1, "b", 2, "b", 2))
        assert conn.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [("a", 1), ("b", 2)]
    finally:
        conn.close()


@pytest.mark.anyio
async def test_aiosqlite_pulls_executemany_rows_in_its_worker_thread(tmp_path: Path) -> None:
    """aiosqlite hands ``executemany`` the iterator itself, so rows are built in its thread, not on the event loop."""
    pulled_on: set[int] = set()
    records = _records(RequestRecord)[:1]

    def rows() -> Iterator[list[object]]:
        for params in _parameters(records, requests=True):
            pulled_on.add(threading.get_ident())
            yield params

    loop_thread = threading.get_ident()
    async with aiosqlite.connect(tmp_path / "t.sqlite") as conn:
        columns = ", ".join(REQUEST_COLUMNS)
        await conn.execute(f"CREATE TABLE requests ({columns}, PRIMARY KEY (request_id))")
        row = "(" + ", ".join("?" * len(REQUEST_COLUMNS)) + ")"
        sql = f"INSERT OR IGNORE INTO requests ({columns}) VALUES {', '.join([row] * ROWS_PER_INSERT)}"
        iterator = rows()
        await conn.executemany(sql, iterator)
        assert pulled_on
        assert loop_thread not in pulled_on
        async with conn.execute("SELECT COUNT(*) FROM requests") as cursor:
            assert await cursor.fetchone() == (1,)
