"""Every provider format over real HTTP: HttpAdapter + codec against the loopback Simulator.

Each test runs for the four formats (OpenAI, OpenAI-compatible, Anthropic, Gemini) over both
transports (aiohttp, httpx2's own pool): answers, tool calls, usage, scripted faults, probes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import anyio
import msgspec
import pytest

from interlock._clock import RealClock
from interlock._errors import ErrorClass, MidStreamError, ProviderError
from interlock._secret import Secret
from interlock._types import (
    ChatRequest,
    Finish,
    FinishReason,
    Message,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolChoiceNamed,
    ToolSpec,
    Usage,
    UsageEvent,
)
from interlock.adapters.providers._codec import Codec
from interlock.adapters.providers._http import HttpAdapter, HttpTimeouts
from interlock.adapters.providers._http_client import TransportName
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.providers.gemini._codec import GeminiCodec
from interlock.adapters.providers.openai._codec import OpenAICodec
from interlock.adapters.simulator._server import (
    Behaviour,
    Drop,
    Fault,
    Fixed,
    Malformed,
    Overloaded,
    RateLimit,
    Reset,
    ServerError,
    SimConfig,
    Simulator,
    StallFirstToken,
    StallHeaders,
    Unavailable,
    dead_url,
)

KEY = Secret("sim-key-0123456789abcdef")
CONFIG = SimConfig(
    models={
        "sim-text": Behaviour(output_tokens=Fixed(12)),
        "sim-cached": Behaviour(output_tokens=Fixed(4), cached_fraction=0.5),
        "sim-slow": Behaviour(output_tokens=Fixed(40), per_token=Fixed(0.05)),
    },
    default=Behaviour(output_tokens=Fixed(12)),
)
PROMPT = ChatRequest(messages=(Message.text("system", "Be brief."), Message.text("user", "Tell me something. " * 20)))
WEATHER = ToolSpec(
    "get_weather",
    "Weather of a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TOOLS = ChatRequest(
    messages=(Message.text("user", "Weather in Paris?"),), tools=(WEATHER,), tool_choice=ToolChoiceNamed("get_weather")
)
# The simulator answers an Anthropic 503 with error type api_error, which the codec (type before
# status) reads as server_error; a 503 should read as overloaded, as it does for the other formats.
QUICK = HttpTimeouts(connect_s=5, first_byte_s=0.5, read_s=0.5)
SLACK = HttpTimeouts(connect_s=5, first_byte_s=15, read_s=15)


def codec_for(fmt: str) -> tuple[Codec, str]:
    """The codec of a format and the part its base URL adds to the simulator's URL."""
    if fmt == "anthropic":
        return AnthropicCodec("sim", KEY), ""
    if fmt == "gemini":
        return GeminiCodec("sim", KEY), ""
    return OpenAICodec("sim", KEY, compatible=fmt == "openai-compatible"), "/v1"


@pytest.fixture(params=["openai", "openai-compatible", "anthropic", "gemini"])
def fmt(request: pytest.FixtureRequest) -> str:
    """The provider wire format under test."""
    return str(request.param)


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> TransportName:
    """The HTTP transport under test."""
    return "httpx" if request.param == "httpx" else "aiohttp"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A fresh simulator per test, so scripts and counters start empty."""
    async with Simulator(CONFIG) as simulator:
        yield simulator


Make = Callable[..., HttpAdapter]


@pytest.fixture
async def make(fmt: str, transport: TransportName) -> AsyncIterator[Make]:
    """Build adapters of the format and transport under test; all are closed at the end."""
    made: list[HttpAdapter] = []

    def factory(url: str, timeouts: HttpTimeouts = SLACK) -> HttpAdapter:
        codec, suffix = codec_for(fmt)
        adapter = HttpAdapter("sim", url + suffix, codec, transport=transport, timeouts=timeouts, clock=RealClock())
        made.append(adapter)
        return adapter

    yield factory
    for adapter in made:
        await adapter.aclose()


async def run(
    adapter: HttpAdapter, model: str, request: ChatRequest = PROMPT, *, stream: bool = True
) -> tuple[list[StreamEvent], ProviderError | None]:
    """Every event of one call, and the error that ended it, if any."""
    events: list[StreamEvent] = []
    try:
        with anyio.fail_after(20):
            async with contextlib.aclosing(adapter.stream(request, model, stream=stream)) as it:
                async for event in it:
                    events.append(event)
    except ProviderError as err:
        return events, err
    return events, None


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# What each format's simulator says for a canonical finish reason (the Finish keeps it raw).
_RAW_FINISH = {
    "openai": {"stop": "stop", "length": "length", "tool_calls": "tool_calls"},
    "anthropic": {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"},
    "gemini": {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"},
}


def finish_as(fmt: str, reason: FinishReason, model: str = "sim-text") -> Finish:
    """The Finish a simulator answer of ``fmt`` ends with: the raw reason and the model that served it."""
    raw = _RAW_FINISH["openai" if fmt.startswith("openai") else fmt][reason]
    return Finish(reason, provider_reason=raw, served_model=model)


def usage_of(events: list[StreamEvent]) -> Usage:
    (usage,) = [e.usage for e in events if isinstance(e, UsageEvent)]
    return usage


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.anyio
async def test_text_answer_ends_with_one_usage_and_finish(sim: Simulator, make: Make, fmt: str, stream: bool) -> None:
    """A text answer: its words, then exactly one UsageEvent and one Finish(stop), in that order."""
    events, error = await run(make(sim.url), "sim-text", stream=stream)
    assert error is None
    assert len(text_of(events).split()) == 12
    assert [type(e) for e in events[-2:]] == [UsageEvent, Finish]
    assert events[-1] == finish_as(fmt, "stop")
    assert sum(isinstance(e, UsageEvent | Finish) for e in events) == 2
    usage = usage_of(events)
    assert usage.output_tokens == 12
    assert usage.input_tokens > 0
    assert sim.stats("sim-text").completed == 1


@pytest.mark.anyio
async def test_streamed_and_whole_answers_agree(sim: Simulator, make: Make) -> None:
    """The same seeded request gives the same text, usage and finish streamed or whole."""
    streamed, error = await run(make(sim.url), "sim-text", stream=True)
    assert error is None
    async with Simulator(CONFIG) as twin:  # same seed: its first answer is the same answer
        whole, error = await run(make(twin.url), "sim-text", stream=False)
    assert error is None
    assert text_of(whole) == text_of(streamed)
    assert whole[-2:] == streamed[-2:]


@pytest.mark.anyio
async def test_stream_requests_ask_for_a_stream(sim: Simulator, make: Make, fmt: str) -> None:
    """The wire says stream where the format puts it; OpenAI also asks for the usage chunk."""
    adapter = make(sim.url)
    assert (await run(adapter, "sim-text", stream=True))[1] is None
    assert (await run(adapter, "sim-text", stream=False))[1] is None
    streamed, whole = sim.stats("sim-text").bodies
    if fmt == "gemini":  # the verb in the path says it; the body does not
        assert "stream" not in streamed
    else:
        assert streamed["stream"] is True
        assert "stream" not in whole
    if fmt.startswith("openai"):
        assert streamed["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.anyio
async def test_max_tokens_cuts_the_answer_with_finish_length(
    sim: Simulator, make: Make, fmt: str, stream: bool
) -> None:
    """max_tokens reaches the simulator in the format's field; the cut answer finishes with length."""
    request = msgspec.structs.replace(PROMPT, max_tokens=5)
    events, error = await run(make(sim.url), "sim-text", request, stream=stream)
    assert error is None
    assert len(text_of(events).split()) == 5
    assert events[-1] == finish_as(fmt, "length")
    (body,) = sim.stats("sim-text").bodies
    if fmt == "openai":
        assert body["max_completion_tokens"] == 5
    elif fmt == "openai-compatible":
        assert body["max_tokens"] == 5


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.anyio
async def test_forced_tool_call(sim: Simulator, make: Make, fmt: str, stream: bool) -> None:
    """A forced tool comes back as one complete ToolCallDone and finish tool_calls."""
    events, error = await run(make(sim.url), "sim-text", TOOLS, stream=stream)
    assert error is None
    (done,) = [e for e in events if isinstance(e, ToolCallDone)]
    assert (done.index, done.name) == (0, "get_weather")
    assert done.id
    assert msgspec.json.decode(done.arguments) == {"city": "sim"}
    assert text_of(events) == ""
    assert events[-1] == finish_as(fmt, "tool_calls")
    if stream:
        assert any(isinstance(e, ToolCallDelta) and e.name == "get_weather" for e in events)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.anyio
async def test_cached_tokens_are_not_counted_twice(sim: Simulator, make: Make, stream: bool) -> None:
    """Cached prompt tokens land in cache_read only: input + cache_read is the whole prompt."""
    adapter = make(sim.url)
    plain, error = await run(adapter, "sim-text", stream=stream)
    assert error is None
    prompt = usage_of(plain).input_tokens  # nothing cached: the whole prompt
    assert usage_of(plain).cache_read_tokens == 0
    cached, error = await run(adapter, "sim-cached", stream=stream)
    assert error is None
    usage = usage_of(cached)
    assert usage.cache_read_tokens == prompt // 2 > 0
    assert usage.input_tokens == prompt - usage.cache_read_tokens
    assert usage.total_input_tokens == prompt
    assert (usage.cache_write_tokens, usage.output_tokens) == (0, 4)


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind", "status", "retry_after"),
    [
        (RateLimit(retry_after=7), ErrorClass.RATE_LIMIT, 429, 7.0),
        (ServerError(), ErrorClass.SERVER_ERROR, 500, None),
        (Overloaded(), ErrorClass.OVERLOADED, 529, None),
        (Unavailable(), ErrorClass.OVERLOADED, 503, None),
        (Reset(), ErrorClass.SERVER_ERROR, None, None),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.anyio
async def test_failures_before_the_answer(
    sim: Simulator,
    make: Make,
    fault: Fault,
    kind: ErrorClass,
    status: int | None,
    retry_after: float | None,
    stream: bool,
    fmt: str,
    request: pytest.FixtureRequest,
) -> None:
    """Refusals and a reset fail before any event: ProviderError with kind, status and retry hint."""
    sim.script("sim-text", [fault])
    events, error = await run(make(sim.url), "sim-text", stream=stream)
    assert events == []
    assert type(error) is ProviderError
    assert (error.kind, error.status, error.retry_after, error.model) == (kind, status, retry_after, "sim-text")
    assert sum(sim.stats("sim-text").faults.values()) == 1


@pytest.mark.parametrize("fault", [StallHeaders(30), StallFirstToken(30)])
@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.anyio
async def test_stalls_are_timeouts(sim: Simulator, make: Make, fault: Fault, stream: bool) -> None:
    """No headers, or no token, within the deadlines: an error of kind timeout with no text."""
    sim.script("sim-text", [fault])
    events, error = await run(make(sim.url, QUICK), "sim-text", stream=stream)
    assert text_of(events) == ""
    assert error is not None
    assert error.kind is ErrorClass.TIMEOUT
    if isinstance(error, MidStreamError):
        assert error.partial == ""
    if isinstance(fault, StallHeaders):
        assert type(error) is ProviderError  # no headers: nothing started


@pytest.mark.anyio
async def test_a_cut_stream_keeps_the_partial(sim: Simulator, make: Make) -> None:
    """A stream cut mid-answer: MidStreamError(server_error) with the text so far, every word of it yielded."""
    sim.script("sim-text", [Drop(after_tokens=3)])
    events, error = await run(make(sim.url), "sim-text")
    assert isinstance(error, MidStreamError)
    assert error.kind is ErrorClass.SERVER_ERROR
    assert error.partial == text_of(events)
    assert len(error.partial.split()) == 3
    assert not any(isinstance(e, Finish) for e in events)


@pytest.mark.parametrize("request_", [PROMPT, TOOLS], ids=["text", "tool_call"])
@pytest.mark.anyio
async def test_one_malformed_chunk_is_skipped_and_counted(sim: Simulator, make: Make, request_: ChatRequest) -> None:
    """The simulator's one broken chunk mid-answer is skipped: the whole answer, and a Finish counting one skip."""
    sim.script("sim-text", [Malformed(after_tokens=2)])
    events, error = await run(make(sim.url), "sim-text", request_)
    assert error is None
    assert sim.stats("sim-text").faults == {"malformed": 1}
    async with Simulator(CONFIG) as twin:  # same seed: its first answer is the same answer, unbroken
        clean, error = await run(make(twin.url), "sim-text", request_)
    assert error is None
    assert events[:-1] == clean[:-1]
    final, plain = events[-1], clean[-1]
    assert isinstance(final, Finish)
    assert isinstance(plain, Finish)
    assert (final.reason, final.skipped_events, plain.skipped_events) == (plain.reason, 1, 0)


@pytest.mark.anyio
async def test_broken_whole_bodies_fail_without_events(sim: Simulator, make: Make) -> None:
    """A non-streamed body cut short or malformed yields no event and a server_error."""
    adapter = make(sim.url)
    sim.script("sim-text", [Drop(), Malformed()])
    cut, cut_error = await run(adapter, "sim-text", stream=False)
    bad, bad_error = await run(adapter, "sim-text", stream=False)
    assert cut == bad == []
    assert isinstance(cut_error, MidStreamError)
    assert (cut_error.kind, cut_error.partial) == (ErrorClass.SERVER_ERROR, "")
    assert type(bad_error) is ProviderError
    assert bad_error.kind is ErrorClass.SERVER_ERROR


@pytest.mark.anyio
async def test_closing_early_is_a_disconnect_the_simulator_sees(sim: Simulator, make: Make) -> None:
    """A consumer that stops after the first token frees the server: it counts a disconnect."""
    async with contextlib.aclosing(make(sim.url).stream(PROMPT, "sim-slow")) as it:
        with anyio.fail_after(10):
            async for event in it:
                if isinstance(event, TextDelta) and event.text:
                    break
    with anyio.fail_after(10):
        while sim.stats("sim-slow").disconnected == 0:
            await anyio.sleep(0.01)
    assert sim.stats("sim-slow").completed == 0


# -- probes ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_probe_passes_on_the_simulator_and_fails_on_a_dead_url(sim: Simulator, make: Make) -> None:
    """probe() succeeds against a live simulator and raises ProviderError(connect) where none listens."""
    await make(sim.url).probe()
    with anyio.fail_after(10), pytest.raises(ProviderError) as caught:
        await make(dead_url()).probe()
    assert caught.value.kind is ErrorClass.CONNECT
