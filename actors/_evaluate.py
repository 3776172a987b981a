"""``door.evaluate``: every prompt on every candidate, through the door, judged, measured and compared.

Each call is a request pinned to one candidate alone (``policies._eval_input.eval_request``), so
it passes every rail a request passes — budgets, leases, breakers, the tenant's allow-list — and
leaves its ledger rows, as caller ``eval`` (by default) with metadata ``interlock.purpose = eval``.
Its answer is judged here, not by the job's rails, so that each prompt's own ``expected`` and
``schema`` and the verifiers given can judge it: the prompt's verifiers, then the ones given
(``verify``), else the job's own ``verify``. A reviewer or agreement check is a request of its own
through the door (``VerifyRail``, tagged ``eval_review`` / ``eval_agreement``).

Resuming. Every answered call is kept in the door's state store (``door.remember``) for
``EVAL_TTL_S``, whatever the job's ``cache_ttl_s``, with what it cost and how long it took when it
was called; every judged verdict too. Re-running the same eval replays them and calls only what
is missing (calls that failed, verdicts a verifier could not give): an interrupted eval resumes,
and a finished one reprints at no cost. The figures of a replayed call are those it was measured
with. ``fresh`` measures every call again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import anyio
import msgspec

from interlock._errors import InterlockError, RequestError
from interlock._types import ChatRequest, ChatResponse, Message
from interlock.actors.rails._verify import VerifyRail
from interlock.actors.request._assemble import collect
from interlock.actors.request._attempt import Attempt
from interlock.policies._config import Config
from interlock.policies._eval import (
    TEST,
    EvalCall,
    EvalCandidate,
    EvalPrompt,
    EvalReport,
    recommend,
    summarize,
    toml_change,
)
from interlock.policies._eval_input import (
    EVAL_PURPOSE,
    PURPOSE_KEY,
    as_prompts,
    call_key,
    eval_request,
    prompt_verifiers,
    verdict_key,
    verifier_name,
)
from interlock.policies._routing import Candidate, resolve
from interlock.policies._tokens import estimate_input_tokens
from interlock.policies._verify import Verdict, Verifier, clip_text

if TYPE_CHECKING:
    from interlock.actors._door import Door

# A week: long enough to resume an interrupted eval or reprint it through a working week; short
# enough that a model updated behind its name, or a changed price, is measured again rather
# than compared on old figures. A changed model id is measured again at once (it is in the key).
EVAL_TTL_S: Final = 7 * 24 * 3600.0

_KEEP_GRACE_S: Final = 5.0  # how long a stopped eval still waits to keep an answer it has paid for

Progress = Callable[[int, int, EvalCall], None]


class _Answered(msgspec.Struct, frozen=True):
    """An answered call as kept: the answer (for verifiers to judge) and what it measured."""

    answer: ChatResponse
    cost_cents: float
    ttft_ms: float | None
    ttlt_ms: float | None


class _Judged(msgspec.Struct, frozen=True):
    """A judged verdict as kept, with what the verifiers' own calls cost."""

    verdict: Verdict
    cost_cents: float


_encode = msgspec.msgpack.Encoder().encode
_decode_answered = msgspec.msgpack.Decoder(_Answered).decode
_decode_judged = msgspec.msgpack.Decoder(_Judged).decode


async def evaluate(
    door: Door,
    prompts: Sequence[EvalPrompt | str],
    *,
    candidates: Sequence[str],
    task: str | None = None,
    verify: Sequence[Verifier] | None = None,
    repeat: int = 1,
    concurrency: int = 8,
    tenant: str = "default",
    caller: str = "eval",
    progress: Progress | None = None,
    fresh: bool = False,
) -> EvalReport:
    """Run every prompt ``repeat`` times on every candidate, at most ``concurrency`` calls at once.

    ``task`` is the job the eval is for (default: ``default`` when the config has it): its
    ``verify`` judges unless ``verify`` is given, and the report's TOML change moves it. A call
    that fails (a budget, a rate limit...) is recorded with its error class; it never stops the
    others. Bad input (an unknown candidate or job, a malformed prompt) raises ``RequestError``
    or ``EvalInputError`` before any call.
    """
    config = door.config
    items = as_prompts(prompts)
    job = _job(config, task)
    names = _candidates(config, candidates)
    if repeat < 1:
        raise RequestError("repeat", "must be at least 1")
    if concurrency < 1:
        raise RequestError("concurrency", "must be at least 1")
    shared = tuple(verify) if verify is not None else (config.jobs[job].verify if job else ())
    runner = _Runner(door, shared, tenant=tenant, caller=caller, fresh=fresh)
    plan = [(name, prompt, k) for prompt in items for k in range(repeat) for name in names]
    calls: list[EvalCall | None] = [None] * len(plan)
    limiter = anyio.CapacityLimiter(concurrency)
    done = 0

    async def one(index: int, name: str, prompt: EvalPrompt, k: int) -> None:
        nonlocal done
        async with limiter:
            call = calls[index] = await runner.call(name, prompt, k)
        done += 1
        if progress is not None:
            progress(done, len(plan), call)

    async with anyio.create_task_group() as tg:
        for index, (name, prompt, k) in enumerate(plan):
            tg.start_soon(one, index, name, prompt, k)
    finished = [c for c in calls if c is not None]
    stats = tuple(
        summarize(name, config.models[name].id, [c for c in finished if c.candidate == name]) for name in names
    )
    return _report(config, job, items, repeat, shared, stats, finished)


def _report(
    config: Config, job: str, items: Sequence[EvalPrompt], repeat: int, shared: Sequence[Verifier],
    stats: tuple[EvalCandidate, ...], calls: list[EvalCall],
) -> EvalReport:  # fmt: skip
    picked = recommend(stats)
    chain = config.jobs[job].chain if job else ()
    first = _first_choice(config, job) if job else ""
    return EvalReport(
        task=job, prompts=len(items), repeat=repeat, verifiers=tuple(verifier_name(v) for v in shared),
        candidates=stats, recommended=picked.model, reason=picked.reason, test=TEST,
        toml=toml_change(job, chain, first, picked.model), cache_ttl_s=EVAL_TTL_S, calls=tuple(calls),
    )  # fmt: skip


class _Runner:
    """Makes (or replays) one eval call and its verdict; shared by every call of one eval."""

    def __init__(self, door: Door, shared: tuple[Verifier, ...], *, tenant: str, caller: str, fresh: bool) -> None:
        self._door = door
        self._shared = shared
        self._tenant, self._caller, self._fresh = tenant, caller, fresh

    async def call(self, name: str, prompt: EvalPrompt, k: int) -> EvalCall:
        """The call of ``prompt`` on ``name`` (repeat ``k``): replayed when kept, else made and kept."""
        door = self._door
        request = eval_request(prompt, name, tenant=self._tenant, caller=self._caller)
        key = call_key(request, door.config.models[name].id, k)
        base = EvalCall(prompt_id=prompt.id, candidate=name, repeat=k, outcome="failed")
        kept = None if self._fresh else await door.recall(key)
        if kept is not None:
            answered, resumed = _decode_answered(kept), True
        else:
            try:
                answered = _measured(await collect(door.send(request)))
            except InterlockError as exc:
                return msgspec.structs.replace(base, failure=str(exc.kind), detail=clip_text(str(exc), 300))
            with anyio.move_on_after(_KEEP_GRACE_S, shield=True):  # paid for: kept even if the eval is stopped now
                await door.remember(key, _encode(answered), EVAL_TTL_S)
            resumed = False
        specs = (*prompt_verifiers(prompt), *self._shared)
        judged = await self._verdict(verdict_key(key, prompt, self._shared), specs, request, name, answered.answer)
        verdict = judged.verdict
        outcome = "accepted" if verdict.accepted else ("rejected" if verdict.judged else "unjudged")
        return msgspec.structs.replace(
            base, outcome=outcome, detail=verdict.reason, cost_cents=answered.cost_cents,
            verify_cost_cents=judged.cost_cents, ttft_ms=answered.ttft_ms, ttlt_ms=answered.ttlt_ms, resumed=resumed,
        )  # fmt: skip

    async def _verdict(
        self, key: str, specs: tuple[Verifier, ...], request: ChatRequest, name: str, answer: ChatResponse
    ) -> _Judged:
        """Every verifier's combined verdict on ``answer`` (kept when judged); no verifier: accepted."""
        if not specs:
            return _Judged(Verdict(True, "answered (no verifier)", "none"), 0.0)
        door = self._door
        kept = None if self._fresh else await door.recall(key)
        if kept is not None:
            return _decode_judged(kept)
        spent = 0.0

        async def ask(side: ChatRequest, purpose: str) -> ChatResponse:
            nonlocal spent
            tagged = {**side.metadata, PURPOSE_KEY: f"{EVAL_PURPOSE}_{purpose}"}
            reply = await collect(door.send(msgspec.structs.replace(side, caller=self._caller, metadata=tagged)))
            spent += reply.route.cost_cents if reply.route is not None else 0.0
            return reply

        # The verify rail reads the author's lab off its attempt (a reviewer from another lab).
        author = Attempt(_candidate(door.config, name), 1, 0, 0.0, hedge=False)
        verdict = await VerifyRail(door.config, ask).judge(specs, request, answer, author)
        judged = _Judged(verdict, spent)
        if verdict.judged:  # an unjudged verdict is tried again on the next run
            await door.remember(key, _encode(judged), EVAL_TTL_S)
        return judged


def _measured(answer: ChatResponse) -> _Answered:
    """What one answered call cost and how long it took, from its route; the answer kept without it."""
    route = answer.route
    if route is None:
        return _Answered(answer, 0.0, None, None)
    kept = msgspec.structs.replace(answer, route=None)
    return _Answered(kept, route.cost_cents, route.ttft_ms, route.ttlt_ms)


def _job(config: Config, task: str | None) -> str:
    """The job the eval is for: ``task``, else ``default`` when the config has one, else none ("")."""
    if task is None:
        return "default" if "default" in config.jobs else ""
    if task not in config.jobs:
        raise RequestError("task", f"unknown job {task!r}; expected one of {', '.join(sorted(config.jobs))}")
    return task


def _candidates(config: Config, names: Sequence[str]) -> tuple[str, ...]:
    """The candidates, checked: config model names of chat models, each once, at least one."""
    if isinstance(names, str) or not names:
        raise RequestError("candidates", "give at least one model name (a sequence of config names)")
    chat = sorted(n for n, m in config.models.items() if m.kind != "embedding")
    seen: set[str] = set()
    for name in names:
        if name not in config.models or name not in chat:
            raise RequestError("candidates", f"unknown chat model {name!r}; expected one of {', '.join(chat)}")
        if name in seen:
            raise RequestError("candidates", f"{name!r} is given twice")
        seen.add(name)
    return tuple(names)


def _first_choice(config: Config, job: str) -> str:
    """The model the job's chain asks first (its first class expanded), as routing resolves it."""
    probe = ChatRequest(messages=(Message.text("user", "?"),), task=job)
    return resolve(config, probe, estimate_input_tokens(probe)).first_choice


def _candidate(config: Config, name: str) -> Candidate:
    """The pinned model ``name`` as a routing candidate: what the verify rail reads of the author (its lab)."""
    model = config.models[name]
    return Candidate(name=name, model=model, provider=model.provider, position=0)
