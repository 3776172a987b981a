"""Classifier routing and ensembles: pure decisions a job can make before and after its calls.

A classifier picks a job's chain per request: cheap features first (input size, keywords,
conversation depth, caller metadata) matched by ordered rules; what they leave undecided may go
to a small model asked for one label. An ensemble sends the same input to several models and
combines their answers: the first valid one, a majority on a JSON field, or a judge's pick.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from interlock._types import ChatRequest, ChatResponse, Message, TextPart

Names = tuple[str, ...]


class ClassifierWhen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A rule's condition; every key given must match."""

    min_input_tokens: int | None = None
    max_input_tokens: int | None = None
    keywords: Names = ()  # any of them, case-insensitive, in the last user message
    min_depth: int | None = None  # messages in the conversation
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class ClassifierRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When ``when`` matches, the request gets ``label``."""

    when: ClassifierWhen
    label: str


class ClassifierConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rules to a label, an optional model for the undecided, and each label's chain."""

    rules: tuple[ClassifierRule, ...] = ()
    model: str | None = None
    labels: dict[str, Names] = msgspec.field(default_factory=dict)
    default_label: str | None = None


class Features(msgspec.Struct, frozen=True):
    """What the cheap rules look at, as recorded in the ledger."""

    input_tokens: int
    depth: int
    keywords: Names
    metadata_keys: Names


class Classification(msgspec.Struct, frozen=True):
    """The label, how it was decided (``rule``, ``model`` or ``default``) and the features seen."""

    label: str | None
    decided_by: Literal["rule", "model", "default", "none"]
    features: Features


def _last_user_text(request: ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.plain_text
    return ""


def features_of(request: ChatRequest, input_tokens: int, config: ClassifierConfig) -> Features:
    """The cheap features of ``request``: only the keywords some rule asks about are listed."""
    text = _last_user_text(request).lower()
    asked = {k.lower() for rule in config.rules for k in rule.when.keywords}
    found = tuple(sorted(k for k in asked if k in text))
    return Features(input_tokens, len(request.messages), found, tuple(sorted(request.metadata)))


def _matches(when: ClassifierWhen, features: Features, request: ChatRequest) -> bool:
    if when.min_input_tokens is not None and features.input_tokens < when.min_input_tokens:
        return False
    if when.max_input_tokens is not None and features.input_tokens > when.max_input_tokens:
        return False
    if when.keywords and not any(k.lower() in features.keywords for k in when.keywords):
        return False
    if when.min_depth is not None and features.depth < when.min_depth:
        return False
    return all(request.metadata.get(k) == v for k, v in when.metadata.items())


def classify_by_rules(config: ClassifierConfig, request: ChatRequest, input_tokens: int) -> Classification:
    """The first matching rule's label; undecided (``none``) when no rule matches."""
    features = features_of(request, input_tokens, config)
    for rule in config.rules:
        if _matches(rule.when, features, request):
            return Classification(rule.label, "rule", features)
    return Classification(None, "none", features)


def label_request(config: ClassifierConfig, request: ChatRequest) -> ChatRequest:
    """The small-model call that labels an undecided request: one word from the known labels."""
    labels = ", ".join(sorted(config.labels))
    system = (
        "You classify requests for routing. Reply with exactly one label from this list and nothing else: "
        f"{labels}."
    )
    return ChatRequest(
        messages=(Message.text("system", system), Message.text("user", _last_user_text(request)[:4000])),
        model=config.model, tenant=request.tenant, caller=request.caller, sensitivity=request.sensitivity,
        max_tokens=8, temperature=0.0, metadata={"interlock.classify_for": request.request_id},
    )


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """The first known label in the model's reply (whole word, case-insensitive), or None."""
    for word in re.findall(r"[A-Za-z0-9_\-]+", text):
        for label in labels:
            if word.lower() == label.lower():
                return label
    return None


# -- ensembles ---------------------------------------------------------------------------------


class EnsembleConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Members asked in parallel, and how their answers combine."""

    models: Names
    combine: Literal["first_valid", "majority", "judge"] = "first_valid"
    field: str | None = None  # for majority: a dotted path into each answer's JSON
    judge: str | None = None  # for judge: the model that picks


def json_field(response: ChatResponse, path: str | None) -> Any:
    """The value at ``path`` of the answer parsed as JSON (the whole text when ``path`` is None)."""
    if path is None:
        return response.content.strip()
    try:
        value: Any = json.loads(response.content)
    except ValueError:
        return None
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def majority(answers: Sequence[ChatResponse], path: str | None) -> int | None:
    """The index of the first answer carrying the most common value; None without a strict majority."""
    values = [json.dumps(json_field(a, path), sort_keys=True) for a in answers]
    counted = Counter(v for v in values if v != "null")
    if not counted:
        return None
    value, count = counted.most_common(1)[0]
    if count * 2 <= len(answers):
        return None
    return values.index(value)


def judge_request(original: ChatRequest, answers: Sequence[ChatResponse], judge: str) -> ChatRequest:
    """Ask ``judge`` which numbered answer is best; it replies ``PICK: <n>``."""
    listing = "\n\n".join(f"<answer n={i + 1}>\n{a.content}\n</answer>" for i, a in enumerate(answers))
    question = _last_user_text(original)
    system = "You pick the best answer to a request. Reply with 'PICK: <n>' and one sentence of reason."
    user = f"<request>\n{question}\n</request>\n\n{listing}"
    return ChatRequest(
        messages=(Message(role="system", content=(TextPart(system),)), Message.text("user", user)),
        model=judge, tenant=original.tenant, caller=original.caller, sensitivity=original.sensitivity,
        metadata={"interlock.judge_for": original.request_id},
    )


def parse_pick(text: str, count: int) -> int | None:
    """The zero-based index the judge picked, or None when its reply names no valid answer."""
    match = re.search(r"PICK\s*:\s*(\d+)", text, re.IGNORECASE)
    if match is None:
        return None
    index = int(match.group(1)) - 1
    return index if 0 <= index < count else None
