"""The gateway's errors: the error tree -> an HTTP status, OpenAI's error body and retry hints.

The request's fault is 4xx, the fleet's 5xx. Two hints tell a client whether to come back:
``retry_after`` (seconds, the ``Retry-After`` header) when some provider said when, and
``should_retry`` (the ``x-should-retry`` header, which OpenAI's SDKs obey over their own rule)
for the kinds where the status alone would mislead: a 429 from a budget will not clear by
retrying soon, and an interrupted request may well succeed when sent again.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from interlock._errors import (
    AdmissionRejected,
    ChainExhausted,
    ErrorClass,
    InterlockError,
    ProviderError,
    RequestError,
)
from interlock.adapters.providers.openai._server_wire import ErrorBody, ErrorOut


class HttpFailure(msgspec.Struct, frozen=True):
    """An error as the gateway answers it: status, OpenAI's error body, and the retry hints.

    ``retry_after`` is in seconds; ``should_retry`` is sent as ``x-should-retry`` unless None.
    """

    status: int
    body: ErrorOut
    retry_after: float | None = None
    should_retry: bool | None = None


class _Answer(NamedTuple):
    status: int
    type: str  # OpenAI's error type
    code: str | None = None  # None: the kind itself
    should_retry: bool | None = None


_INVALID = "invalid_request_error"
_BY_KIND: dict[ErrorClass, _Answer] = {
    ErrorClass.BAD_REQUEST: _Answer(400, _INVALID),
    ErrorClass.CONTEXT_LENGTH: _Answer(400, _INVALID),
    ErrorClass.CONTENT_POLICY: _Answer(400, _INVALID),
    ErrorClass.CONTENT_FILTER: _Answer(400, _INVALID),
    ErrorClass.POLICY_REFUSAL: _Answer(400, _INVALID, should_retry=False),  # our rules refuse it again
    ErrorClass.RATE_LIMIT: _Answer(429, "rate_limit_error"),
    # The upstream account is out of credit: retrying soon cannot succeed.
    ErrorClass.QUOTA: _Answer(429, "insufficient_quota", should_retry=False),
    # A budget is ours, not the provider's quota: it has no room now and will not soon.
    ErrorClass.BUDGET: _Answer(429, "insufficient_quota", "budget_exceeded", should_retry=False),
    ErrorClass.OVERLOADED: _Answer(503, "server_error"),
    ErrorClass.INTERRUPTED: _Answer(503, "server_error", should_retry=True),  # the process ended, not the request
    ErrorClass.AUTH: _Answer(502, "upstream_error"),  # the provider refused *our* key: not the client's fault
    ErrorClass.TIMEOUT: _Answer(504, "timeout_error"),
}
_INTERNAL = _Answer(500, "server_error")
_CLIENT_KINDS = frozenset(k for k, answer in _BY_KIND.items() if answer.status == 400)
_LOOKUP_FIELDS = frozenset({"task", "model", "model_class"})


def failure(status: int, message: str, *, kind: str, param: str | None = None, code: str | None = None) -> HttpFailure:
    """An ``HttpFailure`` built by hand (401, 404, 413 ... raised by the gateway itself)."""
    return HttpFailure(status, ErrorOut(ErrorBody(message=message, type=kind, param=param, code=code)))


def http_failure(exc: InterlockError) -> HttpFailure:
    """Map the error tree to HTTP: the request's fault is 4xx, the fleet's 5xx; 429 asks to come back."""
    if isinstance(exc, RequestError):
        if exc.field in _LOOKUP_FIELDS and exc.problem.startswith("unknown"):
            return failure(404, str(exc), kind=_INVALID, param=exc.field, code="model_not_found")
        return failure(400, str(exc), kind=_INVALID, param=exc.field, code="invalid_value")
    if isinstance(exc, ChainExhausted):
        cause = exc.errors[-1][1] if exc.errors else None
        if cause is not None and (isinstance(cause, RequestError) or cause.kind in _CLIENT_KINDS | {ErrorClass.AUTH}):
            return http_failure(cause)
        retry = min((r for r in (_retry_after(e) for _, e in exc.errors) if r is not None), default=None)
        body = ErrorBody(message=str(exc), type="server_error", code="chain_exhausted")
        return HttpFailure(503, ErrorOut(body), retry)
    if isinstance(exc, AdmissionRejected):
        body = ErrorBody(message=str(exc), type="server_error", code=exc.reason)
        return HttpFailure(503, ErrorOut(body), exc.retry_after)
    answer = _BY_KIND.get(exc.kind, _INTERNAL)
    body = ErrorBody(message=str(exc), type=answer.type, code=answer.code or str(exc.kind))
    return HttpFailure(answer.status, ErrorOut(body), _retry_after(exc), answer.should_retry)


def _retry_after(exc: InterlockError) -> float | None:
    if isinstance(exc, ProviderError | AdmissionRejected):
        return exc.retry_after
    return None
