"""A small real OTLP/HTTP receiver on 127.0.0.1 for tests: decodes and keeps what exporters send.

It accepts ``POST /v1/traces`` and ``POST /v1/metrics`` with protobuf bodies (gzip or deflate
when ``Content-Encoding`` says so), answers with the protobuf success response, and keeps the
decoded export requests. The server runs in a thread because the exporters are synchronous: a
test's ``force_flush`` blocks until the POST has been answered, so the data is here when it returns.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class OtlpReceiver:
    """``with OtlpReceiver() as rx:`` listens on an ephemeral port; ``rx.endpoint`` is its base URL."""

    def __init__(self) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.paths: list[str] = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="otlp-receiver", daemon=True
        )

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the base URL (OTEL_EXPORTER_OTLP_ENDPOINT form)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def keep(self, path: str, body: bytes) -> bytes | None:
        """Decode one export request; the reply body, or None for an unknown path."""
        with self._changed:
            if path == "/v1/traces":
                self.traces.append(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
            elif path == "/v1/metrics":
                self.metrics.append(ExportMetricsServiceRequest.FromString(body))
                reply = ExportMetricsServiceResponse().SerializeToString()
            else:
                return None
            self.paths.append(path)
            self._changed.notify_all()
            return reply

    def wait_for(self, condition: Callable[[OtlpReceiver], bool], timeout: float = 10.0) -> bool:
        """Block until ``condition(self)`` holds or ``timeout`` passes; whether it holds."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(self), timeout=timeout)

    def spans(self) -> list[Span]:
        """Every span received so far, in arrival order."""
        return [s for req in self.traces for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]

    def resource_attributes(self) -> dict[str, Any]:
        """Attributes of the first resource that sent spans."""
        return attributes(self.traces[0].resource_spans[0].resource.attributes)

    def metric_list(self) -> Iterator[Metric]:
        """Every metric of every export, in arrival order (cumulative: the last one is the latest)."""
        for req in self.metrics:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    yield from sm.metrics

    def latest_metrics(self) -> dict[str, Metric]:
        """Each metric name with its most recent export."""
        return {m.name: m for m in self.metric_list()}


def attributes(kvs: Any) -> dict[str, Any]:
    """A protobuf ``KeyValue`` list as a plain dict (arrays become tuples)."""
    return {kv.key: _value(kv.value) for kv in kvs}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, kind) if kind else None


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_error(415, "expected application/x-protobuf")
                return
            reply = receiver.keep(self.path, body)
            if reply is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler
