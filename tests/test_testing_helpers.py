"""interlock.testing: the helpers users chaos-test their routing configs with."""

from __future__ import annotations

from pathlib import Path

import pytest

import interlock
import interlock.testing as testing
from interlock.adapters._config_file import default_config

pytestmark = pytest.mark.anyio


async def test_script_a_fault_and_read_the_ledger(tmp_path: Path) -> None:
    """A user scripts a rate limit on the embedded fleet and reads the fallback back from the ledger."""
    path = tmp_path / "l.sqlite"
    async with interlock.open(default_config(), ledger_path=path) as door:
        assert door.simulator is not None
        # A Retry-After too long for a same-provider retry: the request falls back at once.
        door.simulator.script("sim-fast-1", [testing.RateLimit(retry_after=30)])
        reply = await door.ask("hello", task="cheap_bulk", tenant="acme", metadata={"cache": "off"})
        assert reply.route is not None
        assert reply.route.degraded
    requests, attempts = await testing.read_ledger(path)
    assert len(requests) == 1
    assert attempts[0].error == "rate_limit"


def test_exports_resolve() -> None:
    """Every name interlock.testing exports resolves, and unknown names raise AttributeError."""
    for name in testing.__all__:
        assert getattr(testing, name) is not None
    with pytest.raises(AttributeError):
        testing.nothing  # noqa: B018


def test_fake_cli_is_the_argv_of_a_working_model_command() -> None:
    """``interlock.testing.FAKE_CLI`` runs the shipped fake model CLI with this interpreter."""
    import subprocess

    argv = [*testing.FAKE_CLI, "--model", "m"]
    done = subprocess.run(argv, input="hello there", capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0
    assert done.stdout == "m: hello there"
