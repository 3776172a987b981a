"""Shared helpers of the benchmarks: percentiles, the simulator in its own process, door configs.

Not a benchmark itself. The scripts import it as ``_common`` (their own folder is on ``sys.path``
when they run as ``python benchmarks/<name>.py``).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from interlock.adapters.simulator._server import ModelStats

# A simulated model that answers at once: no TTFT, no gap between tokens, a fixed answer length.
INSTANT_SIM_TOML = """\
seed = 1
keep_bodies = 0

[default]
ttft = {{ kind = "fixed", value = 0.0 }}
per_token = {{ kind = "fixed", value = 0.0 }}
output_tokens = {{ kind = "fixed", value = {tokens} }}
"""

_MODEL_TOML = """\
[models.{name}]
provider = "{provider}"
id = "{model_id}"
class = "{model_class}"
context_window = 128_000
max_output_tokens = 16_384
price = {{ input = 0.40, output = 1.60 }}
allow_floating = true  # a simulator id has no dated version
"""

_PROVIDER_TOML = """\
[providers.{name}]
kind = "openai_compatible"
base_url = "{base_url}"
max_concurrency = {concurrency}
"""


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile by nearest rank (a value that was observed); 0.0 with no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = math.ceil(q * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


def provider_toml(name: str, base_url: str, concurrency: int) -> str:
    """An OpenAI-compatible provider table (no key needed) at ``base_url`` (which ends in ``/v1``)."""
    return _PROVIDER_TOML.format(name=name, base_url=base_url, concurrency=concurrency)


def model_toml(name: str, provider: str, model_id: str, model_class: str = "fast") -> str:
    """A metered model table on ``provider``."""
    return _MODEL_TOML.format(name=name, provider=provider, model_id=model_id, model_class=model_class)


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    """A scratch directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as name:
        yield Path(name)


@contextlib.contextmanager
def simulator_process(config_toml: str, workdir: Path, timeout_s: float = 30.0) -> Iterator[str]:
    """Run ``python -m interlock.adapters.simulator._server`` on 127.0.0.1:<ephemeral>; yields its base URL.

    The process is terminated (then killed, if it lingers) when the block ends.
    """
    config = workdir / "simulator.toml"
    config.write_text(config_toml, encoding="utf-8")
    argv = [sys.executable, "-m", "interlock.adapters.simulator._server", "--host", "127.0.0.1", "--port", "0",
            "--config", str(config)]
    errors = workdir / "simulator.stderr"
    with errors.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        yield _read_url(proc, errors)
    finally:
        _stop(proc, timeout_s)


def _read_url(proc: subprocess.Popen[str], errors: Path) -> str:
    assert proc.stdout is not None
    marker = "listening on "
    for line in proc.stdout:  # the simulator prints three lines at start, then nothing
        if marker in line:
            return line.split(marker, 1)[1].strip()
    status = proc.wait()
    raise RuntimeError(f"the simulator exited ({status}) without printing its URL: {errors.read_text()[-2000:]}")


# A simulator process that also answers "stats" on stdin with ``Simulator.stats()`` as one JSON line.
_STATS_SIMULATOR = """\
import sys, anyio, msgspec
from interlock.adapters.simulator._server import Simulator, load_config

async def main() -> None:
    async with Simulator(load_config(sys.argv[1]), host="127.0.0.1", port=0) as sim:
        print(sim.url, flush=True)
        async with anyio.wrap_file(sys.stdin) as commands:
            async for line in commands:
                if line.strip() != "stats":
                    break
                print(msgspec.json.encode(sim.stats()).decode(), flush=True)

anyio.run(main)
"""


class SimulatorStats:
    """Ask a ``stats_simulator_process`` for its counters."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc

    def stats(self) -> ModelStats:
        """``Simulator.stats()`` of the process: every model's counters summed."""
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write("stats\n")
        self._proc.stdin.flush()
        return msgspec.json.decode(self._proc.stdout.readline(), type=ModelStats)


@contextlib.contextmanager
def stats_simulator_process(
    config_toml: str, workdir: Path, timeout_s: float = 30.0
) -> Iterator[tuple[str, SimulatorStats]]:
    """A ``Simulator`` in its own process on 127.0.0.1:<ephemeral>; yields its URL and a stats handle."""
    config = workdir / "simulator.toml"
    config.write_text(config_toml, encoding="utf-8")
    errors = workdir / "simulator.stderr"
    with errors.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _STATS_SIMULATOR, str(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
        )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the simulator exited ({proc.wait()}) without its URL: {errors.read_text()[-2000:]}")
        yield url, SimulatorStats(proc)
    finally:
        _stop(proc, timeout_s)


def _stop(proc: subprocess.Popen[str], timeout_s: float) -> None:
    if proc.stdin is not None:
        proc.stdin.close()  # the stats simulator ends at end of input
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
