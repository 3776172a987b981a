"""The README's client snippets run as written against a real ``interlock serve``.

The README shows one snippet per client family (the OpenAI SDK for chat, responses and
embeddings, the Anthropic SDK, the OpenAI Agents SDK). This test takes that code block out of
README.md, points it at a real ``interlock serve`` on the embedded default (a subprocess on
127.0.0.1, port 0) instead of port 4000, and runs it in a process of its own: if the README and
main drift apart, this fails.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import anyio
import pytest

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def client_snippet() -> str:
    """The README's Python block that talks to the gateway (the one that imports ``agents``)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    (snippet,) = [b for b in blocks if "from agents import" in b]
    return snippet


def test_the_snippet_names_every_client_family() -> None:
    snippet = client_snippet()
    for call in ("chat.completions.create", "responses.create", "embeddings.create", "messages.create", "Runner."):
        assert call in snippet


async def test_readme_client_snippet_runs_against_interlock_serve(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "interlock.actors.cli._serve", "--port", "0", "--ledger", str(tmp_path / "s.sqlite")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    async with await anyio.open_process(argv, env=env, cwd=tmp_path) as server:
        assert server.stderr is not None
        output = b""
        with anyio.fail_after(30):
            while b"listening on " not in output or b"\n" not in output.split(b"listening on ")[1]:
                output += await server.stderr.receive()
        url = output.decode().split("listening on ")[1].split(";")[0]
        script = tmp_path / "snippet.py"
        code = client_snippet().replace("http://127.0.0.1:4000", url)
        script.write_text(code + "\nprint('SNIPPET-OK', reply.choices[0].message.content is not None, "
                          "answer.status, len(vectors.data), message.stop_reason)\n")
        client_env = {**env, "OPENAI_AGENTS_DISABLE_TRACING": "1"}
        with anyio.fail_after(120):
            done = await anyio.run_process([sys.executable, str(script)], env=client_env, cwd=tmp_path, check=False)
        server.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await server.wait()
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    final_output, marker = out.strip().rsplit("\n", 1)
    assert final_output.strip()  # the agent loop ended with a final output, printed by the snippet
    assert marker == "SNIPPET-OK True completed 2 end_turn"
