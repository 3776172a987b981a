"""OTLP export set up from the OTEL_* environment: the SDK providers the mirror writes to.

``otlp_providers`` is off (``None``) unless the standard OTEL_* environment asks for OTLP:
``OTEL_SDK_DISABLED=true`` wins over everything; a signal (traces, metrics) is on when
``OTEL_{TRACES,METRICS}_EXPORTER`` lists ``otlp``, or when that is unset and
``OTEL_EXPORTER_OTLP_ENDPOINT`` or the signal's own ``..._{TRACES,METRICS}_ENDPOINT`` is set
(unlike the SDK's default, a library must not dial localhost:4318 unasked). The protocol is
http/protobuf; a ``..._PROTOCOL`` naming another is a ``ConfigError``, not a silent export to the
wrong port. The SDK and exporter read the rest (headers, timeout, compression, certificates,
intervals, sampler, service name, resource). The providers are the mirror's own, never global.
A signal that is off gets the API's no-op provider.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace

from interlock._errors import ConfigError
from interlock.adapters.telemetry import _names as n

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

__all__ = ["otlp_providers"]


def otlp_providers(service_name: str) -> tuple[trace.TracerProvider, metrics.MeterProvider] | None:
    """A tracer and a meter provider exporting over OTLP/HTTP, as the environment asks; else ``None``."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    signals = [s for s in ("TRACES", "METRICS") if _signal_on(env, s)]
    if not signals:
        return None
    for signal in signals:
        _check_protocol(env, signal)
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # the exporter is the optional `otlp` extra
        raise ConfigError("OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP export needs: pip install 'interlock[otlp]'") from exc
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = _resource(env, service_name)
    tracer_provider: trace.TracerProvider = trace.NoOpTracerProvider()
    meter_provider: metrics.MeterProvider = metrics.NoOpMeterProvider()
    if "TRACES" in signals:
        sdk_tracer = TracerProvider(resource=resource)
        sdk_tracer.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        tracer_provider = sdk_tracer
    if "METRICS" in signals:
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    return tracer_provider, meter_provider


def _signal_on(env: Mapping[str, str], signal: str) -> bool:
    chosen = env.get(f"OTEL_{signal}_EXPORTER", "").strip()
    if chosen:
        return "otlp" in {v.strip().lower() for v in chosen.split(",")}
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))


def _check_protocol(env: Mapping[str, str], signal: str) -> None:
    for key in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(key, "").strip()
        if value:
            if value != "http/protobuf":
                raise ConfigError(key, f"interlock exports OTLP over http/protobuf only, not {value!r}")
            return


def _resource(env: Mapping[str, str], service_name: str) -> Resource:
    from opentelemetry.sdk.resources import Resource

    # Resource.create lets its argument win over the environment: pass the default name only
    # when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES names the service.
    given = {part.split("=", 1)[0].strip() for part in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")}
    named = bool(env.get("OTEL_SERVICE_NAME")) or n.SERVICE_NAME in given
    return Resource.create({} if named else {n.SERVICE_NAME: service_name})
