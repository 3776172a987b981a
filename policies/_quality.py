"""The quality rollup: verifier verdicts per (task, model) and which models to demote; pure.

Verdict strings (the ledger's ``verdict`` column, written by ``verdict_string``)::

    accept:<verifier>
    reject:<verifier>:<reason>
    unjudged:<verifier>:<reason>

``<verifier>`` is the verifier's name with ``%`` written as ``%25`` and ``:`` as ``%3A``, so a
name may hold any character (model names like ``llama3:8b``); ``<reason>`` is the rest of the
string, verbatim. An accept keeps no reason: ``parse_verdict_string(verdict_string(v))`` gives
``v`` back for every reject and unjudged verdict, and for an accept with its reason set to ``""``.

An *unjudged* verdict (the verifier could not run: no reviewer model, a failed reviewer call) is
neither an accept nor a reject: it is counted apart (``unjudged``) and never in a judged count or
an accept rate, so a reviewer outage cannot demote the models it failed to review. Rejects that
older versions wrote for the same reason (``verifier failed: ...``, ``no reviewer from a lab
other than ...``) are read as unjudged too.

Figures (over the attempt records with a verdict and ``since <= ts <= now``; records whose
verdict is not in this form, such as legacy ``pass``/``fail``, are counted in ``unparsed`` only):

- per (task, model): *judged* attempts, *accepted* ones, and the accept rate accepted / judged
  (None when nothing was judged); rejects are also counted per verifier; *unjudged* apart.
- A model A is a *demotion candidate* on a task when another model B on that task has
  (1) at least ``min_judged`` (default 20) judged attempts, and so has A;
  (2) an accept rate at least ``margin`` (default 0.15) above A's (a difference within 1e-9 of
      the margin counts, so float rounding of counts like 0.95 - 0.80 cannot hide it); and
  (3) a significant difference by the pooled two-proportion z-test, two-sided at ``confidence``
      (default 0.95, so |z| >= 1.95996): with pooled p = (xA + xB) / (nA + nB),
      z = (pB - pA) / sqrt(p (1 - p) (1/nA + 1/nB)); when p is 0 or 1 the rates are equal and
      nothing is flagged. The p-value reported is 2 (1 - Phi(|z|)).
  When several models beat A, the flag names the one with the highest accept rate (then the
  most judged attempts, then the name), with its z and p-value.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from statistics import NormalDist
from typing import Final

import msgspec

from interlock._records import AttemptRecord
from interlock.policies._verify import Verdict

_ESCAPES: Final = re.compile(r"%(25|3A)")
_MARGIN_SLACK: Final = 1e-9


# What older versions wrote as a reject when the verifier could not run: read as unjudged.
_LEGACY_UNJUDGED: Final = ("verifier failed: ", "no reviewer from a lab other than ")


def verdict_string(verdict: Verdict) -> str:
    """The ledger form of a verdict: ``accept:<verifier>``, ``reject:`` or ``unjudged:<verifier>:<reason>``."""
    name = verdict.verifier.replace("%", "%25").replace(":", "%3A")
    if verdict.accepted:
        return f"accept:{name}"
    return f"{'reject' if verdict.judged else 'unjudged'}:{name}:{verdict.reason}"


def parse_verdict_string(text: str) -> Verdict:
    """The verdict a ``verdict_string`` encodes; ValueError for any other string."""
    head, sep, rest = text.partition(":")
    if head == "accept" and sep and ":" not in rest:
        return Verdict(True, "", _unescape(rest))
    if head in ("reject", "unjudged") and ":" in rest:
        name, _, reason = rest.partition(":")
        return Verdict(False, reason, _unescape(name), judged=head == "reject")
    raise ValueError(f"not a verdict string: {text[:80]!r}")


def _as_read(verdict: Verdict) -> Verdict:
    """``verdict``, with a legacy reject of a verifier that could not run read as unjudged."""
    if verdict.judged and not verdict.accepted and verdict.reason.startswith(_LEGACY_UNJUDGED):
        return Verdict(False, verdict.reason, verdict.verifier, judged=False)
    return verdict


def _unescape(name: str) -> str:
    return _ESCAPES.sub(lambda m: "%" if m[1] == "25" else ":", name)


class QualityStats(msgspec.Struct, frozen=True, kw_only=True):
    """Verdicts of one (task, model): how many attempts were judged, how many accepted, how many unjudged."""

    task: str
    model: str
    judged: int
    accepted: int
    accept_rate: float | None  # None when nothing was judged (every verdict unjudged)
    rejects_by_verifier: dict[str, int]
    unjudged: int = 0


class DemotionCandidate(msgspec.Struct, frozen=True, kw_only=True):
    """A model whose accept rate on a task is clearly below ``better_model``'s (see the module docstring)."""

    task: str
    model: str
    judged: int
    accept_rate: float
    better_model: str
    better_judged: int
    better_accept_rate: float
    difference: float
    z: float
    p_value: float


class QualitySettings(msgspec.Struct, frozen=True, kw_only=True):
    """The demotion rule's settings a rollup was computed with."""

    min_judged: int = 20
    margin: float = 0.15
    confidence: float = 0.95

    @property
    def z_critical(self) -> float:
        """The two-sided critical |z| at ``confidence`` (1.95996 at 0.95)."""
        return NormalDist().inv_cdf(1 - (1 - self.confidence) / 2)


class QualityRollup(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``interlock report --quality`` shows; msgspec encodes it as the JSON form."""

    generated_at: float
    since: float | None
    judged: int
    unparsed: int
    unjudged: int = 0
    models: tuple[QualityStats, ...]
    demotions: tuple[DemotionCandidate, ...]
    settings: QualitySettings


def two_proportion_z(x_a: int, n_a: int, x_b: int, n_b: int) -> float | None:
    """Pooled z of p_b - p_a (positive when b is higher); None when either n is 0 or both rates are 0 or 1."""
    if n_a <= 0 or n_b <= 0:
        return None
    pooled = (x_a + x_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return None if se == 0 else (x_b / n_b - x_a / n_a) / se


def two_sided_p(z: float) -> float:
    """The two-sided p-value of a standard normal ``z``."""
    return 2 * (1 - NormalDist().cdf(abs(z)))


def _stats(task: str, model: str, verdicts: list[Verdict]) -> QualityStats:
    judged = [v for v in verdicts if v.judged]
    accepted = sum(v.accepted for v in judged)
    rejects = Counter(v.verifier for v in judged if not v.accepted)
    return QualityStats(
        task=task,
        model=model,
        judged=len(judged),
        accepted=accepted,
        accept_rate=accepted / len(judged) if judged else None,
        rejects_by_verifier=dict(sorted(rejects.items())),
        unjudged=len(verdicts) - len(judged),
    )


def _beats(worse: QualityStats, better: QualityStats, cfg: QualitySettings) -> DemotionCandidate | None:
    worse_rate, better_rate = worse.accept_rate, better.accept_rate
    if min(worse.judged, better.judged) < cfg.min_judged or worse_rate is None or better_rate is None:
        return None
    difference = better_rate - worse_rate
    z = two_proportion_z(worse.accepted, worse.judged, better.accepted, better.judged)
    if difference < cfg.margin - _MARGIN_SLACK or z is None or z < cfg.z_critical:
        return None
    return DemotionCandidate(
        task=worse.task,
        model=worse.model,
        judged=worse.judged,
        accept_rate=worse_rate,
        better_model=better.model,
        better_judged=better.judged,
        better_accept_rate=better_rate,
        difference=difference,
        z=z,
        p_value=two_sided_p(z),
    )


def demotions(stats: Iterable[QualityStats], cfg: QualitySettings) -> tuple[DemotionCandidate, ...]:
    """The demotion candidates among ``stats``, by task then model; at most one flag per (task, model)."""
    by_task: dict[str, list[QualityStats]] = defaultdict(list)
    for s in stats:
        if s.accept_rate is not None:  # only judged verdicts can flag a model or name a better one
            by_task[s.task].append(s)
    found: list[DemotionCandidate] = []
    for task in sorted(by_task):
        # Best first, so the first model that beats A is the one the flag names.
        ranked = sorted(by_task[task], key=lambda s: (-(s.accept_rate or 0.0), -s.judged, s.model))
        for worse in sorted(by_task[task], key=lambda s: s.model):
            flag = next((d for b in ranked if b is not worse and (d := _beats(worse, b, cfg))), None)
            if flag is not None:
                found.append(flag)
    return tuple(found)


def quality_rollup(
    attempts: Iterable[AttemptRecord],
    *,
    now: float,
    since: float | None = None,
    min_judged: int = 20,
    margin: float = 0.15,
    confidence: float = 0.95,
) -> QualityRollup:
    """Accept rates per (task, model) and demotion candidates over the window ``since <= ts <= now``."""
    if min_judged < 1 or not 0 <= margin <= 1 or not 0 < confidence < 1:
        raise ValueError("min_judged must be >= 1, margin in [0, 1] and confidence in (0, 1)")
    cfg = QualitySettings(min_judged=min_judged, margin=margin, confidence=confidence)
    start = -math.inf if since is None else since
    groups: dict[tuple[str, str], list[Verdict]] = defaultdict(list)
    unparsed = 0
    for a in attempts:
        if a.verdict is None or not start <= a.ts <= now:
            continue
        try:
            verdict = _as_read(parse_verdict_string(a.verdict))
        except ValueError:
            unparsed += 1
            continue
        groups[(a.task, a.model)].append(verdict)
    models = tuple(_stats(t, m, v) for (t, m), v in sorted(groups.items()))
    return QualityRollup(
        generated_at=now,
        since=since,
        judged=sum(s.judged for s in models),
        unparsed=unparsed,
        unjudged=sum(s.unjudged for s in models),
        models=models,
        demotions=demotions(models, cfg),
        settings=cfg,
    )
