"""The OpenTelemetry mirror of the ledger: spans and metrics emitted after a request has ended.

The ledger side hands over finished requests (``record``) or its records as they come
(``observe`` / ``observe_many``); nothing here runs on the hot path, and ``setup_from_env``
returns ``None`` when telemetry is off, so a disabled mirror costs one ``is None`` test::

    chat {task}                 INTERNAL  the request as its run walked it: totals, degraded, hedged, outcome
    ├── chat {model id}         CLIENT    attempt 1, a GenAI inference span (gen_ai.* attributes)
    └── chat {model id}         CLIENT    attempt 2 (a fallback or a hedge), likewise

Spans carry explicit start and end times taken from the records, placed by ``layout``. Each
attempt record says when its attempt started and how long it ran (``start_ms`` from the
request's wall start ``ts``, and ``duration_ms``); when every attempt's record has both, they
place the spans exactly. Records without them (ledger rows older than those columns) keep only
each attempt's TTFT and TTLT, measured from that attempt's own start, so ``layout`` places them
by rule: fallbacks end to end from the request start, a hedge with the attempt it shadows, a
cancelled attempt of unknown length until the winner's first token (hedge lost) or the
request's end. Names and their sources: ``_names``.

``setup_from_env`` builds a mirror over the OTLP providers that the OTEL_* environment asks
for; ``_otlp`` reads the environment and says when telemetry is on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from interlock._records import AttemptRecord, LedgerRecord, RequestRecord
from interlock.adapters.telemetry import _names as n
from interlock.adapters.telemetry._names import OtelNaming
from interlock.adapters.telemetry._otlp import otlp_providers

__all__ = ["OtelMirror", "OtelNaming", "RecordGrouper", "layout", "setup_from_env"]

Attrs = dict[str, AttributeValue]
Interval = tuple[int, int]  # start and end, epoch nanoseconds

_PROPAGATOR = TraceContextTextMapPropagator()
_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000


class RecordGrouper:
    """Holds attempt records until their request's record arrives.

    A request's run (``actors/request/``) records its attempts before its request record, and a
    written batch may end between them. ``max_open`` bounds requests whose record never comes;
    the oldest are dropped first.
    """

    def __init__(self, max_open: int = 4096) -> None:
        self._open: dict[str, list[AttemptRecord]] = {}
        self._max_open = max_open

    def feed(self, record: LedgerRecord) -> tuple[RequestRecord, list[AttemptRecord]] | None:
        """Keep an attempt; for a request record, return it with its attempts."""
        if isinstance(record, AttemptRecord):
            self._open.setdefault(record.request_id, []).append(record)
            if len(self._open) > self._max_open:
                del self._open[next(iter(self._open))]
            return None
        if isinstance(record, RequestRecord):
            return record, self._open.pop(record.request_id, [])
        return None  # a begin or breaker record: the request's own record ends it, breakers are counted apart


def layout(request: RequestRecord, attempts: Sequence[AttemptRecord]) -> tuple[Interval, list[Interval]]:
    """Start and end of the request and of each attempt (in order), as the module docstring says."""
    start = _ns(request.ts)
    if attempts and all(a.start_ms is not None and a.duration_ms is not None for a in attempts):
        # Records that say when each attempt ran need no placing rule.
        exact = [(start + _ms_ns(a.start_ms), start + _ms_ns(a.start_ms) + _ms_ns(a.duration_ms)) for a in attempts]
        return (start, max([start, *(e for _, e in exact)])), exact
    cursor = shadow = start
    times: list[list[int]] = []
    for a in attempts:
        begin = shadow if a.hedge else cursor
        end = begin + _ms_ns(a.ttlt_ms if a.ttlt_ms is not None else a.ttft_ms)
        if not a.hedge:
            shadow, cursor = begin, end
        times.append([begin, end])
    finish = max([start, *(t[1] for t in times)])
    firsts = [t[0] + _ms_ns(a.ttft_ms) for a, t in zip(attempts, times, strict=True) if a.outcome == "ok"]
    stop = firsts[0] if firsts else finish
    for a, t in zip(attempts, times, strict=True):
        if a.outcome == "cancelled" and a.ttlt_ms is None:
            t[1] = max(t[1], stop)
    return (start, finish), [(b, e) for b, e in times]


class _Instruments:
    """The mirror's metric instruments, created once per meter."""

    def __init__(self, meter: metrics.Meter) -> None:
        hist, count = _histogram, meter.create_counter
        self.duration = hist(meter, n.CLIENT_OPERATION_DURATION, "s", "GenAI operation duration.", n.DURATION_BUCKETS)
        self.tokens = hist(meter, n.CLIENT_TOKEN_USAGE, "{token}", "Input and output tokens used.", n.TOKEN_BUCKETS)
        self.ttfc = hist(meter, n.CLIENT_TIME_TO_FIRST_CHUNK, "s", "Time to the first chunk.", n.DURATION_BUCKETS)
        self.tpot = hist(meter, n.TIME_PER_OUTPUT_TOKEN, "s", "Mean time per token after the first.", n.TPOT_BUCKETS)
        self.requests = count(n.REQUESTS, "{request}", "Requests served, by outcome.")
        self.fallbacks = count(n.FALLBACKS, "{attempt}", "Attempts started after an earlier one failed.")
        self.hedges = count(n.HEDGES, "{attempt}", "Hedge attempts started, by outcome.")
        self.cache_hits = count(n.CACHE_HITS, "{request}", "Requests answered from the cache.")
        self.breaker = count(n.BREAKER_TRANSITIONS, "{transition}", "Circuit breaker state changes.")
        self.cost = count(n.COST, "{cent}", "Cost in US cents at the price in force.")


def _histogram(meter: metrics.Meter, name: str, unit: str, text: str, buckets: Sequence[float]) -> metrics.Histogram:
    return meter.create_histogram(name, unit, text, explicit_bucket_boundaries_advisory=buckets)


class OtelMirror:
    """Mirrors ledger records into OpenTelemetry spans and metrics, after the fact.

    ``owned`` providers (those ``setup_from_env`` built) are shut down by ``shutdown``; providers
    passed in by an application are only flushed.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider,
        meter_provider: metrics.MeterProvider,
        *,
        naming: OtelNaming | None = None,
        owned: bool = False,
    ) -> None:
        self._tracer = tracer_provider.get_tracer("interlock")
        self._instruments = _Instruments(meter_provider.get_meter("interlock"))
        self._providers: tuple[Any, ...] = (tracer_provider, meter_provider)
        self._naming = naming or OtelNaming()
        self._owned = owned
        self._grouper = RecordGrouper()

    def observe(self, record: LedgerRecord, *, traceparent: str | None = None) -> None:
        """Feed every ledger record here: a request is mirrored once its own record arrives."""
        done = self._grouper.feed(record)
        if done is not None:
            self.record(*done, traceparent=traceparent)

    def observe_many(self, records: Iterable[LedgerRecord]) -> None:
        """``observe`` a batch, in order: the ledger's flushed batch, from a worker thread.

        The SDK costs a few hundred microseconds of CPU per request, so a batch belongs in
        ``anyio.to_thread.run_sync``, not on the event loop; one caller at a time.
        """
        for record in records:
            self.observe(record)

    def record(
        self, request: RequestRecord, attempts: Sequence[AttemptRecord], *, traceparent: str | None = None
    ) -> None:
        """Emit the request span, one child span per attempt, and the metrics of this request.

        ``traceparent`` (a W3C header value) makes the request span continue that trace.
        """
        ordered = sorted(attempts, key=lambda a: a.attempt)
        (start, end), times = layout(request, ordered)
        parent = Context() if traceparent is None else _PROPAGATOR.extract({"traceparent": traceparent}, Context())
        attrs, error = self._request_attrs(request, ordered)
        span = self._tracer.start_span(
            _request_name(request, self._model_id(request.model)),
            context=parent, kind=SpanKind.INTERNAL, attributes=attrs, start_time=start,
        )  # fmt: skip
        _set_error(span, error, request.error_detail)
        inside = trace.set_span_in_context(span, Context())
        for a, (begin, finish) in zip(ordered, times, strict=True):
            attrs, error = self._attempt_attrs(a)
            child = self._tracer.start_span(
                f"{_operation(a)} {self._model_id(a.model)}",
                context=inside, kind=SpanKind.CLIENT, attributes=attrs, start_time=begin,
            )  # fmt: skip
            _set_error(child, error, a.error_detail)
            child.end(end_time=finish)
        span.end(end_time=end)
        self._measure(request, ordered, times)

    def breaker_transition(self, provider: str, from_state: str, to_state: str) -> None:
        """Count one circuit-breaker state change of ``provider``."""
        where = {n.PROVIDER_NAME: self._provider_name(provider), n.PROVIDER: provider}
        self._instruments.breaker.add(1, where | {n.BREAKER_FROM: from_state, n.BREAKER_TO: to_state})

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything recorded so far; blocks (run it in a worker thread from async code)."""
        ok = True
        for provider in self._providers:
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                ok = bool(flush(timeout_millis)) and ok
        return ok

    def shutdown(self) -> None:
        """Flush, then stop the exporters' threads of owned providers; blocks like ``force_flush``."""
        self.force_flush()
        if self._owned:
            for provider in self._providers:
                stop = getattr(provider, "shutdown", None)
                if stop is not None:
                    stop()

    # -- attributes ------------------------------------------------------------------------------

    def _model_id(self, model: str) -> str:
        return self._naming.models.get(model, model)

    def _provider_name(self, provider: str) -> str:
        return self._naming.providers.get(provider, provider)

    def _request_attrs(self, r: RequestRecord, attempts: Sequence[AttemptRecord]) -> tuple[Attrs, str | None]:
        winner = next((a for a in attempts if a.outcome == "ok"), None)
        provider = r.provider or (attempts[-1].provider if attempts else "")
        error = None if r.outcome == "ok" else (r.error or n.ERROR_TYPE_OTHER)
        attrs = _common(r)
        attrs |= _present(
            {
                n.OPERATION_NAME: _operation(r),
                n.PROVIDER_NAME: self._provider_name(provider) if provider else None,
                n.RESPONSE_MODEL: self._model_id(r.model) if r.model and r.outcome == "ok" else None,
                n.RESPONSE_FINISH_REASONS: (winner.finish_reason,) if winner and winner.finish_reason else None,
                n.ERROR_TYPE: error,
                n.ATTEMPTS: r.attempts or len(attempts),
                n.DEGRADED: r.degraded,
                n.DEGRADED_REASON: r.degraded_reason,
                n.HEDGED: r.hedged,
                n.TOTAL_INPUT_TOKENS: r.input_tokens,
                n.TOTAL_OUTPUT_TOKENS: r.output_tokens,
                n.TOTAL_CACHE_READ_TOKENS: r.cache_read_tokens or None,
                n.TOTAL_CACHE_WRITE_TOKENS: r.cache_write_tokens or None,
            }
        )
        return attrs, error

    def _attempt_attrs(self, a: AttemptRecord) -> tuple[Attrs, str | None]:
        ok = a.outcome == "ok"
        usage = ok or a.input_tokens > 0 or a.output_tokens > 0  # zeros on a cut-off attempt mean "unknown"
        error = (a.error or n.ERROR_TYPE_OTHER) if a.outcome in ("error", "skipped") else None
        attrs = _common(a)
        attrs |= _present(
            {
                **self._gen_ai(a),
                n.USAGE_INPUT_TOKENS: a.input_tokens if usage else None,
                n.USAGE_OUTPUT_TOKENS: a.output_tokens if usage else None,
                n.USAGE_CACHE_READ_INPUT_TOKENS: a.cache_read_tokens or None,
                n.USAGE_CACHE_CREATION_INPUT_TOKENS: a.cache_write_tokens or None,
                n.RESPONSE_FINISH_REASONS: (a.finish_reason,) if a.finish_reason else None,
                n.RESPONSE_TIME_TO_FIRST_CHUNK: None if a.ttft_ms is None else a.ttft_ms / 1000.0,
                n.ERROR_TYPE: error,
                n.HTTP_RESPONSE_STATUS_CODE: a.status,
                n.ATTEMPT: a.attempt,
                n.HEDGE: a.hedge,
                n.CANCEL_REASON: a.cancel_reason,
            }
        )
        return attrs, error

    def _gen_ai(self, a: AttemptRecord) -> Attrs:
        """The GenAI attributes an attempt's spans and metrics share."""
        attrs: Attrs = {
            n.OPERATION_NAME: _operation(a),
            n.PROVIDER_NAME: self._provider_name(a.provider),
            n.REQUEST_MODEL: self._model_id(a.model),
        }
        if a.outcome == "ok":
            attrs[n.RESPONSE_MODEL] = self._model_id(a.model)  # interlock pins model ids
        return attrs

    # -- metrics ---------------------------------------------------------------------------------

    def _measure(self, r: RequestRecord, attempts: Sequence[AttemptRecord], times: Sequence[Interval]) -> None:
        m = self._instruments
        outcome: Attrs = {n.TASK: r.task, n.OUTCOME: r.outcome, n.DEGRADED: r.degraded}
        if r.outcome != "ok":
            outcome[n.ERROR_TYPE] = r.error or n.ERROR_TYPE_OTHER
        m.requests.add(1, outcome)
        if r.cache_hit:
            m.cache_hits.add(1, {n.TASK: r.task})
        primaries = 0
        for a, (begin, end) in zip(attempts, times, strict=True):
            self._measure_attempt(a, (end - begin) / _NS_PER_S)
            where: Attrs = {n.TASK: a.task, n.PROVIDER_NAME: self._provider_name(a.provider)}
            where[n.REQUEST_MODEL] = self._model_id(a.model)
            if a.hedge:
                m.hedges.add(1, {**where, n.OUTCOME: a.outcome})
            else:
                primaries += 1
                if primaries > 1:
                    m.fallbacks.add(1, where)
            if a.cost_cents:
                m.cost.add(a.cost_cents, where)

    def _measure_attempt(self, a: AttemptRecord, seconds: float) -> None:
        m = self._instruments
        attrs = self._gen_ai(a) | {n.TASK: a.task}
        if a.outcome in ("error", "skipped"):
            attrs[n.ERROR_TYPE] = a.error or n.ERROR_TYPE_OTHER
        if a.outcome != "skipped":  # a skipped attempt was never sent: no operation to time
            m.duration.record(seconds, attrs)
        if a.outcome == "ok" or a.input_tokens or a.output_tokens:
            m.tokens.record(a.input_tokens, attrs | {n.TOKEN_TYPE: n.TOKEN_TYPE_INPUT})
            m.tokens.record(a.output_tokens, attrs | {n.TOKEN_TYPE: n.TOKEN_TYPE_OUTPUT})
        if a.ttft_ms is not None:
            m.ttfc.record(a.ttft_ms / 1000.0, attrs)
        if a.outcome == "ok" and a.ttft_ms is not None and a.ttlt_ms is not None and a.output_tokens > 1:
            m.tpot.record((a.ttlt_ms - a.ttft_ms) / 1000.0 / (a.output_tokens - 1), attrs)


def _common(r: AttemptRecord | RequestRecord) -> Attrs:
    """The interlock attributes request and attempt records share."""
    return _present(
        {
            n.REQUEST_ID: r.request_id,
            n.TASK: r.task or None,
            n.TENANT: r.tenant,
            n.CALLER: r.caller,
            n.MODEL: r.model or None,
            n.MODEL_CLASS: r.model_class or None,
            n.PROVIDER: r.provider or None,
            n.OUTCOME: r.outcome,
            n.CACHE_HIT: r.cache_hit,
            n.VERDICT: r.verdict,
            n.COST_CENTS: r.cost_cents,
            n.TTFT_MS: r.ttft_ms,
            n.TTLT_MS: r.ttlt_ms,
        }
    )


def _present(values: Mapping[str, AttributeValue | None]) -> Attrs:
    """Drop absent values: OpenTelemetry rejects ``None`` attributes."""
    return {k: v for k, v in values.items() if v is not None}


def _request_name(request: RequestRecord, model_id: str) -> str:
    label = request.task or model_id
    return f"{_operation(request)} {label}" if label else _operation(request)


def _operation(record: RequestRecord | AttemptRecord) -> str:
    """The GenAI operation name of a record: ``embeddings`` for an embed, else ``chat``."""
    return n.OPERATION_EMBEDDINGS if record.operation == "embed" else n.OPERATION_CHAT


def _set_error(span: Span, error: str | None, detail: str) -> None:
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, detail or error))


def _ns(seconds: float) -> int:
    return round(seconds * _NS_PER_S)


def _ms_ns(ms: float | None) -> int:
    return 0 if ms is None else round(ms * _NS_PER_MS)


# -- set-up from the environment -------------------------------------------------------------------


def setup_from_env(service_name: str = "interlock", *, naming: OtelNaming | None = None) -> OtelMirror | None:
    """An ``OtelMirror`` exporting over OTLP/HTTP when the OTEL_* environment asks for it, else ``None``."""
    providers = otlp_providers(service_name)
    if providers is None:
        return None
    tracer_provider, meter_provider = providers
    return OtelMirror(tracer_provider, meter_provider, naming=naming, owned=True)
