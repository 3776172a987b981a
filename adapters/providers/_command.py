"""The command-line model adapter (``kind = "command"``): a model's CLI run as a subprocess.

The prompt it is given and the readers of its stdout live in ``_command_text``; this module runs
the process.

Each call owns one process in its own session, so its process group holds everything the CLI
spawned. However the call ends (answer, error, deadline, cancellation, early close of the
iterator), the group gets SIGTERM, then SIGKILL after a short grace, and the CLI is reaped.
A grandchild that starts a session of its own leaves the group and is out of reach.

The iterator never yields inside a cancel scope: each read of the child runs in a scope of its
own under the call's absolute deadline, so a deadline or a stderr drain never fires while the
caller's code runs between events.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import AsyncGenerator

import anyio
from anyio.abc import ByteReceiveStream, Process

from interlock._clock import Clock
from interlock._errors import ConfigError, ErrorClass, MidStreamError, ProviderError
from interlock._types import ChatRequest, Finish, StreamEvent, TextDelta, Usage, UsageEvent
from interlock.adapters.providers._command_text import JsonLines, OutputReader, PlainText, render_prompt
from interlock.policies._command_spec import CommandSpec
from interlock.policies._tokens import estimate_input_tokens, estimate_text_tokens

_PLACEHOLDER = re.compile(r"\{(model|prompt)\}")
_STDERR_KEEP = 64 * 1024  # bytes of stderr kept for the stderr rules
_STDERR_TAIL = 500  # characters of stderr put in an error's detail
_PIPE_GRACE_S = 1.0  # after the CLI exits, its stderr is already in the pipe
_REAP_LIMIT_S = 5.0  # beyond the grace: an unkillable process is given up on, not waited for
_MIN_SECRET_LEN = 6  # shorter env values are flags ("1", "true"), not secrets worth redacting


def _signal_group(pgid: int, sig: int) -> None:
    # ESRCH: the group is already empty. EPERM: a member changed its credentials; nothing to do.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Run:
    """One CLI process of one call: feeds stdin, reads stdout, keeps stderr, all by the deadline."""

    def __init__(self, proc: Process, deadline: float) -> None:
        self.proc = proc
        self._deadline = deadline
        self._pending: deque[bytes] = deque()
        self._stdout_eof = False
        self._stderr = bytearray()
        self._stderr_done = anyio.Event()

    @property
    def stderr_text(self) -> str:
        return self._stderr.decode("utf-8", errors="replace")

    async def start(self, prompt: bytes | None) -> None:
        """Write the prompt and close stdin, draining stdout and stderr so neither side blocks."""
        stdin = self.proc.stdin
        if prompt is None or stdin is None:
            return
        with anyio.fail_at(self._deadline):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._collect_stdout)
                tg.start_soon(self._drain_stderr)
                # A CLI that exits without reading its stdin breaks the pipe; its exit says why.
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await stdin.send(prompt)
                await stdin.aclose()
                tg.cancel_scope.cancel()

    async def read(self) -> bytes:
        """The next stdout chunk, or ``b""`` at the end of stdout."""
        if self._pending:
            return self._pending.popleft()
        if self._stdout_eof:
            return b""
        with anyio.fail_at(self._deadline):
            async with anyio.create_task_group() as tg:
                if not self._stderr_done.is_set():
                    tg.start_soon(self._drain_stderr)
                chunk = await self._receive(self.proc.stdout)
                tg.cancel_scope.cancel()
        self._stdout_eof = not chunk
        return chunk

    async def wait(self) -> int:
        """The CLI's exit status, once it has exited and its stderr is read."""
        with anyio.fail_at(self._deadline):
            async with anyio.create_task_group() as tg:
                if not self._stderr_done.is_set():
                    tg.start_soon(self._drain_stderr)
                code = await self.proc.wait()
                with anyio.move_on_after(_PIPE_GRACE_S):
                    await self._stderr_done.wait()
                tg.cancel_scope.cancel()
        return code

    async def _collect_stdout(self) -> None:
        while chunk := await self._receive(self.proc.stdout):
            self._pending.append(chunk)
        self._stdout_eof = True

    async def _drain_stderr(self) -> None:
        while chunk := await self._receive(self.proc.stderr):
            self._stderr += chunk
            del self._stderr[:-_STDERR_KEEP]
        self._stderr_done.set()

    @staticmethod
    async def _receive(stream: ByteReceiveStream | None) -> bytes:
        # Cancelling a receive loses no data (it stays in the pipe's buffer), which is what lets
        # each read run in a scope of its own.
        if stream is None:
            return b""
        try:
            return await stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return b""


class CommandAdapter:
    """Runs calls through a model's command-line tool, one process group per call."""

    batches: None = None  # no batched form: the provider actor reads ``stream`` event by event

    def __init__(self, name: str, spec: CommandSpec, *, clock: Clock, kill_grace_s: float = 2.0) -> None:
        _check_argv(name, spec)
        self._name = name
        self._spec = spec
        # The deadline is real time (anyio.fail_at): a child process cannot run on a fake clock.
        self._clock = clock
        self._grace = kill_grace_s
        self._rules = tuple((_compile(name, i, r.pattern), r.error) for i, r in enumerate(spec.stderr_rules))
        self._procs: set[Process] = set()
        self._closed = False

    @property
    def name(self) -> str:
        """The provider's configured name."""
        return self._name

    def __repr__(self) -> str:
        # Never the spec: its env may hold secrets, and in arg mode argv holds prompts.
        return f"CommandAdapter({self._name!r}, executable={self._spec.argv[0]!r})"

    async def stream(
        self, request: ChatRequest, model_id: str, *, stream: bool = True
    ) -> AsyncGenerator[StreamEvent, None]:
        """Run the CLI once; yields its text, then one ``UsageEvent`` and one ``Finish``."""
        prompt = render_prompt(request)
        deadline = anyio.current_time() + self._spec.timeout_s
        proc = await self._spawn(prompt, model_id)
        self._procs.add(proc)
        run = _Run(proc, deadline)
        out: OutputReader = JsonLines(self._spec) if self._spec.output == "jsonl" else PlainText()
        texts: list[str] = []
        try:
            await run.start(prompt.encode() if self._spec.prompt_via == "stdin" else None)
            while True:
                chunk = await run.read()
                for text in out.feed(chunk) if chunk else out.close():
                    texts.append(text)
                    if stream:
                        yield TextDelta(text)
                if out.bad_line is not None:
                    detail = f"line {out.bad_line} of stdout is not JSON"
                    raise MidStreamError(
                        ErrorClass.SERVER_ERROR, self._name, partial="".join(texts), model=model_id, detail=detail
                    )
                if not chunk:
                    break
            code = await run.wait()
            if code != 0:
                kind = self._classify(code, run.stderr_text)
                raise self._failure(kind, model_id, texts, self._exit_detail(code, run))
        except TimeoutError as exc:
            detail = f"no answer within {self._spec.timeout_s:g}s"
            raise self._failure(ErrorClass.TIMEOUT, model_id, texts, detail) from exc
        finally:
            await self._reap(proc)
            self._procs.discard(proc)
        answer = "".join(texts)
        if not stream and answer:
            yield TextDelta(answer)
        yield UsageEvent(self._usage(request, out, answer))
        yield Finish("stop")

    async def probe(self) -> None:
        """Checks that the executable resolves (on the child's PATH); makes no model call."""
        path = self._spec.env.get("PATH", os.environ.get("PATH"))
        if shutil.which(self._spec.argv[0], path=path) is None:
            raise ProviderError(ErrorClass.CONNECT, self._name, detail=f"executable not found: {self._spec.argv[0]}")

    async def aclose(self) -> None:
        """Kills every process group still running; later calls fail."""
        self._closed = True
        for proc in list(self._procs):
            await self._reap(proc)

    async def _spawn(self, prompt: str, model_id: str) -> Process:
        if self._closed:
            raise ProviderError(ErrorClass.CANCELLED, self._name, model=model_id, detail="adapter is closed")
        values = {"model": model_id, "prompt": prompt}
        argv = [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in self._spec.argv]
        env = {**os.environ, **self._spec.env} if self._spec.env else None
        stdin = subprocess.PIPE if self._spec.prompt_via == "stdin" else subprocess.DEVNULL
        try:
            # Shielded: a cancellation is then taken inside the caller's try, which reaps the child.
            with anyio.CancelScope(shield=True):
                proc = await anyio.open_process(
                    argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
                )
        except ValueError as exc:  # a NUL byte in an argument
            raise ProviderError(ErrorClass.BAD_REQUEST, self._name, model=model_id, detail=str(exc)) from exc
        except OSError as exc:
            raise self._spawn_error(exc, model_id) from exc
        return proc

    def _spawn_error(self, exc: OSError, model_id: str) -> ProviderError:
        if exc.errno == errno.E2BIG:
            detail = 'prompt too long for an argument; use prompt_via = "stdin"'
            return ProviderError(ErrorClass.BAD_REQUEST, self._name, model=model_id, detail=detail)
        detail = f"cannot run {self._spec.argv[0]}: {exc.strerror or type(exc).__name__}"
        return ProviderError(ErrorClass.CONNECT, self._name, model=model_id, detail=detail)

    async def _reap(self, proc: Process) -> None:
        """SIGTERM to the group, SIGKILL after the grace, then reap; shielded from cancellation."""
        with anyio.move_on_after(self._grace + _REAP_LIMIT_S, shield=True):
            if proc.returncode is None:
                _signal_group(proc.pid, signal.SIGTERM)
                with anyio.move_on_after(self._grace):
                    await proc.wait()
            # Also when the CLI is gone: its children may still be alive in its group.
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.aclose()

    def _classify(self, code: int, stderr: str) -> ErrorClass:
        if self._closed and code < 0:
            return ErrorClass.CANCELLED
        if code in self._spec.exit_codes:
            return self._spec.exit_codes[code]
        return next((kind for regex, kind in self._rules if regex.search(stderr)), ErrorClass.SERVER_ERROR)

    def _exit_detail(self, code: int, run: _Run) -> str:
        status = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        tail = self._redact(run.stderr_text.strip()[-_STDERR_TAIL:])
        return f"{status}; stderr: {tail}" if tail else status

    def _redact(self, text: str) -> str:
        for value in self._spec.env.values():
            if len(value) >= _MIN_SECRET_LEN:
                text = text.replace(value, "****")
        return text

    def _failure(self, kind: ErrorClass, model_id: str, texts: list[str], detail: str) -> ProviderError:
        if texts:
            return MidStreamError(kind, self._name, partial="".join(texts), model=model_id, detail=detail)
        return ProviderError(kind, self._name, model=model_id, detail=detail)

    @staticmethod
    def _usage(request: ChatRequest, out: OutputReader, answer: str) -> Usage:
        # Counts the CLI reports win; a count it does not report is estimated.
        input_tokens = out.input_tokens if out.input_tokens is not None else estimate_input_tokens(request)
        output_tokens = out.output_tokens if out.output_tokens is not None else estimate_text_tokens(answer)
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens)


def _check_argv(name: str, spec: CommandSpec) -> None:
    key = f"providers.{name}.command.argv"  # the key path of policies._config
    if not spec.argv:
        raise ConfigError(key, "must name an executable")
    has_prompt = any("{prompt}" in arg for arg in spec.argv)
    if spec.prompt_via == "arg" and not has_prompt:
        raise ConfigError(key, 'prompt_via = "arg" needs a {prompt} placeholder')
    if spec.prompt_via == "stdin" and has_prompt:
        raise ConfigError(key, '{prompt} needs prompt_via = "arg"')


def _compile(name: str, index: int, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        key = f"providers.{name}.command.stderr_rules[{index}].pattern"
        raise ConfigError(key, f"not a regular expression: {exc}") from None
