"""The error tree of interlock: one root, a stable ``kind``, structured fields.

::

    InterlockError                      .kind: ErrorClass
    ├── ConfigError                     a config key path and what was expected
    ├── RequestError                    a request field and what was wrong
    ├── ActorStopped                    the actor is gone (stopped, crashed, shutting down)
    ├── AskTimeout                      no reply within the ask's timeout
    ├── MailboxFull                     tell_nowait found the mailbox full
    ├── ConsumerGone                    the reader of a stream went away (client gone, hedge lost)
    ├── SupervisorEscalation            restart intensity exceeded
    ├── ProviderError                   provider, model, status, retry_after
    │   └── MidStreamError              ...plus the partial output received so far
    ├── AdmissionRejected               breaker open, cooling down, unhealthy, no slot
    ├── BudgetExceeded                  a budget, its limit and its spend
    ├── PolicyRefused                   a routing rule leaves no model allowed; names the rule
    ├── AnswersRejected                 the verifier rejected every answer; holds the last one
    ├── DeadlineExceeded                the request's own deadline passed
    └── ChainExhausted                  every candidate failed; holds each attempt's error

Foreign exceptions are translated at one seam per adapter (``raise X(...) from exc``);
nothing above the adapters ever sees an httpx2, aiohttp or OS error.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from interlock._types import Usage


class ErrorClass(enum.StrEnum):
    """The stable classification of every failure; the failover rules (``interlock.policies._failover``) key on it."""

    RATE_LIMIT = "rate_limit"
    QUOTA = "quota"  # the provider account has no credit or quota left (OpenAI's insufficient_quota)
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECT = "connect"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"  # output stopped by the provider's filter
    CONTENT_POLICY = "content_policy"  # request refused on policy grounds
    BUDGET = "budget"  # a configured budget has no room: ours, not the provider's quota
    POLICY_REFUSAL = "policy_refusal"  # our routing rules leave no model allowed to take the request
    REJECTED = "rejected"  # the job's verifier rejected every answer
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the process ended (a crash) while the request was open
    INTERNAL = "internal"


class InterlockError(Exception):
    """Root of every error interlock raises; ``kind`` is stable and machine-readable."""

    kind: ErrorClass = ErrorClass.INTERNAL

    def __init__(self, message: str, *, kind: ErrorClass | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


@final
class ConfigError(InterlockError):
    """A configuration value is missing or malformed; ``key`` is its dotted path."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config {key}: {problem}", kind=ErrorClass.BAD_REQUEST)
        self.key = key
        self.problem = problem


@final
class RequestError(InterlockError):
    """A request is malformed; ``field`` names the offending request field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"request field {field}: {problem}", kind=ErrorClass.BAD_REQUEST)
        self.field = field
        self.problem = problem


@final
class ActorStopped(InterlockError):
    """The target actor is stopped, crashed or shutting down; ``reason`` says which."""

    def __init__(self, actor: str, reason: str = "stopped") -> None:
        super().__init__(f"actor {actor} is {reason}", kind=ErrorClass.INTERNAL)
        self.actor = actor
        self.reason = reason


@final
class AskTimeout(InterlockError):
    """An ask got no reply within its timeout; a late reply is discarded."""

    def __init__(self, actor: str, timeout: float) -> None:
        super().__init__(f"ask to {actor} timed out after {timeout:g}s", kind=ErrorClass.TIMEOUT)
        self.actor = actor
        self.timeout = timeout


@final
class MailboxFull(InterlockError):
    """``tell_nowait`` found the mailbox full; ``tell`` would have waited."""

    def __init__(self, actor: str, capacity: float) -> None:
        super().__init__(f"mailbox of {actor} is full ({capacity:g} messages)", kind=ErrorClass.OVERLOADED)
        self.actor = actor
        self.capacity = capacity


@final
class ConsumerGone(InterlockError):
    """The reader of an event stream went away; the writer should stop and clean up."""

    def __init__(self, reason: str = "consumer closed the stream") -> None:
        super().__init__(reason, kind=ErrorClass.CANCELLED)
        self.reason = reason


@final
class SupervisorEscalation(InterlockError):
    """A supervisor exceeded its restart intensity and gave up; its parent decides next."""

    def __init__(self, supervisor: str, restarts: int, period: float, last: BaseException | None) -> None:
        super().__init__(
            f"supervisor {supervisor}: more than {restarts} restarts in {period:g}s; escalating",
            kind=ErrorClass.INTERNAL,
        )
        self.supervisor = supervisor
        self.last = last


class ProviderError(InterlockError):
    """A provider call failed; ``kind`` is the class, with provider, model, status and retry hint.

    ``usage`` is the usage the provider reported before it failed (a mid-stream error event after
    a usage chunk, a blocked prompt that still counts its input), None if it reported none: it is
    recorded and billed like any other.
    """

    def __init__(
        self,
        kind: ErrorClass,
        provider: str,
        *,
        model: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        detail: str = "",
        usage: Usage | None = None,
    ) -> None:
        where = f"{provider}/{model}" if model else provider
        status_text = f" (status {status})" if status is not None else ""
        tail = f": {detail}" if detail else ""
        super().__init__(f"{where}: {kind}{status_text}{tail}", kind=kind)
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after
        self.detail = detail
        self.usage = usage


@final
class MidStreamError(ProviderError):
    """A stream broke after it started; ``partial`` holds the text received before the break."""

    def __init__(
        self,
        kind: ErrorClass,
        provider: str,
        *,
        partial: str,
        model: str | None = None,
        status: int | None = None,
        detail: str = "",
        usage: Usage | None = None,
    ) -> None:
        super().__init__(kind, provider, model=model, status=status, detail=detail, usage=usage)
        self.partial = partial


@final
class AdmissionRejected(InterlockError):
    """A provider refused a call at once; ``reason`` is breaker_open, cooling_down, unhealthy or no_slot."""

    def __init__(self, provider: str, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{provider}: not admitted ({reason})", kind=ErrorClass.OVERLOADED)
        self.provider = provider
        self.reason = reason
        self.retry_after = retry_after


@final
class BudgetExceeded(InterlockError):
    """A budget would be exceeded; names the budget, its limit and what is already spent."""

    def __init__(self, budget: str, limit: float, spent: float, unit: str = "cents") -> None:
        super().__init__(
            f"budget {budget}: limit {limit:g} {unit}, spent {spent:g} {unit}", kind=ErrorClass.BUDGET
        )
        self.budget = budget
        self.limit = limit
        self.spent = spent
        self.unit = unit


@final
class PolicyRefused(InterlockError):
    """A routing rule leaves no model allowed to take the request; never worth retrying as is.

    ``rule`` names it: ``pii`` (sensitive input, no local model live), ``tenant_allow_list`` (the
    tenant's allowed providers), ``rule`` (a routing rule excluded every class; ``detail`` names
    the ``rules[i]``), ``context_window`` (no candidate holds the input); ``detail`` says more.
    """

    def __init__(self, task: str, rule: str, detail: str = "") -> None:
        tail = f": {detail}" if detail else ""
        super().__init__(f"task {task}: refused by rule {rule}{tail}", kind=ErrorClass.POLICY_REFUSAL)
        self.task = task
        self.rule = rule
        self.detail = detail


@final
class ChainExhausted(InterlockError):
    """Every candidate of a chain failed; ``errors`` holds each attempt's error, in order.

    ``status`` and ``retry_after`` are those of its causes where they agree (every cause with a
    status has the same one; the longest retry hint of causes that give one), else None.
    """

    def __init__(self, task: str, errors: list[tuple[str, InterlockError]]) -> None:
        lines = "; ".join(f"{name}: {err}" for name, err in errors) or "no admissible candidate"
        last_kind = errors[-1][1].kind if errors else ErrorClass.OVERLOADED
        super().__init__(f"task {task}: every candidate failed ({lines})", kind=last_kind)
        self.task = task
        self.errors = errors
        statuses = {s for _, e in errors if (s := getattr(e, "status", None)) is not None}
        self.status: int | None = statuses.pop() if len(statuses) == 1 else None
        hints = [h for _, e in errors if (h := getattr(e, "retry_after", None)) is not None]
        self.retry_after: float | None = max(hints) if hints else None


@final
class AnswersRejected(InterlockError):
    """The job's verifier (or reviewer) rejected every answer the chain produced.

    ``answer`` is the last answer rejected (a ``ChatResponse``, its route saying who made it),
    ``reasons`` each rejection's reason, in order. Retrying the same request is unlikely to help.
    """

    def __init__(self, task: str, answer: object, reasons: list[str]) -> None:
        tail = "; ".join(reasons) or "rejected"
        super().__init__(f"task {task}: every answer was rejected ({tail})", kind=ErrorClass.REJECTED)
        self.task = task
        self.answer = answer
        self.reasons = reasons


@final
class DeadlineExceeded(InterlockError):
    """A request's own deadline passed before an answer began; ``which`` names the wait that ran out.

    ``which`` is ``first_token`` (the job's ``first_token_timeout_ms`` on the last attempt) or
    ``total`` (the job's ``total_timeout_ms``, counted from the request's entry); ``errors``
    holds each attempt's error, in order, as in ``ChainExhausted``.
    """

    def __init__(self, which: str, limit_ms: int, task: str, errors: list[tuple[str, InterlockError]]) -> None:
        lines = "; ".join(f"{name}: {err}" for name, err in errors) or "no attempt"
        super().__init__(f"task {task}: {which} deadline of {limit_ms} ms passed ({lines})", kind=ErrorClass.TIMEOUT)
        self.which = which
        self.limit_ms = limit_ms
        self.task = task
        self.errors = errors
