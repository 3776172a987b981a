"""Simulator behaviour: what each simulated model does, and the seeded draw of one request's plan.

Everything here is a frozen msgspec Struct, so a whole fleet decodes from TOML or JSON
(``load_config``). Latencies are distributions (``fixed``, ``uniform``, ``lognormal``) tagged by
``kind``; faults are tagged by ``kind`` too and serve three purposes: random ``Chance``s in a
behaviour, scheduled ``Outage`` windows and the exact queue of ``Simulator.script``.

``draw_plan`` turns (behaviour, seeded RNG, forced fault) into a ``Plan``: the fault, the TTFT,
every inter-token delay and the words to say. The RNG of a request is seeded from the config
seed, the model and the request's ordinal for that model, so runs replay exactly.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import msgspec

from interlock._errors import ConfigError

# Kept importable from here, where the tool-call arguments were first sampled.
from interlock.adapters.simulator._sample import sample_arguments as sample_arguments

# --- distributions ------------------------------------------------------------------------


class Fixed(msgspec.Struct, frozen=True, tag="fixed", tag_field="kind"):
    """Always ``value``."""

    value: float


class Uniform(msgspec.Struct, frozen=True, tag="uniform", tag_field="kind"):
    """Uniform between ``low`` and ``high``."""

    low: float
    high: float


class LogNormal(msgspec.Struct, frozen=True, tag="lognormal", tag_field="kind"):
    """Log-normal with the given ``median`` and log-space ``sigma``, clipped at ``cap``."""

    median: float
    sigma: float = 0.5
    cap: float = math.inf


Dist = Fixed | Uniform | LogNormal


def draw(dist: Dist, rng: random.Random) -> float:
    """One sample of ``dist``; never negative."""
    if isinstance(dist, Fixed):
        return max(0.0, dist.value)
    if isinstance(dist, Uniform):
        return max(0.0, rng.uniform(dist.low, dist.high))
    if dist.median <= 0:
        return 0.0
    return min(dist.cap, rng.lognormvariate(math.log(dist.median), dist.sigma))


# --- faults -------------------------------------------------------------------------------


class Normal(msgspec.Struct, frozen=True, tag="normal", tag_field="kind"):
    """No fault: answer as the behaviour says (useful in scripts)."""


class RateLimit(msgspec.Struct, frozen=True, tag="rate_limit", tag_field="kind"):
    """HTTP 429 with a ``retry-after`` header of ``retry_after`` seconds."""

    retry_after: float = 1.0


class ServerError(msgspec.Struct, frozen=True, tag="server_error", tag_field="kind"):
    """HTTP 500."""


class Unavailable(msgspec.Struct, frozen=True, tag="unavailable", tag_field="kind"):
    """HTTP 503."""


class Overloaded(msgspec.Struct, frozen=True, tag="overloaded", tag_field="kind"):
    """HTTP 529 (Anthropic's overloaded status)."""


class Reset(msgspec.Struct, frozen=True, tag="reset", tag_field="kind"):
    """The connection is reset (TCP RST) before a single response byte."""


class StallHeaders(msgspec.Struct, frozen=True, tag="stall_headers", tag_field="kind"):
    """Nothing is sent for ``seconds``; then the answer proceeds normally."""

    seconds: float = 30.0


class StallFirstToken(msgspec.Struct, frozen=True, tag="stall_first_token", tag_field="kind"):
    """Headers (and a stream's preamble) go out at once; the first token waits ``seconds``."""

    seconds: float = 30.0


class Drop(msgspec.Struct, frozen=True, tag="drop", tag_field="kind"):
    """The connection closes after ``after_tokens`` tokens (a non-stream body is cut in half)."""

    after_tokens: int = 3


class Malformed(msgspec.Struct, frozen=True, tag="malformed", tag_field="kind"):
    """A chunk of broken JSON after ``after_tokens`` tokens (a non-stream body is broken JSON)."""

    after_tokens: int = 1


class Refusal(msgspec.Struct, frozen=True, tag="refusal", tag_field="kind"):
    """The model refuses, after ``after_tokens`` words of answer text, in its dialect's own way.

    OpenAI: ``text`` as ``delta.refusal`` fragments (``message.refusal`` in a body), finish
    ``stop``. Anthropic: ``stop_reason: "refusal"`` (it sends no refusal text; the words before
    it stay). Gemini: ``finishReason: "SAFETY"``. Tool calls are never made.
    """

    text: str = "I'm sorry, but I can't help with that."
    after_tokens: int = 0


class NoUsage(msgspec.Struct, frozen=True, tag="no_usage", tag_field="kind"):
    """A normal answer that reports no usage: no usage chunk, ``usage: null``, no ``usageMetadata``.

    Anthropic's ``message_start`` and ``message_delta`` go out without their ``usage`` member.
    """


class ErrorAfterUsage(msgspec.Struct, frozen=True, tag="error_after_usage", tag_field="kind"):
    """A stream that reports usage after ``after_tokens`` words, then ends with an in-band error event.

    OpenAI: a usage chunk then ``data: {"error": ...}`` (no ``[DONE]``); Anthropic: the usage of
    ``message_start``, then ``event: error``; Gemini: a chunk with ``usageMetadata``, then an
    ``{"error": ...}`` chunk. ``status`` picks the error's type in each dialect (503/529
    overloaded, 429 rate limit, else server error). A non-stream request gets HTTP ``status``.
    """

    after_tokens: int = 2
    status: int = 503


Fault = (
    Normal | RateLimit | ServerError | Unavailable | Overloaded | Reset
    | StallHeaders | StallFirstToken | Drop | Malformed | Refusal | NoUsage | ErrorAfterUsage
)

STATUS_OF: dict[type[Fault], int] = {RateLimit: 429, ServerError: 500, Unavailable: 503, Overloaded: 529}


def fault_kind(fault: Fault) -> str:
    """The ``kind`` tag of ``fault``, the key of ``ModelStats.faults``."""
    return str(type(fault).__struct_config__.tag)


class Chance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """With probability ``p`` a request meets ``fault``."""

    p: float
    fault: Fault


class Outage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """From ``start`` to ``end`` seconds after the simulator started, requests meet ``fault``.

    ``models`` limits the outage to those models; empty means every model.
    """

    start: float
    end: float
    fault: Fault = Unavailable()
    models: tuple[str, ...] = ()

    def covers(self, model: str, elapsed: float) -> bool:
        """True if a request for ``model`` at ``elapsed`` seconds falls in this outage."""
        return self.start <= elapsed < self.end and (not self.models or model in self.models)


# --- behaviour and config -----------------------------------------------------------------


class Behaviour(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How one simulated model answers; the defaults answer 16 tokens at once, without faults.

    ``tail_p``: probability that the TTFT is drawn from ``tail`` instead of ``ttft`` (a long stall).
    ``tool_call_p``: probability of answering with ``tool_calls`` call(s) when the last user turn
    asks for an offered tool (a forcing ``tool_choice`` always gets them; see
    ``_wire.tools_called``). ``cached_fraction``: share of the input tokens reported as read from
    the provider's prompt cache. ``review_accept_p``: probability that a
    review request (a prompt asking for an ``ACCEPT``/``REJECT`` verdict) is answered ``ACCEPT:``.
    ``served_model``: the model id the answers say served them (``model``, ``modelVersion``), as a
    floating alias names a dated snapshot; empty: the id the request asked for.
    """

    ttft: Dist = Fixed(0.0)
    per_token: Dist = Fixed(0.0)
    tail_p: float = 0.0
    tail: Dist = Fixed(30.0)
    output_tokens: Dist = Fixed(16)
    tool_call_p: float = 1.0
    tool_calls: int = 1
    cached_fraction: float = 0.0
    faults: tuple[Chance, ...] = ()
    review_accept_p: float = 0.8
    served_model: str = ""


class SimConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A fleet: behaviour per model id, the one for unknown ids, outages and the RNG seed."""

    models: dict[str, Behaviour] = msgspec.field(default_factory=dict)
    default: Behaviour = Behaviour()
    outages: tuple[Outage, ...] = ()
    seed: int = 0
    keep_bodies: int = 32

    def behaviour(self, model: str) -> Behaviour:
        """The behaviour of ``model``; unknown models get ``default``."""
        return self.models.get(model, self.default)


def default_config() -> SimConfig:
    """A small fleet with differing latency and faults, named for what it imitates."""
    return SimConfig(
        models={
            "sim-fast-1": Behaviour(
                ttft=LogNormal(0.08, 0.3), per_token=Fixed(0.004), output_tokens=Uniform(8, 32),
                faults=(Chance(0.01, RateLimit(1.0)),),
            ),
            "sim-flagship-1": Behaviour(
                ttft=LogNormal(0.4, 0.4), per_token=Uniform(0.01, 0.03), output_tokens=Uniform(40, 120),
                cached_fraction=0.5, faults=(Chance(0.02, Overloaded()), Chance(0.01, ServerError())),
            ),
            "sim-open-1": Behaviour(
                ttft=Uniform(0.1, 0.3), per_token=Fixed(0.01), output_tokens=Uniform(16, 64),
                faults=(Chance(0.02, Drop(5)), Chance(0.01, Malformed(2))),
            ),
            "sim-tail-1": Behaviour(
                ttft=LogNormal(0.1, 0.3), per_token=Fixed(0.005), output_tokens=Uniform(16, 48),
                tail_p=0.1, tail=Uniform(5.0, 15.0),
            ),
        },
    )


def load_config(path: str | Path) -> SimConfig:
    """Decode a ``SimConfig`` from a ``.toml`` or ``.json`` file; errors name the key path."""
    path = Path(path)
    data = path.read_bytes()
    try:
        if path.suffix == ".json":
            return msgspec.json.decode(data, type=SimConfig)
        return msgspec.toml.decode(data, type=SimConfig)
    except msgspec.ValidationError as exc:
        problem, _, key = str(exc).rpartition(" - at `")
        raise ConfigError(key.rstrip("`") if problem else str(path), problem or str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(str(path), str(exc)) from exc


# --- one request's plan -------------------------------------------------------------------

_WORDS = (
    "the a of to and in is for on with as by at from that this it be are was simulated model "
    "token stream answer request route gateway provider latency budget cache hedge fallback "
    "breaker retry quota window record ledger tenant caller job chain verify cascade degrade "
    "signal tail stall reset drop chunk event usage cost second first last next every each "
    "quick slow steady calm bright clear"
)
_SAYABLE = len(_WORDS.split())
# The last two words are only said as the first word of an answer to a review request.
VOCAB: tuple[str, ...] = (*_WORDS.split(), "ACCEPT:", "REJECT:")
ACCEPT_WORD, REJECT_WORD = _SAYABLE, _SAYABLE + 1


class Plan(msgspec.Struct, frozen=True):
    """The drawn outcome of one request: fault, TTFT, inter-token delays and words (VOCAB indices)."""

    fault: Fault
    ttft: float
    delays: tuple[float, ...]
    words: tuple[int, ...]
    tool_roll: float


def request_rng(seed: int, model: str, ordinal: int) -> random.Random:
    """The RNG of a model's ``ordinal``-th request (string seeds hash stably across runs)."""
    return random.Random(f"{seed}/{model}/{ordinal}")


def draw_plan(behaviour: Behaviour, rng: random.Random, forced: Fault | None) -> Plan:
    """Draw a request's plan; ``forced`` (script or outage) replaces the random fault."""
    roll = rng.random()
    fault: Fault = Normal()
    for chance in behaviour.faults:
        if roll < chance.p:
            fault = chance.fault
            break
        roll -= chance.p
    tail = rng.random() < behaviour.tail_p
    ttft = draw(behaviour.tail if tail else behaviour.ttft, rng)
    count = max(0, round(draw(behaviour.output_tokens, rng)))
    per_token = behaviour.per_token
    delays = (per_token.value,) * count if isinstance(per_token, Fixed) else tuple(
        draw(per_token, rng) for _ in range(count)
    )
    words = tuple(rng.choices(range(_SAYABLE), k=count))
    return Plan(forced if forced is not None else fault, ttft, delays, words, rng.random())
