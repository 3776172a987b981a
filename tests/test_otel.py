"""The OTel mirror, end to end: real OTLP/HTTP exporters posting to a real receiver on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from otlp_receiver import OtlpReceiver, attributes

from interlock._errors import ConfigError
from interlock._records import AttemptRecord, RequestRecord
from interlock.adapters._config_file import default_config
from interlock.adapters.telemetry._names import OtelNaming
from interlock.adapters.telemetry._otel import OtelMirror, RecordGrouper, layout, setup_from_env

TS = 1_700_000_000.25
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
NAMING = OtelNaming(
    providers={"sim_anthropic": "anthropic", "sim_openai": "openai"},
    models={"flagship_anthropic": "sim-flagship-1", "flagship_openai": "sim-flagship-2"},
)
WHO = {"tenant": "acme", "caller": "billing"}
ANTHROPIC = {"model_class": "flagship", "model": "flagship_anthropic", "provider": "sim_anthropic"}
OPENAI = {"model_class": "flagship", "model": "flagship_openai", "provider": "sim_openai"}

# r1: the primary was slow, a hedge on another lab won; the primary was cancelled.
LOSER = AttemptRecord(
    request_id="r1", attempt=1, ts=TS, task="summarize", **WHO, **ANTHROPIC,
    outcome="cancelled", error="cancelled", cancel_reason="hedge_lost",
)  # fmt: skip
WINNER = AttemptRecord(
    request_id="r1", attempt=2, ts=TS, task="summarize", **WHO, **OPENAI, outcome="ok",
    input_tokens=120, output_tokens=41, cache_read_tokens=64, cost_cents=0.05,
    ttft_ms=250.0, ttlt_ms=1250.0, finish_reason="stop", hedge=True,
)  # fmt: skip
R1 = RequestRecord(
    request_id="r1", ts=TS, task="summarize", **WHO, **OPENAI, outcome="ok",
    input_tokens=120, output_tokens=41, cache_read_tokens=64, cost_cents=0.05, ttft_ms=250.0, ttlt_ms=1250.0,
    degraded=True, degraded_reason="hedge_lost,slow_first_token", hedged=True, attempts=2,
)  # fmt: skip
# r2: rate limited, then the fallback failed too.
LIMITED = AttemptRecord(
    request_id="r2", attempt=1, ts=TS + 5, task="classify", **WHO, **ANTHROPIC,
    outcome="error", error="rate_limit", error_detail="429 slow down", status=429,
)  # fmt: skip
BROKEN = AttemptRecord(
    request_id="r2", attempt=2, ts=TS + 5, task="classify", **WHO, **OPENAI,
    outcome="error", error="server_error", error_detail="503 unavailable", status=503,
)  # fmt: skip
R2 = RequestRecord(
    request_id="r2", ts=TS + 5, task="classify", **WHO, outcome="error",
    error="server_error", error_detail="every candidate failed", attempts=2,
)  # fmt: skip
# r3: answered from the cache, no attempt at all.
R3 = RequestRecord(request_id="r3", ts=TS + 10, task="summarize", **WHO, **OPENAI, cache_hit=True)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A live OTLP/HTTP receiver on an ephemeral loopback port."""
    with OtlpReceiver() as rx:
        yield rx


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTEL_* variable from the outer environment leaks into a test."""
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def otel_env(clean_env: pytest.MonkeyPatch, receiver: OtlpReceiver) -> pytest.MonkeyPatch:
    """The standard env pointing OTLP at the receiver; only explicit flushes export."""
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    clean_env.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
    clean_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")
    return clean_env


@pytest.fixture
def exported(otel_env: pytest.MonkeyPatch, receiver: OtlpReceiver) -> OtlpReceiver:
    """The three requests and one breaker change, mirrored, flushed and received."""
    mirror = setup_from_env("interlock-test", naming=NAMING)
    assert mirror is not None
    try:
        mirror.record(R1, [WINNER, LOSER], traceparent=TRACEPARENT)
        mirror.observe_many([LIMITED, BROKEN, R2])  # as the ledger sees them: attempts first
        mirror.record(R3, [])
        mirror.breaker_transition("sim_anthropic", "closed", "open")
        assert mirror.force_flush(10_000)
    finally:
        mirror.shutdown()
    assert receiver.wait_for(lambda rx: len(rx.spans()) >= 6 and bool(rx.metrics))
    return receiver


def _span(rx: OtlpReceiver, request_id: str, attempt: int | None = None) -> Span:
    for span in rx.spans():
        attrs = attributes(span.attributes)
        if attrs["interlock.request_id"] == request_id and attrs.get("interlock.attempt") == attempt:
            return span
    raise AssertionError(f"no span for {request_id} attempt {attempt}")


def _points(metric: Metric) -> list[tuple[dict[str, Any], Any]]:
    """(attributes, data point) pairs of a histogram or a sum."""
    points = metric.histogram.data_points if metric.HasField("histogram") else metric.sum.data_points
    return [(attributes(p.attributes), p) for p in points]


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def test_request_span_continues_incoming_traceparent(exported: OtlpReceiver) -> None:
    """The request span joins the caller's trace as a child of the caller's span."""
    span = _span(exported, "r1")
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == PARENT_ID
    assert span.name == "chat summarize"
    assert span.kind == Span.SPAN_KIND_INTERNAL


def test_attempt_spans_are_children_of_their_request(exported: OtlpReceiver) -> None:
    """Each attempt is a CLIENT span named after its model id, under its own request's span."""
    for request_id, names in (("r1", ["chat sim-flagship-1", "chat sim-flagship-2"]), ("r2", None)):
        parent = _span(exported, request_id)
        children = [_span(exported, request_id, n) for n in (1, 2)]
        assert {c.parent_span_id for c in children} == {parent.span_id}
        assert {c.trace_id for c in children} == {parent.trace_id}
        assert all(c.kind == Span.SPAN_KIND_CLIENT for c in children)
        if names:
            assert [c.name for c in children] == names
    fresh = _span(exported, "r2")
    assert fresh.trace_id.hex() != TRACE_ID
    assert fresh.parent_span_id == b""  # no traceparent: a new root
    assert fresh.name == "chat classify"


def test_winning_attempt_carries_genai_attributes(exported: OtlpReceiver) -> None:
    """The winner's span has the GenAI names and values and the interlock facts of the attempt."""
    span = _span(exported, "r1", 2)
    attrs = attributes(span.attributes)
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "sim-flagship-2",
        "gen_ai.response.model": "sim-flagship-2",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 41,
        "gen_ai.usage.cache_read.input_tokens": 64,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.time_to_first_chunk": 0.25,
        "interlock.request_id": "r1",
        "interlock.task": "summarize",
        "interlock.tenant": "acme",
        "interlock.caller": "billing",
        "interlock.model": "flagship_openai",
        "interlock.model_class": "flagship",
        "interlock.provider": "sim_openai",
        "interlock.outcome": "ok",
        "interlock.attempt": 2,
        "interlock.hedge": True,
        "interlock.cache_hit": False,
        "interlock.cost_cents": 0.05,
        "interlock.ttft_ms": 250.0,
        "interlock.ttlt_ms": 1250.0,
    }
    assert span.status.code == Status.STATUS_CODE_UNSET


def test_cancelled_hedge_loser_is_not_an_error(exported: OtlpReceiver) -> None:
    """The loser says why it was cancelled, claims no usage, and its status is not ERROR."""
    attrs = attributes(_span(exported, "r1", 1).attributes)
    assert attrs["interlock.cancel_reason"] == "hedge_lost"
    assert attrs["interlock.outcome"] == "cancelled"
    assert attrs["interlock.hedge"] is False
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert "error.type" not in attrs
    assert "gen_ai.usage.input_tokens" not in attrs
    assert "gen_ai.response.model" not in attrs
    assert _span(exported, "r1", 1).status.code == Status.STATUS_CODE_UNSET


def test_request_span_carries_totals_and_degradation(exported: OtlpReceiver) -> None:
    """The request span names the winner, totals usage under interlock.*, and says it was degraded."""
    attrs = attributes(_span(exported, "r1").attributes)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.response.model"] == "sim-flagship-2"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["interlock.degraded"] is True
    assert attrs["interlock.degraded_reason"] == "hedge_lost,slow_first_token"
    assert attrs["interlock.hedged"] is True
    assert attrs["interlock.attempts"] == 2
    assert attrs["interlock.usage.input_tokens"] == 120
    assert attrs["interlock.usage.output_tokens"] == 41
    assert attrs["interlock.usage.cache_read.input_tokens"] == 64
    assert attrs["interlock.cost_cents"] == 0.05
    assert (attrs["interlock.ttft_ms"], attrs["interlock.ttlt_ms"]) == (250.0, 1250.0)
    assert "gen_ai.usage.input_tokens" not in attrs  # counted once, on the attempt


def test_failed_request_and_attempts_have_error_status(exported: OtlpReceiver) -> None:
    """Failures set error.type to the error class and the span status to ERROR with the detail."""
    request = _span(exported, "r2")
    assert request.status.code == Status.STATUS_CODE_ERROR
    assert request.status.message == "every candidate failed"
    assert attributes(request.attributes)["error.type"] == "server_error"
    assert attributes(request.attributes)["interlock.outcome"] == "error"
    limited = _span(exported, "r2", 1)
    assert limited.status.code == Status.STATUS_CODE_ERROR
    assert limited.status.message == "429 slow down"
    attrs = attributes(limited.attributes)
    assert (attrs["error.type"], attrs["http.response.status_code"]) == ("rate_limit", 429)
    assert attributes(_span(exported, "r2", 2).attributes)["error.type"] == "server_error"


def test_span_times_follow_the_records(exported: OtlpReceiver) -> None:
    """Spans start at the record's ts; the winner lasts its TTLT; the loser ends at the winner's first token."""
    request, loser, winner = _span(exported, "r1"), _span(exported, "r1", 1), _span(exported, "r1", 2)
    assert request.start_time_unix_nano == _ns(TS)
    assert winner.start_time_unix_nano == _ns(TS)
    assert winner.end_time_unix_nano - winner.start_time_unix_nano == 1_250_000_000
    assert loser.end_time_unix_nano == _ns(TS) + 250_000_000
    assert request.end_time_unix_nano == winner.end_time_unix_nano
    assert _span(exported, "r2").start_time_unix_nano == _ns(TS + 5)


def test_cache_hit_request_has_a_span_and_no_children(exported: OtlpReceiver) -> None:
    """A request served from the cache is one span marked as a cache hit."""
    span = _span(exported, "r3")
    assert attributes(span.attributes)["interlock.cache_hit"] is True
    assert not [s for s in exported.spans() if s.parent_span_id == span.span_id]


def test_resource_names_the_service(exported: OtlpReceiver) -> None:
    """The default service name is used when the environment names none."""
    assert exported.resource_attributes()["service.name"] == "interlock-test"


def test_genai_histograms_are_exported(exported: OtlpReceiver) -> None:
    """Duration, token usage and time to first chunk use the GenAI names, units and attributes."""
    metrics = exported.latest_metrics()
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    by_model = {(a["gen_ai.request.model"], a.get("error.type")): p for a, p in _points(duration)}
    assert by_model[("sim-flagship-2", None)].sum == pytest.approx(1.25)
    assert by_model[("sim-flagship-1", "rate_limit")].count == 1
    assert all(a["gen_ai.operation.name"] == "chat" for a, _ in _points(duration))
    tokens = {
        (a["gen_ai.token.type"], a["gen_ai.request.model"]): p.sum
        for a, p in _points(metrics["gen_ai.client.token.usage"])
    }
    assert tokens == {("input", "sim-flagship-2"): 120, ("output", "sim-flagship-2"): 41}
    (attrs, ttfc), *_ = _points(metrics["gen_ai.client.operation.time_to_first_chunk"])
    assert (attrs["gen_ai.provider.name"], ttfc.count, ttfc.sum) == ("openai", 1, pytest.approx(0.25))
    (_, tpot), *_ = _points(metrics["interlock.time_per_output_token"])
    assert tpot.sum == pytest.approx(1.0 / 40)


def test_interlock_counters_are_exported(exported: OtlpReceiver) -> None:
    """Requests, fallbacks, hedges, cache hits, breaker transitions and cost are counted."""
    metrics = exported.latest_metrics()

    def total(name: str) -> list[tuple[dict[str, Any], float]]:
        return [(a, p.as_int or p.as_double) for a, p in _points(metrics[name])]

    requests = sorted(
        (a["interlock.outcome"], a["interlock.degraded"], a.get("error.type"), v)
        for a, v in total("interlock.requests")
    )
    assert requests == [("error", False, "server_error", 1), ("ok", False, None, 1), ("ok", True, None, 1)]
    ((fallback, count),) = total("interlock.fallbacks")
    assert (fallback["gen_ai.request.model"], fallback["interlock.task"], count) == ("sim-flagship-2", "classify", 1)
    ((hedge, count),) = total("interlock.hedges")
    assert (hedge["interlock.outcome"], count) == ("ok", 1)
    assert total("interlock.cache_hits") == [({"interlock.task": "summarize"}, 1)]
    ((breaker, count),) = total("interlock.breaker.transitions")
    assert breaker == {
        "gen_ai.provider.name": "anthropic",
        "interlock.provider": "sim_anthropic",
        "interlock.breaker.from_state": "closed",
        "interlock.breaker.to_state": "open",
    }
    assert count == 1
    assert [v for _, v in total("interlock.cost")] == [pytest.approx(0.05)]


def test_setup_is_off_without_otel_env(clean_env: pytest.MonkeyPatch) -> None:
    """With no OTEL_* variable set there is no mirror at all."""
    assert setup_from_env() is None


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"},
        {"OTEL_TRACES_EXPORTER": "console"},
        {"OTEL_SERVICE_NAME": "svc", "OTEL_BSP_SCHEDULE_DELAY": "10"},
    ],
)
def test_setup_stays_off_unless_otlp_is_asked_for(clean_env: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """SDK disabled, exporters set to none or to a non-OTLP exporter, or no endpoint: no mirror."""
    for key, value in env.items():
        clean_env.setenv(key, value)
    assert setup_from_env() is None


def test_setup_rejects_a_protocol_other_than_http_protobuf(otel_env: pytest.MonkeyPatch) -> None:
    """Asking for OTLP over gRPC fails loudly instead of posting HTTP to a gRPC port."""
    otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError) as info:
        setup_from_env()
    assert info.value.key == "OTEL_EXPORTER_OTLP_PROTOCOL"


def test_setup_without_the_otlp_extra_says_how_to_get_it(otel_env: pytest.MonkeyPatch) -> None:
    """Asking for OTLP without the exporter installed is a ConfigError naming the extra."""
    otel_env.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match=r"interlock\[otlp\]"):
        setup_from_env()


def test_traces_only_when_metrics_exporter_is_none(otel_env: pytest.MonkeyPatch, receiver: OtlpReceiver) -> None:
    """OTEL_METRICS_EXPORTER=none keeps traces and sends no metrics; OTEL_SERVICE_NAME wins."""
    otel_env.setenv("OTEL_METRICS_EXPORTER", "none")
    otel_env.setenv("OTEL_SERVICE_NAME", "from-env")
    mirror = setup_from_env()
    assert mirror is not None
    try:
        mirror.record(R1, [LOSER, WINNER])
        assert mirror.force_flush(10_000)
    finally:
        mirror.shutdown()
    assert receiver.wait_for(lambda rx: len(rx.spans()) == 3)
    assert receiver.metrics == []
    assert set(receiver.paths) == {"/v1/traces"}
    assert receiver.resource_attributes()["service.name"] == "from-env"


def test_given_providers_are_flushed_but_not_shut_down(receiver: OtlpReceiver) -> None:
    """A mirror over the application's own providers leaves them running after shutdown."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")))
    exporter = OTLPMetricExporter(endpoint=f"{receiver.endpoint}/v1/metrics")
    meter_provider = MeterProvider([PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)])
    try:
        mirror = OtelMirror(tracer_provider, meter_provider)
        mirror.record(R3, [])
        mirror.shutdown()
        mirror.record(R2, [LIMITED, BROKEN])
        assert mirror.force_flush(10_000)
        assert receiver.wait_for(lambda rx: len(rx.spans()) == 4)
        names = {s.name for s in receiver.spans()}
        assert names == {"chat summarize", "chat classify", "chat flagship_anthropic", "chat flagship_openai"}
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()


def test_fallbacks_are_laid_end_to_end() -> None:
    """Without start offsets in the records, a fallback starts when the attempt before it ended."""
    first = AttemptRecord(
        request_id="r", attempt=1, ts=TS, task="t", **WHO, **ANTHROPIC, outcome="error", ttft_ms=100.0, ttlt_ms=None
    )
    second = AttemptRecord(
        request_id="r", attempt=2, ts=TS, task="t", **WHO, **OPENAI, outcome="ok", ttft_ms=50.0, ttlt_ms=400.0
    )
    request = RequestRecord(request_id="r", ts=TS, task="t", **WHO, **OPENAI, ttft_ms=50.0, ttlt_ms=400.0)
    (start, end), [one, two] = layout(request, [first, second])
    assert one == (start, start + 100_000_000)
    assert two == (one[1], one[1] + 400_000_000)
    assert end == two[1]


def test_grouper_pairs_attempts_with_their_request_and_stays_bounded() -> None:
    """Attempts wait for their request record; past the bound the oldest open request is dropped."""
    grouper = RecordGrouper(max_open=1)
    assert grouper.feed(LIMITED) is None
    assert grouper.feed(LOSER) is None  # opens r1 and drops r2's pending attempt
    assert grouper.feed(WINNER) is None
    assert grouper.feed(R1) == (R1, [LOSER, WINNER])
    assert grouper.feed(R2) == (R2, [])


def test_naming_from_config_maps_models_to_pinned_ids() -> None:
    """Model names map to their pinned ids; simulated providers keep their own names."""
    config = default_config()
    naming = OtelNaming.from_config(config)
    assert naming.models["flagship_anthropic"] == config.models["flagship_anthropic"].id
    assert naming.providers["sim_openai"] == "sim_openai"
