"""Tool-call validation: each call's arguments checked against its tool's JSON Schema.

``validate_tool_calls`` lists every problem of a response's tool calls: a tool the request did
not offer, arguments that are not JSON (or not a JSON object), and each schema violation with
the JSON path of the offending value (``$.items[2].qty``). Empty arguments count as ``{}``:
some providers send an empty string for a call without parameters.

``corrective_message`` turns the problems into the one user message the request run sends back for
a single retry. The message quotes the rejected arguments, so the request run can append it to the
*original* messages without the failed assistant turn: providers require every assistant tool
call to be answered by a tool result, which a retry would otherwise have to invent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

import msgspec
from jsonschema.exceptions import SchemaError
from jsonschema.validators import Draft202012Validator, validator_for

from interlock._errors import RequestError
from interlock._types import Message, ToolCall, ToolSpec
from interlock.policies._verify import clip_text, json_validator

ProblemKind = Literal["unknown_tool", "invalid_json", "schema"]
MAX_QUOTED: Final = 500
_ANY_JSON: Final = msgspec.json.Decoder()


class ToolCallProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One problem of one tool call; ``path`` is the JSON path in its arguments (``$`` for the whole)."""

    call_id: str
    tool: str
    kind: ProblemKind
    path: str
    message: str
    arguments: str


def _checked_schemas(tools: Sequence[ToolSpec]) -> dict[str, dict[str, Any]]:
    """Each tool's parameters schema, checked once: a malformed one is the caller's error, not the model's."""
    out: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        try:
            validator_for(tool.parameters, default=Draft202012Validator).check_schema(tool.parameters)
        except SchemaError as exc:
            raise RequestError(f"tools[{i}].parameters", f"not a valid JSON Schema: {exc.message}") from None
        out[tool.name] = tool.parameters
    return out


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
