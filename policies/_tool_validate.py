"""Tool-call validation: each call's arguments checked against its tool's JSON Schema.

``validate_tool_calls`` lists every problem of a response's tool calls: a tool the request did
not offer, arguments that are not JSON (or not a JSON object), and each schema violation with
the JSON path of the offending value (``$.items[2].qty``). Empty arguments count as ``{}``:
some providers send an empty string for a call without parameters.

``check_tool_schemas`` refuses a request whose offered tools cannot be checked at all, before any
upstream call: a parameters schema that is not valid JSON Schema (its ``$schema`` dialect, else
Draft 2020-12), a ``$ref`` that does not resolve within the schema (remote references are never
fetched), or one nested deeper than ``MAX_SCHEMA_DEPTH``. Verdicts are cached by a digest of the
schema's JSON: tool lists repeat across requests, and the meta-schema check costs from about a
millisecond (one property) to tens of milliseconds (fifty), while a cached verdict costs microseconds.

``corrective_message`` turns the problems into the one user message the request run sends back for
a single retry. The message quotes the rejected arguments, so the request run can append it to the
*original* messages without the failed assistant turn: providers require every assistant tool
call to be answered by a tool result, which a retry would otherwise have to invent.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any, Final, Literal

import msgspec
import referencing
import referencing.jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.validators import Draft202012Validator, validator_for
from referencing.exceptions import Unresolvable

from interlock._errors import RequestError
from interlock._types import Message, ToolCall, ToolSpec
from interlock.policies._verify import clip_text, json_validator

ProblemKind = Literal["unknown_tool", "invalid_json", "schema"]
MAX_QUOTED: Final = 500
# Containers (objects and arrays) from the schema's root down; real tool schemas stay far below,
# and jsonschema's recursive meta-schema check has ample stack at this depth.
MAX_SCHEMA_DEPTH: Final = 64
_ANY_JSON: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()
_CACHED: Final = 1024
# Verdicts by a digest of the schema's JSON: a function of the key alone, so caching keeps this pure.
_VERDICTS: dict[bytes, str | None] = {}
_EVICTING: Final = threading.Lock()


class ToolCallProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One problem of one tool call; ``path`` is the JSON path in its arguments (``$`` for the whole)."""

    call_id: str
    tool: str
    kind: ProblemKind
    path: str
    message: str
    arguments: str


def check_tool_schemas(tools: Sequence[ToolSpec]) -> None:
    """Raise ``RequestError`` naming the first tool whose parameters schema cannot be used.

    The field is ``tools[<index>].parameters``; the problem names the tool and says what is wrong:
    not valid JSON Schema (with the path inside the schema), an unresolvable ``$ref``, nesting
    deeper than ``MAX_SCHEMA_DEPTH``, or a value that is not JSON at all.
    """
    for i, tool in enumerate(tools):
        problem = _schema_problem(tool.parameters)
        if problem is not None:
            raise RequestError(f"tools[{i}].parameters", f"tool {tool.name!r}: {problem}")


def _schema_problem(schema: object) -> str | None:
    try:
        encoded = _ENCODER.encode(schema)
    except RecursionError:
        return f"the schema is nested deeper than {MAX_SCHEMA_DEPTH} levels"
    except (TypeError, ValueError, OverflowError) as exc:
        return clip_text(f"the schema is not JSON ({exc})", 300)
    # A digest, not the bytes, is the key: a cache of client-sent schemas must stay small.
    key = hashlib.blake2b(encoded, digest_size=16).digest()
    try:
        return _VERDICTS[key]
    except KeyError:
        pass
    verdict = _encoded_problem(encoded)
    with _EVICTING:  # the gateway checks in worker threads: one evicts at a time
        if len(_VERDICTS) >= _CACHED:
            del _VERDICTS[next(iter(_VERDICTS))]  # the oldest verdict goes first
        _VERDICTS[key] = verdict
    return verdict


def _encoded_problem(encoded: bytes) -> str | None:
    too_deep = f"the schema is nested deeper than {MAX_SCHEMA_DEPTH} levels"
    try:
        schema = _ANY_JSON.decode(encoded)
    except RecursionError:  # encoded just inside the stack's reach, decoded one frame deeper
        return too_deep
    if not isinstance(schema, dict):
        return f"the schema must be a JSON object, got {type(schema).__name__}"
    if _deeper_than(schema, MAX_SCHEMA_DEPTH):
        return too_deep
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        return clip_text(f"not a valid JSON Schema at {exc.json_path}: {exc.message}", 300)
    except RecursionError:  # a shape within the depth limit that still defeats the recursive check
        return "the schema is nested too deeply to check"
    return _unresolved_ref(schema)


def _deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` containers; iterative, so any depth is safe to ask."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _unresolved_ref(schema: dict[str, Any]) -> str | None:
    """The first ``$ref`` (or ``$dynamicRef``) that does not resolve inside ``schema`` itself."""
    spec = referencing.jsonschema.specification_with(str(schema.get("$schema", "")),
                                                     default=referencing.jsonschema.DRAFT202012)  # fmt: skip
    root = spec.create_resource(schema)
    uri = root.id() or ""
    # An empty registry: a reference is resolved against this document only, never fetched.
    resolver = referencing.Registry().with_resource(uri, root).resolver(base_uri=uri)
    pending = [(root, resolver)]
    while pending:
        resource, here = pending.pop()
        contents = resource.contents
        for keyword in ("$ref", "$dynamicRef"):
            ref = contents.get(keyword) if isinstance(contents, dict) else None
            if isinstance(ref, str):
                try:
                    here.lookup(ref)
                except Unresolvable:
                    return clip_text(f"{keyword} {ref!r} does not resolve within the schema", 300)
        pending.extend((sub, here.in_subresource(sub)) for sub in resource.subresources())
    return None


def _checked_schemas(tools: Sequence[ToolSpec]) -> dict[str, dict[str, Any]]:
    """Each tool's parameters schema, checked (cached): a malformed one is the caller's error, not the model's."""
    check_tool_schemas(tools)
    return {tool.name: tool.parameters for tool in tools}


def _call_problems(call: ToolCall, schema: dict[str, Any]) -> list[ToolCallProblem]:
    def problem(kind: ProblemKind, path: str, message: str) -> ToolCallProblem:
        return ToolCallProblem(call_id=call.id, tool=call.name, kind=kind, path=path, message=clip_text(message, 300),
                               arguments=call.arguments)  # fmt: skip

    try:
        value = _ANY_JSON.decode(call.arguments) if call.arguments.strip() else {}
    except msgspec.DecodeError as exc:
        return [problem("invalid_json", "$", f"arguments are not valid JSON ({exc})")]
    if not isinstance(value, dict):
        return [problem("schema", "$", "arguments must be a JSON object")]
    errors = sorted(json_validator(schema).iter_errors(value), key=lambda e: (e.json_path, e.message))
    return [problem("schema", e.json_path, e.message) for e in errors]


def validate_tool_calls(tools: Sequence[ToolSpec], calls: Sequence[ToolCall]) -> list[ToolCallProblem]:
    """Every problem of ``calls`` against the offered ``tools``, in call order; empty when all are valid.

    Raises ``RequestError`` when an offered tool's own parameters schema is malformed.
    """
    schemas = _checked_schemas(tools)
    problems: list[ToolCallProblem] = []
    for call in calls:
        schema = schemas.get(call.name)
        if schema is None:
            offered = ", ".join(sorted(schemas)) or "none"
            problems.append(ToolCallProblem(call_id=call.id, tool=call.name, kind="unknown_tool", path="$",
                                            message=clip_text(f"no tool named {call.name!r}; offered: {offered}"),
                                            arguments=call.arguments))  # fmt: skip
            continue
        problems.extend(_call_problems(call, schema))
    return problems


def _quote(arguments: str) -> str:
    return arguments if len(arguments) <= MAX_QUOTED else arguments[: MAX_QUOTED - 1] + "…"


def corrective_message(problems: Sequence[ToolCallProblem]) -> Message:
    """The user message asking the model to redo its tool calls, naming every problem by call and path."""
    if not problems:
        raise ValueError("no tool-call problems to correct")
    lines = ["Your tool calls could not be run. Call the tools again with corrected arguments."]
    seen: set[str] = set()
    for p in problems:
        if p.call_id not in seen:
            seen.add(p.call_id)
            lines.append(f"\nCall {p.call_id} to {p.tool!r} with arguments: {_quote(p.arguments) or '(empty)'}")
        where = "" if p.kind == "unknown_tool" else f" at {p.path}"
        lines.append(f"- {p.kind}{where}: {p.message}")
    return Message.text("user", "\n".join(lines))
