"""The gateway's errors: one table from an error's kind to its HTTP status, error body and retry hints.

``FAILURES`` is the single source. ``http_failure`` answers every ``InterlockError`` from it, the
gateway's own refusals (401, 413, an unsupported parameter) are rows of it too, and the tables
in README.md and docs/errors.md are its rendering (``error_table``; a test holds them equal).

Statuses follow what clients do with them: the official SDKs retry 408, 409, 429 and 5xx unless
the ``x-should-retry`` header says otherwise, and wait ``retry-after-ms`` / ``Retry-After`` when
given (a wait above two minutes means "do not retry"). So every answer carries ``x-should-retry``,
``false`` wherever sending the same request again cannot help (a bad key upstream, an empty
quota or budget, a policy that refuses the request), and a retryable one carries the retry hint
its causes gave. The request's fault is 4xx, the fleet's 5xx; a rate limit, ours or upstream's,
is 429.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import msgspec

from interlock._errors import (
    AdmissionRejected,
    ChainExhausted,
    ErrorClass,
    InterlockError,
    PolicyRefused,
    ProviderError,
    RequestError,
)
from interlock.adapters.providers.openai._server_wire import ErrorBody, ErrorOut


class Failure(NamedTuple):
    """How the gateway answers one kind of error: status, OpenAI's ``type`` and ``code``, retry."""

    kind: str  # an ``ErrorClass`` value, or a refusal of the gateway's own
    status: int
    type: str  # OpenAI's error type
    code: str
    retryable: bool  # sent as ``x-should-retry``; only a retryable answer carries a retry hint
    when: str  # what it means, for the docs


_INVALID = "invalid_request_error"
_UPSTREAM = "upstream_error"
_UNSUPPORTED = "a parameter interlock cannot honour is set; `param` names it"
_TOO_LONG = "the input does not fit: a provider said so, or no candidate's window holds it"
_POLICY = "a routing rule leaves no model allowed (PII, allow-list, capability); `param` names the rule"
_RATE_LIMITED = "rate limited upstream, or the provider is paused after a 429"
_NO_CAPACITY = "no capacity: the provider is overloaded, its breaker open, or no slot is free"
FAILURES: tuple[Failure, ...] = (
    Failure("missing_api_key", 401, _INVALID, "missing_api_key", False, "no bearer key, and the gateway has keys"),
    Failure("invalid_api_key", 401, _INVALID, "invalid_api_key", False, "a bearer key the gateway does not know"),
    Failure("request_too_large", 413, _INVALID, "request_too_large", False, "the body is over the size limit"),
    Failure("request_error", 400, _INVALID, "invalid_value", False, "a malformed request; `param` names the field"),
    Failure("model_not_found", 404, _INVALID, "model_not_found", False, "`model` names no job or model"),
    Failure("unsupported_parameter", 400, _INVALID, "unsupported_parameter", False, _UNSUPPORTED),
    Failure("bad_request", 400, _INVALID, "bad_request", False, "the provider refused the request as malformed"),
    Failure("context_length", 400, _INVALID, "context_length_exceeded", False, _TOO_LONG),
    Failure("content_policy", 400, _INVALID, "content_policy_violation", False, "the provider refused the prompt"),
    Failure("content_filter", 400, _INVALID, "content_filter", False, "the provider's filter stopped the output"),
    Failure("policy_refusal", 403, "permission_error", "policy_refused", False, _POLICY),
    Failure("rejected", 422, "verification_error", "answers_rejected", False, "the verifier rejected every answer"),
    Failure("budget", 429, "insufficient_quota", "budget_exceeded", False, "a configured budget has no room left"),
    Failure("quota", 429, "insufficient_quota", "insufficient_quota", False, "the provider account is out of credit"),
    Failure("rate_limit", 429, "rate_limit_error", "rate_limit_exceeded", True, _RATE_LIMITED),
    Failure("auth", 502, _UPSTREAM, "upstream_auth_failed", False, "the provider refused interlock's own key"),
    Failure("server_error", 502, _UPSTREAM, "upstream_error", True, "the provider failed (a 5xx, a broken stream)"),
    Failure("connect", 502, _UPSTREAM, "upstream_unreachable", True, "the provider could not be reached"),
    Failure("overloaded", 503, "server_error", "overloaded", True, _NO_CAPACITY),
    Failure("chain_exhausted", 503, "server_error", "chain_exhausted", True, "every candidate failed, mixed causes"),
    Failure("interrupted", 503, "server_error", "interrupted", True, "the process ended while the request was open"),
    Failure("timeout", 504, "timeout_error", "timeout", True, "a deadline passed (the job's, or the provider's)"),
    Failure("cancelled", 499, _INVALID, "cancelled", False, "the client went away (nobody reads it; the log does)"),
    Failure("internal", 500, "server_error", "internal", True, "a bug in interlock"),
)
_BY_KIND = {row.kind: row for row in FAILURES}
_LOOKUP_FIELDS = frozenset({"task", "model", "model_class"})
_REQUEST_FAULT = range(400, 429)  # the request itself is at fault: asking elsewhere would not help


class HttpFailure(msgspec.Struct, frozen=True):
    """An error as the gateway answers it: status, OpenAI's error body, and the retry hints.

    ``retry_after`` is in seconds; ``should_retry`` is sent as ``x-should-retry`` unless None.
    """

    status: int
    body: ErrorOut
    retry_after: float | None = None
    should_retry: bool | None = None

    def headers(self) -> dict[str, str]:
        """``x-should-retry``, and the retry hint as ``Retry-After`` (whole seconds) and ``retry-after-ms``."""
        out: dict[str, str] = {}
        if self.should_retry is not None:
            out["x-should-retry"] = "true" if self.should_retry else "false"
        if self.retry_after is not None:
            out["retry-after"] = str(max(1, math.ceil(self.retry_after)))
            out["retry-after-ms"] = str(max(0, round(self.retry_after * 1000)))
        return out


def failure(kind: str, message: str, *, param: str | None = None, retry_after: float | None = None) -> HttpFailure:
    """The answer for a row of ``FAILURES`` (the gateway's own refusals name theirs directly)."""
    row = _BY_KIND[kind]
    body = ErrorOut(ErrorBody(message=message, type=row.type, param=param, code=row.code))
    return HttpFailure(row.status, body, retry_after if row.retryable else None, row.retryable)


def routing_miss(status: int, message: str) -> HttpFailure:
    """A path or method the gateway does not serve (404, 405): HTTP's own answer, in OpenAI's shape."""
    kind = _INVALID if status < 500 else "server_error"
    return HttpFailure(status, ErrorOut(ErrorBody(message=message, type=kind)))


def http_failure(exc: InterlockError) -> HttpFailure:
    """The answer for ``exc``: its row of ``FAILURES``, the field or rule as ``param``, its retry hint."""
    kind, param = failure_kind(exc)
    return failure(kind, str(exc), param=param, retry_after=_retry_after(exc))


def failure_kind(exc: InterlockError) -> tuple[str, str | None]:
    """The row of ``FAILURES`` that answers ``exc``, and what ``param`` names (a field, a rule)."""
    if isinstance(exc, RequestError):
        if exc.field in _LOOKUP_FIELDS and exc.problem.startswith("unknown"):
            return "model_not_found", exc.field
        return "request_error", exc.field
    if isinstance(exc, PolicyRefused):
        # No candidate can hold the input: to the client that is OpenAI's context length error.
        return ("context_length", "messages") if exc.rule == "context_window" else ("policy_refusal", exc.rule)
    if isinstance(exc, AdmissionRejected):
        # A provider cools down only after a 429: the pause is that rate limit, with its wait.
        return ("rate_limit" if exc.reason == "cooling_down" else "overloaded"), None
    if isinstance(exc, ChainExhausted):
        return _chain_kind(exc)
    kind = str(exc.kind)
    return (kind if kind in _BY_KIND else "internal"), None


def _chain_kind(exc: ChainExhausted) -> tuple[str, str | None]:
    """A chain answers as its causes when they agree, as the last when retrying cannot help, else 503."""
    if not exc.errors:
        return "chain_exhausted", None
    causes = [failure_kind(err) for _, err in exc.errors]
    last = causes[-1]
    if len({kind for kind, _ in causes}) == 1:
        return last
    if _BY_KIND[last[0]].status in _REQUEST_FAULT or not any(_BY_KIND[k].retryable for k, _ in causes):
        return last
    return "chain_exhausted", None


# The wait suggested for an ``overloaded`` failure that carries no hint of its own (a shared
# state store that is down): the rails' own refusals for that outage ask for the same second.
_OVERLOADED_RETRY_S = 1.0


def _retry_after(exc: InterlockError) -> float | None:
    if isinstance(exc, ProviderError | AdmissionRejected | ChainExhausted):
        return exc.retry_after
    if exc.kind is ErrorClass.OVERLOADED:
        return _OVERLOADED_RETRY_S
    return None


def error_table() -> str:
    """``FAILURES`` as the Markdown table README.md and docs/errors.md show."""
    lines = [
        "| kind | status | `type` | `code` | `x-should-retry` | `Retry-After` | when |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in FAILURES:
        retry, hint = ("true", "when known") if row.retryable else ("false", "never")
        lines.append(f"| `{row.kind}` | {row.status} | `{row.type}` | `{row.code}` | {retry} | {hint} | {row.when} |")
    return "\n".join(lines) + "\n"
