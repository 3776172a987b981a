"""The command-line adapter, run against the real fake CLI (``interlock.adapters.simulator._fake_cli``)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from interlock._clock import FakeClock
from interlock._errors import ConfigError, ErrorClass, MidStreamError, ProviderError
from interlock._types import (
    ChatRequest,
    Finish,
    ImagePart,
    Message,
    StreamEvent,
    TextDelta,
    ToolCallPart,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from interlock.adapters.providers._command import CommandAdapter
from interlock.adapters.providers._command_text import JsonLines, render_prompt
from interlock.policies._command_spec import CommandSpec, StderrRule
from interlock.policies._tokens import estimate_input_tokens, estimate_text_tokens

FAKE = (sys.executable, "-m", "interlock.adapters.simulator._fake_cli")
SECRET = "sk-test-0123456789abcdef"
WAIT_S = 10.0


def _spec(*flags: str, **settings: Any) -> CommandSpec:
    return CommandSpec(argv=(*FAKE, *flags), **settings)


def _adapter(spec: CommandSpec) -> CommandAdapter:
    return CommandAdapter("fake", spec, clock=FakeClock(), kill_grace_s=0.3)


def _request(text: str = "hello") -> ChatRequest:
    return ChatRequest(messages=(Message.text("user", text),))


async def _collect(adapter: CommandAdapter, request: ChatRequest, model: str = "m-1", **kw: bool) -> list[StreamEvent]:
    with anyio.fail_after(WAIT_S * 2):
        return [event async for event in adapter.stream(request, model, **kw)]


def _text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def _alive(pid: int) -> bool:
    """A zombie counts as gone: it no longer runs, only waits for a reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


async def _gone(pid: int) -> bool:
    with anyio.move_on_after(WAIT_S):
        while _alive(pid):
            await anyio.sleep(0.01)
        return True
    return False


def _pids(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()] if path.exists() else []


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    """Where the fake CLI writes its pids; anything still alive at teardown is killed."""
    path = tmp_path / "pids"
    yield path
    for pid in _pids(path):
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_render_prompt_is_a_transcript() -> None:
    """System text comes first, then labelled turns with tool parts and images as bracketed text."""
    request = ChatRequest(
        messages=(
            Message.text("user", "What is 2+2?"),
            Message.text("system", "Be brief."),
            Message(role="assistant", content=(ToolCallPart(id="c1", name="add", arguments='{"a":2,"b":2}'),)),
            Message(role="tool", content=(ToolResultPart(tool_call_id="c1", content="4"),)),
            Message(role="user", content=(ImagePart(url="https://x/y.png"), ImagePart(data="AAAA"))),
        )
    )
    assert render_prompt(request) == (
        "Be brief.\n\n"
        "User: What is 2+2?\n\n"
        'Assistant: [tool call c1: add({"a":2,"b":2})]\n\n'
        "Tool: [tool result c1: 4]\n\n"
        "User: [image: https://x/y.png]\n[image: image/png, inline data not sent]"
    )


@pytest.mark.anyio
async def test_stdin_prompt_is_echoed_then_usage_and_finish() -> None:
    """With prompt_via=stdin the CLI reads the rendered prompt; the stream ends with estimated usage and stop."""
    request = _request("héllo wörld")
    events = await _collect(_adapter(_spec()), request)
    assert _text(events) == "User: héllo wörld"
    assert events[-2:] == [
        UsageEvent(Usage(estimate_input_tokens(request), estimate_text_tokens("User: héllo wörld"))),
        Finish("stop"),
    ]


@pytest.mark.anyio
async def test_arg_prompt_and_model_placeholders() -> None:
    """With prompt_via=arg the prompt and model id are substituted into argv."""
    spec = _spec("--model", "{model}", "--prompt", "{prompt}", prompt_via="arg")
    events = await _collect(_adapter(spec), _request("say {model}"), model="tiny-1")
    assert _text(events) == "tiny-1: User: say {model}"


@pytest.mark.anyio
async def test_text_streams_before_the_process_exits(pid_file: Path, tmp_path: Path) -> None:
    """The first delta arrives while the CLI is still running (it is held at a gate)."""
    gate = tmp_path / "gate"
    adapter = _adapter(_spec("--wait-for", str(gate), "--pid-file", str(pid_file)))
    agen = adapter.stream(_request("abcdefgh"), "m-1")
    with anyio.fail_after(WAIT_S):
        first = await agen.__anext__()
    assert first == TextDelta("User")
    (cli, *_) = _pids(pid_file)
    assert _alive(cli)
    gate.touch()
    with anyio.fail_after(WAIT_S):
        rest = [event async for event in agen]
    assert _text([first, *rest]) == "User: abcdefgh"
    assert await _gone(cli)


@pytest.mark.anyio
async def test_multibyte_utf8_split_across_reads(tmp_path: Path) -> None:
    """A character cut between two reads is decoded whole, never as replacement characters."""
    gate = tmp_path / "gate"
    # Pieces of 2 bytes: the first is "a" plus the first byte of "€", and the CLI holds there
    # until the gate opens, so the first read cannot hold the rest of the character.
    spec = _spec("--text", "a€😀日本", "--byte-chunks", "--chunk", "2", "--wait-for", str(gate), "--delay", "0.001")
    agen = _adapter(spec).stream(_request(), "m-1")
    with anyio.fail_after(WAIT_S):
        first = await agen.__anext__()
    assert first == TextDelta("a")
    gate.touch()
    with anyio.fail_after(WAIT_S):
        rest = [e.text for e in [event async for event in agen] if isinstance(e, TextDelta)]
    assert "".join(rest) == "€😀日本"
    assert all("\ufffd" not in text for text in rest)


@pytest.mark.anyio
async def test_large_prompt_echoed_while_written_does_not_deadlock() -> None:
    """A CLI that answers while still reading a prompt larger than the pipe buffers completes."""
    prompt = "x" * 600_000
    events = await _collect(_adapter(_spec("--cat")), _request(prompt))
    assert _text(events) == f"User: {prompt}"


@pytest.mark.anyio
async def test_jsonl_with_reported_usage() -> None:
    """jsonl text comes from the dotted text field and usage from the CLI's own counts."""
    spec = _spec(
        "--jsonl", "--text", "hello world",
        output="jsonl", text_field="delta.text",
        input_tokens_field="usage.input_tokens", output_tokens_field="usage.output_tokens",
    )  # fmt: skip
    events = await _collect(_adapter(spec), _request())
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("hell"), TextDelta("o wo"), TextDelta("rld")]
    assert events[-2:] == [UsageEvent(Usage(input_tokens=11, output_tokens=7)), Finish("stop")]


@pytest.mark.anyio
async def test_jsonl_without_usage_is_estimated() -> None:
    """When the CLI reports no counts, usage is estimated from the prompt and the answer."""
    spec = _spec(
        "--jsonl", "--no-usage", "--text", "hello world",
        output="jsonl", text_field="delta.text", input_tokens_field="usage.input_tokens",
    )  # fmt: skip
    request = _request("count me")
    events = await _collect(_adapter(spec), request)
    assert events[-2] == UsageEvent(Usage(estimate_input_tokens(request), estimate_text_tokens("hello world")))


def test_jsonl_lines_split_at_every_byte() -> None:
    """Lines fed one byte at a time decode to the same text and counts as whole lines."""
    spec = CommandSpec(argv=("x",), output="jsonl", text_field="a.b", output_tokens_field="u.o")
    data = b'{"a": {"b": "h\xc3\xa9"}}\n\n{"other": 1}\n{"a": {"b": 3}}\r\n{"u": {"o": 5}}\n{"a": {"b": "!"}}'
    lines = JsonLines(spec)
    texts = [t for i in range(len(data)) for t in lines.feed(data[i : i + 1])] + lines.close()
    assert "".join(texts) == "hé!"
    assert (lines.input_tokens, lines.output_tokens, lines.bad_line) == (None, 5, None)


def test_jsonl_text_before_a_bad_line_in_the_same_chunk_is_kept() -> None:
    """Text of good lines read together with a broken one is returned, and decoding stops at the break."""
    lines = JsonLines(CommandSpec(argv=("x",), output="jsonl"))
    assert lines.feed(b'{"text": "a"}\n{"text": "b"}\n{"text": \n{"text": "c"}\n') == ["a", "b"]
    assert lines.bad_line == 3
    assert lines.feed(b'{"text": "d"}\n') == []


@pytest.mark.anyio
async def test_exit_code_table_comes_first() -> None:
    """A mapped exit code sets the kind even when a stderr rule would match; detail has code and stderr."""
    spec = _spec(
        "--text", "", "--stderr", "rate limit exceeded", "--exit", "2",
        exit_codes={2: ErrorClass.AUTH}, stderr_rules=(StderrRule("rate limit", ErrorClass.RATE_LIMIT),),
    )  # fmt: skip
    with pytest.raises(ProviderError) as info:
        await _collect(_adapter(spec), _request())
    assert type(info.value) is ProviderError
    assert info.value.kind is ErrorClass.AUTH
    assert info.value.provider == "fake"
    assert info.value.model == "m-1"
    assert "exit code 2" in info.value.detail
    assert "rate limit exceeded" in info.value.detail


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("Error: Rate limit exceeded, try later", ErrorClass.RATE_LIMIT),
        ("prompt is too long: 300000 tokens", ErrorClass.CONTEXT_LENGTH),
        ("segmentation fault", ErrorClass.SERVER_ERROR),
    ],
)
async def test_stderr_rules_classify_unmapped_exit_codes(stderr: str, kind: ErrorClass) -> None:
    """The first matching stderr rule gives the kind; with none matching it is server_error."""
    rules = (
        StderrRule("(?i)rate limit", ErrorClass.RATE_LIMIT),
        StderrRule("too long", ErrorClass.CONTEXT_LENGTH),
        StderrRule("(?i)limit", ErrorClass.OVERLOADED),
    )
    spec = _spec("--text", "", "--stderr", stderr, "--exit", "1", stderr_rules=rules)
    with pytest.raises(ProviderError) as info:
        await _collect(_adapter(spec), _request())
    assert info.value.kind is kind


@pytest.mark.anyio
async def test_partial_output_then_failure_is_midstream() -> None:
    """A failure after text was streamed is a MidStreamError carrying that text."""
    spec = _spec("--text", "partial answer", "--stderr", "connection reset", "--exit", "1")
    seen: list[StreamEvent] = []
    with pytest.raises(MidStreamError) as info:
        async for event in _adapter(spec).stream(_request(), "m-1"):
            seen.append(event)
    assert info.value.partial == "partial answer" == _text(seen)
    assert info.value.kind is ErrorClass.SERVER_ERROR


@pytest.mark.anyio
async def test_malformed_jsonl_names_provider_and_line() -> None:
    """A line of broken JSON ends the stream with a MidStreamError naming the provider and line number."""
    spec = _spec("--jsonl", "--text", "abcdefghijkl", "--malformed-line", "3", output="jsonl", text_field="delta.text")
    seen: list[StreamEvent] = []
    with pytest.raises(MidStreamError) as info:
        async for event in _adapter(spec).stream(_request(), "m-1"):
            seen.append(event)
    assert info.value.provider == "fake"
    assert "fake" in str(info.value)
    assert "line 3" in str(info.value)
    assert info.value.partial == "abcdefgh" == _text(seen)


@pytest.mark.anyio
async def test_missing_executable_is_connect_and_fails_probe(tmp_path: Path) -> None:
    """An executable that does not exist is a connect error, at call time and at probe time."""
    adapter = _adapter(CommandSpec(argv=(str(tmp_path / "no-such-cli"), "-p")))
    with pytest.raises(ProviderError) as info:
        await _collect(adapter, _request())
    assert info.value.kind is ErrorClass.CONNECT
    with pytest.raises(ProviderError) as probed:
        await adapter.probe()
    assert probed.value.kind is ErrorClass.CONNECT
    missing_on_path = _adapter(CommandSpec(argv=("interlock-no-such-cli-xyz",)))
    with pytest.raises(ProviderError):
        await missing_on_path.probe()


@pytest.mark.anyio
async def test_probe_passes_for_an_existing_executable() -> None:
    """probe() succeeds when argv[0] resolves, without running the model."""
    await _adapter(_spec()).probe()
    await _adapter(
        CommandSpec(argv=(Path(sys.executable).name,), env={"PATH": str(Path(sys.executable).parent)})
    ).probe()


@pytest.mark.anyio
async def test_deadline_is_timeout_and_kills_the_group(pid_file: Path) -> None:
    """A CLI that hangs past timeout_s fails with kind timeout, and its whole group is gone."""
    spec = _spec("--text", "", "--hang", "--spawn-grandchild", "--pid-file", str(pid_file), timeout_s=0.5)
    with pytest.raises(ProviderError) as info:
        await _collect(_adapter(spec), _request())
    assert type(info.value) is ProviderError
    assert info.value.kind is ErrorClass.TIMEOUT
    cli, grandchild = _pids(pid_file)
    assert await _gone(cli)
    assert await _gone(grandchild)


@pytest.mark.anyio
async def test_cancellation_kills_the_whole_group(pid_file: Path) -> None:
    """Cancelling the consuming task kills the CLI and its grandchild, and the cancellation propagates."""
    adapter = _adapter(_spec("--text", "abc", "--hang", "--spawn-grandchild", "--pid-file", str(pid_file)))
    first = anyio.Event()
    seen: list[object] = []

    async def consume() -> None:
        try:
            async for event in adapter.stream(_request(), "m-1"):
                seen.append(event)
                first.set()
        except anyio.get_cancelled_exc_class():
            seen.append("cancelled")
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        with anyio.fail_after(WAIT_S):
            await first.wait()
        tg.cancel_scope.cancel()
    assert seen[-1] == "cancelled"
    cli, grandchild = _pids(pid_file)
    assert await _gone(cli)
    assert await _gone(grandchild)


@pytest.mark.anyio
async def test_early_close_kills_the_whole_group(pid_file: Path) -> None:
    """Closing the iterator after the first event kills the CLI and its grandchild."""
    adapter = _adapter(_spec("--text", "abcdefgh", "--hang", "--spawn-grandchild", "--pid-file", str(pid_file)))
    agen = adapter.stream(_request(), "m-1")
    with anyio.fail_after(WAIT_S):
        assert isinstance(await agen.__anext__(), TextDelta)
    await agen.aclose()
    cli, grandchild = _pids(pid_file)
    assert await _gone(cli)
    assert await _gone(grandchild)


@pytest.mark.anyio
async def test_cli_ignoring_sigterm_is_killed_after_the_grace(pid_file: Path) -> None:
    """A CLI that ignores SIGTERM is killed with SIGKILL once the grace runs out."""
    adapter = _adapter(_spec("--text", "abc", "--hang", "--ignore-term", "--pid-file", str(pid_file)))
    agen = adapter.stream(_request(), "m-1")
    with anyio.fail_after(WAIT_S):
        await agen.__anext__()
    await agen.aclose()
    (cli, *_) = _pids(pid_file)
    assert await _gone(cli)


@pytest.mark.anyio
async def test_grandchild_of_a_finished_cli_is_killed(pid_file: Path) -> None:
    """A grandchild left behind by a CLI that answered and exited is killed too."""
    events = await _collect(
        _adapter(_spec("--text", "ok", "--spawn-grandchild", "--pid-file", str(pid_file))), _request()
    )
    assert _text(events) == "ok"
    _, grandchild = _pids(pid_file)
    assert await _gone(grandchild)


@pytest.mark.anyio
async def test_adapter_aclose_kills_running_calls(pid_file: Path) -> None:
    """aclose() kills a call still running; that call ends as cancelled, and later calls are refused."""
    adapter = _adapter(_spec("--text", "abc", "--hang", "--pid-file", str(pid_file)))
    agen = adapter.stream(_request(), "m-1")
    with anyio.fail_after(WAIT_S):
        await agen.__anext__()
    await adapter.aclose()
    (cli, *_) = _pids(pid_file)
    assert await _gone(cli)
    with pytest.raises(MidStreamError) as info, anyio.fail_after(WAIT_S):
        async for _ in agen:
            pass
    assert info.value.kind is ErrorClass.CANCELLED
    with pytest.raises(ProviderError):
        await _collect(adapter, _request())


@pytest.mark.anyio
async def test_env_reaches_the_child_but_never_errors_or_reprs() -> None:
    """spec.env is set in the child, and its values are redacted from errors and reprs."""
    env = {"FAKE_TOKEN": SECRET}
    answered = await _collect(_adapter(_spec("--print-env", "FAKE_TOKEN", env=env)), _request())
    assert _text(answered) == SECRET
    adapter = _adapter(
        _spec("--text", "", "--stderr", "bad token: ", "--stderr-env", "FAKE_TOKEN", "--exit", "1", env=env)
    )
    with pytest.raises(ProviderError) as info:
        await _collect(adapter, _request())
    assert "bad token: ****" in info.value.detail
    for shown in (str(info.value), repr(info.value), info.value.detail, repr(adapter), str(adapter)):
        assert SECRET not in shown


@pytest.mark.anyio
async def test_non_streaming_call_yields_the_whole_answer_once() -> None:
    """With stream=False the answer comes as one delta, then usage and finish."""
    events = await _collect(_adapter(_spec("--text", "one two three")), _request(), stream=False)
    assert events[0] == TextDelta("one two three")
    assert [type(e) for e in events] == [TextDelta, UsageEvent, Finish]


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"argv": ()}, "providers.fake.command.argv"),
        ({"argv": ("cli",), "prompt_via": "arg"}, "providers.fake.command.argv"),
        ({"argv": ("cli", "{prompt}")}, "providers.fake.command.argv"),
        (
            {"argv": ("cli",), "stderr_rules": (StderrRule("(", ErrorClass.AUTH),)},
            "providers.fake.command.stderr_rules[0].pattern",
        ),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any], key: str) -> None:
    """Settings that cannot work are refused at construction with the key that is wrong."""
    with pytest.raises(ConfigError) as info:
        CommandAdapter("fake", CommandSpec(**settings), clock=FakeClock())
    assert info.value.key == key
