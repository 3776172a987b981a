"""Chain resolution: which models may serve a request, in what order, and why the others may not.

Pure: a function of the config, the request and its input-token estimate. The steps, in order:

1. Pick the job and the head of the chain. ``request.model`` pins a model by config name or
   by concrete id (every model with that id, in config order), or names a job. A pin alone is
   the whole chain; a pin with an explicit ``request.task`` is followed by that job's chain.
   ``request.model_class`` asks one class directly. Otherwise ``request.task`` (or the job
   ``default``) gives the chain, and the tenant's pinned model for that job goes first.
2. Rules that match (sensitivity, tenant tier, the tenant's cost sensitivity, task, input-token
   bounds) may replace the job's chain (the first ``use_chain`` wins; never a pin) and filter
   every candidate by class.
3. Classes expand to their models in config order; a model appears once, at its first place.
   The first of them is the request's first choice (``Resolution.first_choice``): an answer from
   any other model is degraded (``policies._failover.is_degraded``).
   With ``on_exhausted = "degrade"`` the ``max_degrade`` classes follow, marked ``degrade``
   (not after a pin alone: the caller asked for that model and nothing else).
4. Each candidate must pass, in order: its capability (an ``embed`` operation reaches only
   ``kind = "embedding"`` models, a chat never does; a request asking for ``reasoning`` only
   models with ``reasoning = true``; for an embed, the context window bounds
   each input alone, so ``input_tokens`` is the longest input's estimate), the PII guard
   (``sensitivity = "pii"`` only reaches ``privacy.pii_classes``; applied to every candidate,
   pins and degrade ones included, so nothing can add a non-local model back), every matching
   rule, the tenant allow-list, and the context window (input tokens + request ``max_tokens``
   or the model's max output).
5. A fallback whose blended price (input + output) exceeds the first candidate's is dropped
   unless the job has ``allow_costlier_fallback``.

An empty ``candidates`` is a valid answer: the request run turns it into an explicit failure.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from interlock._errors import RequestError
from interlock._types import ChatRequest
from interlock.policies._config import Config, JobConfig, ModelConfig, Names, Rule, RuleWhen, TenantConfig
from interlock.policies._failover import accepts_prefill
from interlock.policies._pii import PiiDetector, enabled

SkipReason = Literal["capability", "sensitivity", "rule", "tenant_allow_list", "context_window", "costlier_not_allowed"]
Operation = Literal["chat", "embed"]

_NO_JOB = JobConfig(chain=())  # settings for a pinned model or class asked for without any job


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """A model that may serve the request; ``position`` 0 is the first choice.

    ``costlier``: its blended price exceeds the first candidate's (kept only when the job
    allows it). ``degrade``: it comes from the job's ``max_degrade`` classes, after the chain.
    """

    name: str
    model: ModelConfig
    provider: str
    position: int
    costlier: bool = False
    degrade: bool = False
    prefill: bool = False  # continues a broken answer from the delivered text (``accepts_prefill``)


class Skipped(msgspec.Struct, frozen=True, kw_only=True):
    """A model of the chain that may not serve this request, and why (``detail`` says which rule etc.)."""

    model: str
    reason: SkipReason
    detail: str = ""


class Resolution(msgspec.Struct, frozen=True, kw_only=True):
    """The resolved chain: the job's name and policy, the candidates in order, and the skipped models.

    ``job`` is empty when a model or class was asked for with no job and no ``default`` job exists.
    ``pinned`` names the model pinned by the request or the tenant, if any. ``first_choice`` is
    the first model of the chain (pins first, a rule's ``use_chain`` applied, classes expanded)
    before any gate left a model out: the model the plan meant to answer, whether or not it may.
    ``order`` is every model of that chain (its ``degrade`` ones after) in the order they were
    considered, and ``rules`` the keys (``rules[i]``) of the rules that matched: what ``explain`` shows.
    """

    job: str
    policy: JobConfig
    tenant: str
    candidates: tuple[Candidate, ...]
    skipped: tuple[Skipped, ...] = ()
    pinned: str | None = None
    first_choice: str = ""
    order: Names = ()
    rules: Names = ()


class _Selection(msgspec.Struct, frozen=True, kw_only=True):
    job: str
    policy: JobConfig
    head: Names  # request pins: never replaced by a rule
    chain: Names  # classes or models: a rule's use_chain may replace these
    from_job: bool  # the chain is the job's own, so the tenant's pin for the job applies


def resolve(
    config: Config, request: ChatRequest, input_tokens: int, chain: Names | None = None, operation: Operation = "chat"
) -> Resolution:
    """Resolve the ordered candidates for ``request``; raises ``RequestError`` for an unknown job or model.

    ``chain`` replaces the job's own chain (a classifier's pick for this request); the job's
    classifier is then spent: the resolution's policy has none. ``operation`` says what is
    asked of the models (``embed``: the request's messages are the texts to embed).
    """
    sel = _select(config, request, chain)
    tenant = _tenant(config, request.tenant)
    matched = tuple(
        (f"rules[{i}]", rule)
        for i, rule in enumerate(config.rules)
        if _matches(rule.when, request, tenant, sel.job, input_tokens)
    )
    chain = sel.chain
    if chain:
        chain = next((rule.use_chain for _, rule in matched if rule.use_chain is not None), chain)
    tenant_pin = tenant.pinned.get(sel.job) if sel.from_job else None
    pins = (*sel.head, *((tenant_pin,) if tenant_pin else ()))
    names = _expand(config, (*pins, *chain))
    extra: Names = ()
    if chain and sel.policy.on_exhausted == "degrade" and sel.policy.max_degrade is not None:
        extra = tuple(n for n in _expand(config, sel.policy.max_degrade.classes) if n not in names)

    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    for name, degrade in [*((n, False) for n in names), *((n, True) for n in extra)]:
        model = config.models[name]
        skip = _capability(name, model, operation, request) or _gate(
            config, request, tenant, matched, input_tokens, name, model
        )
        costlier = bool(candidates) and model.blended_price > candidates[0].model.blended_price
        if skip is None and costlier and not sel.policy.allow_costlier_fallback:
            first = candidates[0]
            detail = f"{model.blended_price:g} > {first.model.blended_price:g} USD/M of {first.name}"
            skip = Skipped(model=name, reason="costlier_not_allowed", detail=detail)
        if skip is not None:
            skipped.append(skip)
            continue
        candidates.append(
            Candidate(
                name=name,
                model=model,
                provider=model.provider,
                position=len(candidates),
                costlier=costlier,
                degrade=degrade,
                prefill=accepts_prefill(config.providers[model.provider], model),
            )
        )
    return Resolution(
        job=sel.job,
        policy=sel.policy,
        tenant=request.tenant,
        candidates=tuple(candidates),
        skipped=tuple(skipped),
        pinned=pins[0] if pins else None,
        first_choice=names[0] if names else "",
        order=(*names, *extra),
        rules=tuple(key for key, _ in matched),
    )


def _select(config: Config, request: ChatRequest, chosen: Names | None) -> _Selection:
    task = request.task
    if task is not None and task not in config.jobs:
        raise RequestError("task", f"unknown job {task!r}; expected one of {_names(config.jobs)}")
    head: Names = ()
    if request.model is not None and request.model in config.jobs:
        if task is not None and task != request.model:
            raise RequestError("model", f"names the job {request.model!r} but task is {task!r}")
        task = request.model
    elif request.model is not None:
        head = _pinned(config, request.model)
    chain: Names | None = None
    if request.model_class is not None and not head:
        if request.model_class not in config.classes:
            raise RequestError("model_class", f"unknown model class {request.model_class!r}")
        chain = (request.model_class,)
    explicit_task = task is not None
    if task is None and "default" in config.jobs:
        task = "default"
    if task is None and not head and chain is None:
        raise RequestError("task", "no task, model or model_class given, and no job named 'default'")
    policy = config.jobs[task] if task is not None else _NO_JOB
    if chosen is not None and task is not None:
        policy = msgspec.structs.replace(policy, chain=chosen, classifier=None)
    from_job = not head and chain is None
    if chain is None:
        chain = policy.chain if from_job or explicit_task else ()
    return _Selection(job=task or "", policy=policy, head=head, chain=chain, from_job=from_job)


def _pinned(config: Config, model: str) -> Names:
    """A config model name pins that model; a concrete id pins every model serving it."""
    if model in config.models:
        return (model,)
    by_id = tuple(name for name, m in config.models.items() if m.id == model)
    if not by_id:
        raise RequestError("model", f"unknown model or job {model!r}")
    return by_id


def _tenant(config: Config, name: str) -> TenantConfig:
    # An unknown tenant gets the `default` tenant's policy (so it can be restricted), else none.
    return config.tenants.get(name) or config.tenants.get("default") or TenantConfig()


def _matches(when: RuleWhen, request: ChatRequest, tenant: TenantConfig, job: str, input_tokens: int) -> bool:
    return (
        (when.sensitivity is None or when.sensitivity == request.sensitivity)
        and (when.tenant_tier is None or when.tenant_tier == tenant.tier)
        and (when.cost_sensitivity is None or when.cost_sensitivity == tenant.cost_sensitivity)
        and (when.task is None or when.task == job)
        and (when.min_input_tokens is None or input_tokens >= when.min_input_tokens)
        and (when.max_input_tokens is None or input_tokens <= when.max_input_tokens)
    )


def _expand(config: Config, entries: Names) -> Names:
    classes = config.classes
    out: dict[str, None] = {}  # ordered set
    for entry in entries:
        for name in (entry,) if entry in config.models else classes.get(entry, ()):
            out.setdefault(name)
    return tuple(out)


def _capability(name: str, model: ModelConfig, operation: Operation, request: ChatRequest) -> Skipped | None:
    """An embedding model serves only embed requests, every other model only chats; reasoning
    asked for reaches only models that take it (``reasoning = true``): never silently dropped."""
    if (model.kind == "embedding") != (operation == "embed"):
        detail = "an embedding model cannot chat" if operation == "chat" else "not an embedding model"
        return Skipped(model=name, reason="capability", detail=detail)
    if operation == "chat" and request.reasoning is not None and not model.reasoning:
        return Skipped(model=name, reason="capability", detail="takes no reasoning budget")
    return None


def _gate(
    config: Config,
    request: ChatRequest,
    tenant: TenantConfig,
    matched: tuple[tuple[str, Rule], ...],
    input_tokens: int,
    name: str,
    model: ModelConfig,
) -> Skipped | None:
    """The first filter that rejects ``model``, or None when it may serve."""
    cls = model.model_class
    if request.sensitivity == "pii" and cls not in config.privacy.effective_pii_classes:
        return Skipped(model=name, reason="sensitivity", detail=f"class {cls!r} may not receive PII")
    for key, rule in matched:
        if (rule.only_classes is not None and cls not in rule.only_classes) or cls in rule.exclude_classes:
            return Skipped(model=name, reason="rule", detail=key)
    allowed = tenant.allowed_providers
    if allowed is not None and model.provider not in allowed:
        return Skipped(model=name, reason="tenant_allow_list", detail=f"provider {model.provider!r}")
    output = request.max_tokens if request.max_tokens is not None else model.max_output_tokens
    if input_tokens + output > model.context_window:
        detail = f"{input_tokens} input + {output} output > {model.context_window}"
        return Skipped(model=name, reason="context_window", detail=detail)
    return None


def pii_scan(config: Config, tenant: str, job: str) -> tuple[tuple[PiiDetector, ...], Names]:
    """The detectors to run on an unmarked request of ``tenant`` for ``job``, and its phone regions.

    The job's ``pii_detection``, when set, wins over the tenant's (an unknown tenant gets the
    ``default`` tenant's settings, as for routing); no detectors means no scan.
    """
    tenant_cfg = _tenant(config, tenant)
    job_cfg = config.jobs.get(job)
    setting = job_cfg.pii_detection if job_cfg is not None and job_cfg.pii_detection is not None else None
    return enabled(tenant_cfg.pii_detection if setting is None else setting), tenant_cfg.pii_phone_regions


def _names(names: dict[str, JobConfig]) -> str:
    return ", ".join(sorted(names)) or "(none)"
