"""Child Python processes for the race and crash tests: start one, read its lines with a deadline, talk to it.

The parent stays on its event loop while children run (``anyio.open_process``), so a loopback
server in the test process keeps answering them. Every read has a deadline; a child still running
when its block ends is killed and reaped.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

HERE = Path(__file__).resolve().parent


class Child:
    """One running child: ``line()`` reads its next stdout line, ``send()`` writes one to its stdin."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._out = BufferedByteReceiveStream(process.stdout)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def line(self, timeout: float = 30.0) -> str:
        """The next line the child prints (without its newline); its stderr is the error if it ends first."""
        try:
            with anyio.fail_after(timeout):
                return (await self._out.receive_until(b"\n", 1 << 20)).decode()
        except (anyio.EndOfStream, anyio.IncompleteRead):
            raise AssertionError(f"child {self.pid} ended without a line: {await self.stderr()}") from None

    async def send(self, text: str) -> None:
        """Write ``text`` and a newline to the child's stdin."""
        assert self.process.stdin is not None
        await self.process.stdin.send(text.encode() + b"\n")

    async def stderr(self) -> str:
        """Whatever the child wrote to stderr, once it has ended."""
        assert self.process.stderr is not None
        with anyio.fail_after(30):
            await self.process.wait()
            chunks = [chunk async for chunk in self.process.stderr]
        return b"".join(chunks).decode(errors="replace")

    async def wait(self, timeout: float = 30.0) -> int:
        """The child's exit code, waiting at most ``timeout`` seconds."""
        with anyio.fail_after(timeout):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def child(script: str, *args: str) -> AsyncIterator[Child]:
    """``python tests/<script> args...`` with piped stdio; killed and reaped if still running at exit."""
    process = await anyio.open_process(
        [sys.executable, str(HERE / script), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield Child(process)
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.aclose()
