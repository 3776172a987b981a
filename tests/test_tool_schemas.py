"""``check_tool_schemas``: a tool schema that cannot be used is the caller's error, found before any call."""

from __future__ import annotations

from typing import Any

import pytest

from interlock._errors import RequestError
from interlock._types import ToolCall, ToolSpec
from interlock.policies import _tool_validate
from interlock.policies._tool_validate import MAX_SCHEMA_DEPTH, check_tool_schemas, validate_tool_calls

CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _chain(depth: int) -> dict[str, Any]:
    """A valid schema exactly ``depth`` JSON objects deep (``items`` inside ``items``)."""
    value: dict[str, Any] = {"type": "string"}
    for _ in range(depth - 1):
        value = {"items": value}
    return value


@pytest.mark.parametrize(
    "schema",
    [
        CITY,
        {"$defs": {"c": {"type": "string"}}, "properties": {"city": {"$ref": "#/$defs/c"}}},
        {"$defs": {"c": {"$anchor": "city", "type": "string"}}, "properties": {"city": {"$ref": "#city"}}},
        {"properties": {"v": {"$id": "https://example.com/v", "$defs": {"q": {}}, "items": {"$ref": "#/$defs/q"}}}},
        {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"c": {}},
         "items": {"$ref": "#/definitions/c"}},
        {"properties": {"p": {"default": {"$ref": "#/nowhere"}, "enum": [{"$ref": "#/nowhere"}]}}},
        _chain(MAX_SCHEMA_DEPTH),
    ],
    ids=["plain", "defs_ref", "anchor_ref", "ref_under_id", "draft7_definitions", "ref_shaped_data", "at_depth_limit"],
)
def test_usable_schemas_pass(schema: dict[str, Any]) -> None:
    """Valid schemas pass: refs into $defs, to anchors, under a nested $id, draft-07, $ref-shaped data in default."""
    check_tool_schemas([ToolSpec("ok", parameters=schema)])


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "objekt"}, "not a valid JSON Schema at $.type: 'objekt' is not valid under any of the given schemas"),
        ({"properties": {"a": {"minLength": -1}}}, "not a valid JSON Schema at $.properties.a.minLength"),
        ({"properties": {"a": {"$ref": "#/$defs/a"}}}, "$ref '#/$defs/a' does not resolve within the schema"),
        ({"items": {"$ref": "#missing-anchor"}}, "$ref '#missing-anchor' does not resolve within the schema"),
        ({"items": {"$ref": "https://example.com/s.json"}}, "$ref 'https://example.com/s.json' does not resolve"),
        (_chain(MAX_SCHEMA_DEPTH + 1), f"the schema is nested deeper than {MAX_SCHEMA_DEPTH} levels"),
        (_chain(5000), f"the schema is nested deeper than {MAX_SCHEMA_DEPTH} levels"),
        ({"default": object()}, "the schema is not JSON"),
    ],
    ids=[
        "bad_type", "bad_keyword_value", "dangling_pointer", "missing_anchor", "remote_ref", "one_too_deep",
        "5000_deep", "not_json",
    ],
)
def test_unusable_schema_is_a_request_error_naming_tool_and_problem(schema: dict[str, Any], problem: str) -> None:
    """Invalid JSON Schema, a $ref that resolves nowhere in the schema, absurd nesting: each names tool and problem."""
    tools = [ToolSpec("fine", parameters=CITY), ToolSpec("broken", parameters=schema)]
    with pytest.raises(RequestError) as info:
        check_tool_schemas(tools)
    assert info.value.field == "tools[1].parameters"
    assert info.value.problem.startswith(f"tool 'broken': {problem}")
    assert len(str(info.value)) < 400  # one readable line, however big the schema


def test_verdicts_are_cached_by_content(monkeypatch: pytest.MonkeyPatch) -> None:
    """An equal schema (a fresh dict per request, as a gateway decodes it) is checked once, then answered from cache."""
    checked: list[bytes] = []
    real = _tool_validate._encoded_problem

    def counting(encoded: bytes) -> str | None:
        checked.append(encoded)
        return real(encoded)

    monkeypatch.setattr(_tool_validate, "_encoded_problem", counting)
    schema = {"type": "object", "properties": {"cached_probe": {"type": "integer", "minimum": 3}}}
    for _ in range(3):
        check_tool_schemas([ToolSpec("t", parameters=dict(schema))])
    broken = {"type": "object", "properties": {"cached_probe": {"$ref": "#/nope"}}}
    for _ in range(2):
        with pytest.raises(RequestError):
            check_tool_schemas([ToolSpec("t", parameters=dict(broken))])
    assert len(checked) == 2  # one check per distinct schema, the refusal cached as well as the pass


def test_validate_tool_calls_refuses_an_unresolvable_ref_as_the_callers_error() -> None:
    """Validating a response's tool calls against a schema with a dangling $ref is a RequestError, not a crash."""
    broken = ToolSpec("bad", parameters={"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}})
    with pytest.raises(RequestError) as info:
        validate_tool_calls([broken], [ToolCall("c1", "bad", '{"a": 1}')])
    assert info.value.field == "tools[0].parameters"
