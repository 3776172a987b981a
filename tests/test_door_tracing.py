"""The door exports a request's spans over OTLP when OTEL_* asks for it, joining the caller's trace."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from otlp_receiver import OtlpReceiver

import interlock
from interlock.policies._config import parse_config

pytestmark = pytest.mark.anyio

CONFIG = """
[providers.a]
kind = "simulator"
format = "openai"
probe = { interval_s = 3600 }

[models.m]
provider = "a"
id = "sim-m-1"
class = "fast"
context_window = 100000
max_output_tokens = 1000
price = { input = 1.0, output = 2.0 }

[jobs.default]
chain = ["m"]
"""

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


async def test_request_spans_reach_the_otlp_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request through the door arrives at a loopback OTLP receiver as a request span with its attempt child."""
    for name in ("OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        traceparent = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"
        async with interlock.open(parse_config(CONFIG), ledger_path=tmp_path / "l.sqlite") as door:
            await door.ask("hello", metadata={"traceparent": traceparent})
        # Closing the door flushed the exporter: the spans are already at the receiver.
        assert await anyio.to_thread.run_sync(receiver.wait_for, lambda rx: len(rx.spans()) >= 2)
        spans = receiver.spans()
    by_parent = {s.parent_span_id.hex(): s for s in spans}
    request = by_parent[PARENT_SPAN]
    assert request.trace_id.hex() == PARENT_TRACE
    children = [s for s in spans if s.parent_span_id == request.span_id]
    assert len(children) == 1
    attempt = children[0]
    # The attempt span sits inside its request span, placed from when the attempt really ran.
    assert request.start_time_unix_nano <= attempt.start_time_unix_nano < attempt.end_time_unix_nano
    assert attempt.end_time_unix_nano <= request.end_time_unix_nano
    attrs = {a.key: a for a in children[0].attributes}
    assert attrs["gen_ai.request.model"].value.string_value == "sim-m-1"
