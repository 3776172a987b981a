"""What an eval runs: its prompt set read from JSONL, each prompt's request and verifiers, its cache keys.

The JSONL format is one JSON object per line (blank lines are skipped), an ``EvalPrompt``::

    {"id": "greet", "prompt": "Say hello to Ada."}
    {"messages": [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Total of 2+3?"}],
     "schema": {"type": "object", "required": ["total"]}, "expected": {"total": 5}}

(the second one on a single line in a real file). Exactly one of ``prompt`` and ``messages``;
``id`` defaults to the line number and must not repeat. A bad line raises ``EvalInputError``
naming the line and the field. Pure: the caller reads the file.

Cache keys: an eval call is kept under ``call_key`` (the response-cache key of the pinned
request, scoped to the model's concrete id and the repeat's number, so a model whose id changed
is measured again, and each repeat is its own sample); its verdict under ``verdict_key`` (the
call's key and every verifier that judged it), so new verifiers judge old answers anew without
calling the candidate again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from interlock._errors import ErrorClass, InterlockError
from interlock._types import ChatRequest, ChatResponse, JsonSchemaFormat, Message
from interlock.policies._cache_key import cache_key
from interlock.policies._eval import EvalPrompt
from interlock.policies._verify import (
    CallableVerifier,
    SchemaVerifier,
    Verdict,
    Verifier,
    clip_text,
    json_equal,
)

PURPOSE_KEY: Final = "interlock.purpose"  # request metadata: why the call was made, for its ledger rows
EVAL_PURPOSE: Final = "eval"
_decode_line: Final = msgspec.json.Decoder(EvalPrompt).decode
_any_json: Final = msgspec.json.Decoder().decode
_stable: Final = msgspec.json.Encoder(order="deterministic").encode
_AT: Final = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN: Final = re.compile(r"unknown field `(?P<name>[^`]+)`")
_FIELDS: Final = "prompt, messages, id, expected, schema"


class EvalInputError(InterlockError):
    """A prompt of an eval set is malformed: ``where`` (file and line, or list index), ``field``, ``problem``."""

    def __init__(self, where: str, field: str, problem: str) -> None:
        head = f"{where}: field {field}" if field else where
        super().__init__(f"{head}: {problem}", kind=ErrorClass.BAD_REQUEST)
        self.where = where
        self.field = field
        self.problem = problem


def parse_prompts(text: str, source: str) -> tuple[EvalPrompt, ...]:
    """Every prompt of a JSONL text (``source`` names it in errors), checked, ids filled in."""
    prompts: list[EvalPrompt] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            prompt = _decode_line(line)
        except msgspec.ValidationError as exc:
            raise EvalInputError(where, *_located(str(exc))) from None
        except msgspec.DecodeError as exc:
            raise EvalInputError(where, "", f"not JSON ({exc})") from None
        prompts.append(checked(prompt, where, str(number)))
    if not prompts:
        raise EvalInputError(source, "", "holds no prompt (one JSON object per line)")
    return unique_ids(prompts, [f"{source} line {n}" for n, line in enumerate(text.splitlines(), 1) if line.strip()])


def as_prompts(prompts: Sequence[EvalPrompt | str]) -> tuple[EvalPrompt, ...]:
    """The library's prompts (``EvalPrompt`` or plain strings), checked, ids filled in (``1``, ``2``...)."""
    if isinstance(prompts, str):
        raise EvalInputError("prompts", "", "expected a sequence of prompts, got one string")
    found: list[EvalPrompt] = []
    for index, item in enumerate(prompts):
        where = f"prompts[{index}]"
        if isinstance(item, str):
            item = EvalPrompt(prompt=item)
        elif not isinstance(item, EvalPrompt):
            raise EvalInputError(where, "", f"expected an EvalPrompt or a string, got {type(item).__name__}")
        found.append(checked(item, where, str(index + 1)))
    if not found:
        raise EvalInputError("prompts", "", "no prompt given")
    return unique_ids(found, [f"prompts[{i}]" for i in range(len(found))])


def checked(prompt: EvalPrompt, where: str, default_id: str) -> EvalPrompt:
    """``prompt`` with its id filled in; raises ``EvalInputError`` for what msgspec's types cannot say."""
    if (prompt.prompt is None) == (prompt.messages is None):
        field = "messages" if prompt.prompt is not None else "prompt"
        problem = "give prompt or messages, not both" if prompt.prompt is not None else "missing (or messages)"
        raise EvalInputError(where, field, problem)
    if prompt.prompt is not None and not prompt.prompt.strip():
        raise EvalInputError(where, "prompt", "is empty")
    if prompt.messages is not None and not prompt.messages:
        raise EvalInputError(where, "messages", "is empty")
    if prompt.schema is not None:
        try:
            SchemaVerifier(schema=prompt.schema)
        except ValueError as exc:
            raise EvalInputError(where, "schema", str(exc)) from None
    return prompt if prompt.id else msgspec.structs.replace(prompt, id=default_id)


def unique_ids(prompts: Sequence[EvalPrompt], places: Sequence[str]) -> tuple[EvalPrompt, ...]:
    """``prompts`` unchanged; raises ``EvalInputError`` at the first id that repeats."""
    first: dict[str, str] = {}
    for prompt, where in zip(prompts, places, strict=True):
        if prompt.id in first:
            raise EvalInputError(where, "id", f"{prompt.id!r} repeats the id of {first[prompt.id]}")
        first[prompt.id] = where
    return tuple(prompts)


def _located(message: str) -> tuple[str, str]:
    """(field, problem) from a msgspec validation message (``Expected `str`, got `int` - at `$.prompt```)."""
    match = _AT.match(message)
    problem, path = (match["problem"], match["path"] or "") if match else (message, "")
    unknown = _UNKNOWN.search(problem)
    if unknown is not None:
        return unknown["name"], f"unknown field (expected one of {_FIELDS})"
    field = path.removeprefix(".")
    if not field and problem.startswith("Expected `object`"):
        return "", "expected a JSON object" + problem.removeprefix("Expected `object`")
    return field, problem[:1].lower() + problem[1:]


# -- requests and verifiers --------------------------------------------------------------------


def messages_of(prompt: EvalPrompt) -> tuple[Message, ...]:
    """The prompt's chat turns."""
    if prompt.prompt is not None:
        return (Message.text("user", prompt.prompt),)
    return tuple(m.message() for m in prompt.messages or ())


def eval_request(prompt: EvalPrompt, model: str, *, tenant: str, caller: str) -> ChatRequest:
    """The request of one eval call: pinned to ``model`` alone, past the response cache, tagged ``eval``.

    No task: a pin with a task would be followed by the job's chain, and an answer by any other
    model would measure that model. The response cache is left out (``cache = off``): a hit has
    no latency and costs nothing, so it would measure nothing; the eval keeps its own results.
    """
    fmt = None if prompt.schema is None else JsonSchemaFormat(name="eval_answer", schema=prompt.schema)
    return ChatRequest(
        messages=messages_of(prompt), model=model, tenant=tenant, caller=caller, response_format=fmt,
        metadata={"cache": "off", PURPOSE_KEY: EVAL_PURPOSE},
    )  # fmt: skip


def prompt_verifiers(prompt: EvalPrompt) -> tuple[Verifier, ...]:
    """The prompt's own verifiers: its ``schema``, then its ``expected`` answer."""
    found: list[Verifier] = []
    if prompt.schema is not None:
        found.append(SchemaVerifier(schema=prompt.schema))
    if prompt.expected is not msgspec.UNSET:
        found.append(expected_verifier(prompt.expected))
    return tuple(found)


def expected_verifier(expected: Any) -> CallableVerifier:
    """Accepts an answer equal to ``expected``: a string as trimmed text, any other value as JSON."""

    async def check(response: ChatResponse) -> Verdict:
        if isinstance(expected, str):
            if response.content.strip() == expected.strip():
                return Verdict(True, "the expected answer", "expected")
            return Verdict(False, clip_text(f"expected {expected.strip()!r}, got {response.content.strip()!r}", 200),
                           "expected")  # fmt: skip
        try:
            value = _any_json(response.content)
        except msgspec.DecodeError as exc:
            return Verdict(False, f"answer is not JSON: {exc}", "expected")
        if json_equal(value, expected):
            return Verdict(True, "the expected value", "expected")
        shown = f"expected {_stable(expected).decode()}, got {_stable(value).decode()}"
        return Verdict(False, clip_text(shown, 200), "expected")

    return CallableVerifier(name="expected", check=check)


def verifier_name(spec: Verifier) -> str:
    """A verifier's name as the report shows it (``schema``, ``reviewer:flagship``, ``agreement:mini``...)."""
    if isinstance(spec, CallableVerifier):
        return spec.name
    fields = msgspec.to_builtins(spec)
    kind = fields.pop("kind")
    target = fields.get("model") or fields.get("model_class")
    return f"{kind}:{target}" if target else str(kind)


# -- cache keys --------------------------------------------------------------------------------


def call_key(request: ChatRequest, model_id: str, repeat: int) -> str:
    """Where one eval call's answer is kept: the pinned request's cache key, per model id and repeat."""
    return "eval:call:" + cache_key(request, f"eval/{model_id}/{repeat}", request.tenant)


def verdict_key(call: str, prompt: EvalPrompt, verifiers: Sequence[Verifier]) -> str:
    """Where the verdict on one call's answer is kept: the call and every verifier that judges it."""
    expected = None if prompt.expected is msgspec.UNSET else ["expected", prompt.expected]
    specs = [{"callable": v.name} if isinstance(v, CallableVerifier) else msgspec.to_builtins(v) for v in verifiers]
    digest = hashlib.blake2b(_stable([call, expected, prompt.schema, specs]), digest_size=32)
    return "eval:verdict:" + digest.hexdigest()
