"""JSON Schema -> the Gemini schema dialect (a subset of the OpenAPI 3.0 Schema Object).

Also builds the function declarations of a request's tools from their translated schemas.

Gemini's ``Schema`` (Gemini API reference; googleapis/python-genai ``types.Schema``) takes:
type (upper-case), format, title, description, nullable, enum (strings), default, example,
properties, required, propertyOrdering, minProperties, maxProperties, items, minItems,
maxItems, minLength, maxLength, pattern, minimum, maximum, anyOf. The translation is
faithful or it fails; what it does with each other JSON Schema keyword:

- rewritten: ``type: [T, "null"]`` / an ``anyOf`` null branch / ``null`` in ``enum`` ->
  ``nullable``; several types -> ``anyOf`` of one type each; ``const: "s"`` -> ``enum: ["s"]``;
  local ``$ref`` (``#/$defs/..``, ``#/definitions/..``, any local pointer) inlined unless
  recursive; ``allOf`` / ``oneOf`` of a single schema merged in; integer
  ``exclusiveMinimum: n`` -> ``minimum: floor(n) + 1`` (and the maximum alike); an ``anyOf``
  left with one branch is merged into its parent.
- kept as is: ``title``, ``description``, ``default``, ``example`` (Gemini takes them).
- dropped, because they assert nothing: ``$schema``, ``$id``, ``$comment``, ``$defs`` /
  ``definitions`` (inlined where used), ``examples``, ``deprecated``, ``readOnly``,
  ``writeOnly``, ``contentEncoding``, ``contentMediaType``, ``format`` values Gemini does not
  know (an annotation under the 2020-12 default vocabulary), empty ``properties``,
  ``additionalProperties`` / ``unevaluatedProperties`` given as a boolean or ``{}`` (Gemini
  generates declared properties only), ``uniqueItems: false``.
- rejected (``RequestError`` naming the field, the subject, the keyword and the provider):
  recursive or remote ``$ref``, ``additionalProperties`` with a schema, ``patternProperties``,
  ``propertyNames``, ``if``/``then``/``else``, ``not``, ``allOf``/``oneOf`` of several schemas,
  ``multipleOf``, ``uniqueItems: true``, tuple ``items`` / ``prefixItems``, ``contains``,
  ``dependentRequired`` / ``dependentSchemas``, non-string ``enum`` / ``const`` values, a
  schema that allows only null, boolean schemas, and any keyword this module does not know.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from interlock._errors import RequestError
from interlock._types import ToolSpec
from interlock.adapters.providers.gemini._wire import GFunctionDeclaration, GTool

_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
_COPIED = frozenset(
    {"title", "description", "default", "example", "pattern", "minLength", "maxLength", "minItems", "maxItems"}
    | {"minProperties", "maxProperties", "required", "propertyOrdering"}
)
_ANNOTATIONS = frozenset({"title", "description", "default", "example", "examples", "deprecated", "$comment"})
_DROPPED = (_ANNOTATIONS - _COPIED) | {"$schema", "$id", "$defs", "definitions", "readOnly", "writeOnly"}
_DROPPED |= {"contentEncoding", "contentMediaType"}
# Handled before the keyword loop (type, nullability, unions, bounds).
_STRUCTURAL = frozenset(
    {"type", "anyOf", "enum", "const", "nullable", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
)
_FORMATS = {"NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}, "STRING": {"enum", "date-time"}}
# Keywords that constrain one JSON type only: they follow that type into its anyOf branch.
_APPLIES = {
    "string": {"minLength", "maxLength", "pattern", "format"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format", "multipleOf"},
    "array": {"items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains"},
    "object": {"properties", "required", "propertyOrdering", "minProperties", "maxProperties"}
    | {"additionalProperties", "unevaluatedProperties", "patternProperties", "propertyNames"},
}
_APPLIES["integer"] = _APPLIES["number"]
_TYPED = frozenset().union(*_APPLIES.values())


def to_gemini_schema(
    schema: Mapping[str, Any], *, field: str, subject: str, provider: str, order_properties: bool = False
) -> dict[str, Any]:
    """Translate a JSON Schema; ``field``/``subject`` (e.g. ``tool 'x'``) name it in errors.

    ``order_properties`` adds ``propertyOrdering`` in declaration order (for response schemas,
    where Gemini would otherwise order the generated keys itself).
    """
    return _Translator(schema, field, subject, provider, order_properties).node(schema, "")


def function_declarations(tools: Sequence[ToolSpec], provider: str) -> tuple[GTool, ...] | None:
    """The tools as one Gemini ``Tool``; parameters without properties are left out."""
    if not tools:
        return None
    declarations = []
    for i, tool in enumerate(tools):
        field = f"tools[{i}].parameters"
        params = to_gemini_schema(tool.parameters, field=field, subject=f"tool {tool.name!r}", provider=provider)
        if params.get("type") != "OBJECT":
            raise RequestError(field, f"tool {tool.name!r}: {provider} takes parameters as an object schema")
        parameters = params if "properties" in params else None
        declarations.append(GFunctionDeclaration(tool.name, tool.description or None, parameters))
    return (GTool(function_declarations=tuple(declarations)),)


class _Translator:
    """One translation: the root (for local pointers) and the ``$ref`` chain being inlined."""

    def __init__(self, root: Mapping[str, Any], field: str, subject: str, provider: str, order: bool) -> None:
        self._root, self._field, self._subject, self._provider = root, field, subject, provider
        self._order = order
        self._active: list[str] = []
        self._special: dict[str, Callable[[str, Any, dict[str, Any], str], None]] = {
            "properties": self._properties,
            "items": self._items,
            "format": self._format,
            "additionalProperties": self._open_object,
            "unevaluatedProperties": self._open_object,
            "uniqueItems": self._unique,
        }

    def fail(self, keyword: str, where: str, why: str) -> NoReturn:
        """Raise the one error of this module: field, subject, keyword, location and provider."""
        problem = (
            f"{self._subject}: JSON Schema keyword {keyword!r} at {where or '/'} has no faithful "
            f"translation to the {self._provider} schema dialect ({why})"
        )
        raise RequestError(self._field, problem)

    def node(self, schema: object, where: str) -> dict[str, Any]:
        """Translate one schema object found at JSON pointer ``where``."""
        if not isinstance(schema, dict):
            self.fail(repr(schema), where, "boolean schemas are not supported")
        if "$ref" in schema:
            return self._inline(schema, where)
        for key in ("allOf", "oneOf"):
            if key in schema:
                return self.node(self._single(schema, key, where), where)
        types, type_null = self._types(schema, where)
        if len(types) > 1:
            return self._split(schema, types, type_null or schema.get("nullable") is True, where)
        branches, any_null = self._any_of(schema, where)
        values, enum_null = self._enum(schema, types, where)
        allows = [ok for key, ok in (("type", type_null), ("anyOf", any_null), ("enum", enum_null)) if key in schema]
        nullable = schema.get("nullable") is True or (bool(allows) and all(allows))
        if nullable and not (types or branches or values):
            self.fail("type", where, "a schema that allows only null")
        out: dict[str, Any] = {}
        if types or values:
            out["type"] = _TYPES[types[0]] if types else "STRING"
        if values:
            out["enum"] = values
        if branches:
            out["anyOf"] = branches
        if nullable:
            out["nullable"] = True
        self._bounds(schema, types[0] if types else None, out, where)
        for key, value in schema.items():
            self._keyword(key, value, out, where)
        if self._order and len(out.get("properties", ())) > 1 and "propertyOrdering" not in out:
            out["propertyOrdering"] = list(out["properties"])
        return _collapse(out)

    # -- references and combinators ------------------------------------------------------------

    def _inline(self, schema: dict[str, Any], where: str) -> dict[str, Any]:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            self.fail("$ref", where, f"only local references can be inlined, got {ref!r}")
        if ref in self._active:
            self.fail("$ref", where, f"{ref} is recursive and cannot be inlined")
        target: object = self._root
        for token in filter(None, ref[1:].split("/")):
            key = token.replace("~1", "/").replace("~0", "~")
            if isinstance(target, list) and key.isdigit() and int(key) < len(target):
                target = target[int(key)]
            elif isinstance(target, dict) and key in target:
                target = target[key]
            else:
                self.fail("$ref", where, f"{ref} does not resolve")
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        self._active.append(ref)
        try:
            return self.node(self._merge(target, siblings, "$ref", where), where)
        finally:
            self._active.pop()

    def _single(self, schema: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        subs = schema[key]
        if not isinstance(subs, list) or len(subs) != 1:
            self.fail(key, where, "only a single subschema can be merged")
        return self._merge(subs[0], {k: v for k, v in schema.items() if k != key}, key, where)

    def _merge(self, inner: object, outer: dict[str, Any], keyword: str, where: str) -> dict[str, Any]:
        if not isinstance(inner, dict):
            self.fail(keyword, where, "it refers to a boolean schema")
        clash = [k for k in outer if k in inner and k not in _ANNOTATIONS and inner[k] != outer[k]]
        if clash:
            self.fail(keyword, where, f"sibling keyword {clash[0]!r} conflicts with the referenced schema")
        return {**inner, **outer}

    def _types(self, schema: dict[str, Any], where: str) -> tuple[list[str], bool]:
        raw = schema.get("type")
        if raw is None:
            return [], False
        names = raw if isinstance(raw, list) else [raw]
        for name in names:
            if name != "null" and name not in _TYPES:
                self.fail("type", where, f"unknown type {name!r}")
        return [n for n in names if n != "null"], "null" in names

    def _any_of(self, schema: dict[str, Any], where: str) -> tuple[list[dict[str, Any]], bool]:
        raw = schema.get("anyOf")
        if raw is None:
            return [], False
        if not isinstance(raw, list) or not raw:
            self.fail("anyOf", where, "it must be a non-empty list")
        branches = [self.node(sub, f"{where}/anyOf/{i}") for i, sub in enumerate(raw) if not _is_null(sub)]
        return branches, len(branches) < len(raw)

    def _enum(self, schema: dict[str, Any], types: list[str], where: str) -> tuple[list[str], bool]:
        if "enum" in schema and "const" in schema:
            self.fail("const", where, "const combined with enum")
        key = "enum" if "enum" in schema else "const" if "const" in schema else None
        if key is None:
            return [], False
        raw = schema[key] if key == "enum" else [schema[key]]
        if not isinstance(raw, list):
            self.fail(key, where, "enum must be a list")
        values = [v for v in raw if v is not None]
        if any(not isinstance(v, str) for v in values) or types not in ([], ["string"]):
            self.fail(key, where, f"{self._provider} enum values must be strings")
        return values, len(values) < len(raw)

    def _split(self, schema: dict[str, Any], types: list[str], nullable: bool, where: str) -> dict[str, Any]:
        for key in ("enum", "const", "anyOf"):
            if key in schema:
                self.fail(key, where, "combined with a list of several types")
        outer = self.node({k: v for k, v in schema.items() if k not in _TYPED | {"type", "nullable"}}, where)
        outer["anyOf"] = [
            self.node({"type": t, **{k: v for k, v in schema.items() if k in _APPLIES.get(t, ())}}, where)
            for t in types
        ]
        if nullable:
            outer["nullable"] = True
        return outer

    # -- keywords ------------------------------------------------------------------------------

    def _keyword(self, key: str, value: Any, out: dict[str, Any], where: str) -> None:
        if key in _STRUCTURAL or key in _DROPPED:
            return
        if key in _COPIED:
            out[key] = value
        elif key in self._special:
            self._special[key](key, value, out, where)
        else:
            self.fail(key, where, "the keyword is not supported")

    def _bounds(self, schema: dict[str, Any], jtype: str | None, out: dict[str, Any], where: str) -> None:
        for plain, strict, step in (("minimum", "exclusiveMinimum", 1), ("maximum", "exclusiveMaximum", -1)):
            bound = schema.get(plain)
            if strict in schema:
                edge = schema[strict]
                if jtype != "integer" or isinstance(edge, bool) or not isinstance(edge, int | float):
                    self.fail(strict, where, "an exclusive bound is exact only for integers")
                edge = math.floor(edge) + 1 if step > 0 else math.ceil(edge) - 1
                bound = edge if bound is None else (max if step > 0 else min)(bound, edge)
            if bound is not None:
                out[plain] = bound

    def _properties(self, key: str, value: Any, out: dict[str, Any], where: str) -> None:
        if not isinstance(value, dict):
            self.fail("properties", where, "it must be an object")
        props = {name: self.node(sub, f"{where}/properties/{name}") for name, sub in value.items()}
        if props:
            out["properties"] = props

    def _items(self, key: str, value: Any, out: dict[str, Any], where: str) -> None:
        if not isinstance(value, dict):
            self.fail("items", where, "tuple or boolean items are not supported")
        out["items"] = self.node(value, f"{where}/items")

    def _format(self, key: str, value: Any, out: dict[str, Any], where: str) -> None:
        if isinstance(value, str) and value in _FORMATS.get(out.get("type", ""), ()):
            out["format"] = value

    def _open_object(self, key: str, value: Any, out: dict[str, Any], where: str) -> None:
        if not (isinstance(value, bool) or value == {}):
            self.fail(key, where, "a schema for additional properties is not supported")

    def _unique(self, key: str, value: Any, out: dict[str, Any], where: str) -> None:
        if value is not False:
            self.fail(key, where, "unique items cannot be required")


def _is_null(schema: object) -> bool:
    """A branch that admits only null (and carries nothing but annotations)."""
    if not isinstance(schema, dict) or schema.get("type") not in ("null", ["null"]):
        return False
    return all(k == "type" or k in _ANNOTATIONS for k in schema)


def _collapse(out: dict[str, Any]) -> dict[str, Any]:
    """Merge a lone anyOf branch into its parent when no keyword would be shadowed."""
    branches = out.get("anyOf")
    if not branches or len(branches) != 1 or any(k in out for k in branches[0]):
        return out
    merged = {k: v for k, v in out.items() if k != "anyOf"}
    merged.update(branches[0])
    return merged
