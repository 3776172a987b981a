"""What a simulated model says when it must be exact: JSON values valid for a schema, and whether
a user turn asks for a tool.

``sample_value`` builds one deterministic value for a JSON Schema (also for Gemini's upper-case
dialect): local ``$ref`` into ``$defs`` / ``definitions`` (any local pointer), ``allOf`` merged,
the first non-null branch of ``anyOf`` / ``oneOf``, ``const``, ``enum``, then ``examples``,
``example`` or ``default`` when given, then by type: objects with their required properties (the
first property when none is required, more up to ``minProperties``), arrays of
``max(minItems, 1)`` items (``prefixItems`` one each; distinct items under ``uniqueItems``),
strings for common ``format``s and simple ``pattern``s (literals, classes, escapes, groups, the
first alternative, the least repetition) within ``minLength`` / ``maxLength``, numbers within
their bounds and ``multipleOf``. Past ``_DEEP`` levels only what is required is built, so a
recursive schema ends.

``asks_for`` is the rule for ``tool_choice: auto``: a tool is called when the last user turn
names it. Its keywords are the parts of its name (split on ``_``, ``-``, ``.`` and camelCase) of
three letters or more, and the words of its description of five letters or more, less a few
words that name no subject (``get``, ``returns``, ...); a turn names the tool when one of its
words equals a keyword, case-insensitively, a trailing ``s`` ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_DEEP = 6
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z", "date": "2024-01-01", "time": "00:00:00Z", "duration": "P1D",
    "email": "sim@example.com", "idn-email": "sim@example.com", "hostname": "example.com",
    "idn-hostname": "example.com", "ipv4": "127.0.0.1", "ipv6": "::1", "uri": "https://example.com/sim",
    "iri": "https://example.com/sim", "uri-reference": "/sim", "url": "https://example.com/sim",
    "uuid": "00000000-0000-4000-8000-000000000000", "json-pointer": "/sim", "regex": "sim",
}
# Words of tool names and descriptions that say what kind of thing a tool is, not what it is about.
_GENERIC = frozenset((
    "get", "set", "the", "and", "for", "tool", "run", "call", "make", "use", "fetch", "with", "from", "into",
    "that", "this", "which", "about", "given", "their", "there", "these", "those", "where", "while", "would",
    "could", "should", "other", "return", "returns", "using", "value", "values", "string", "number", "result",
    "results", "function", "input", "output", "provided", "specified",
))


def sample_arguments(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object valid for a tool's parameters schema (``{}`` when it declares nothing)."""
    value = sample_value(schema)
    return value if isinstance(value, dict) else {}


def sample_value(schema: Any, root: Any = None, depth: int = 0, variant: int = 0) -> Any:
    """One JSON value valid for ``schema`` (``root`` resolves its ``$ref``s); ``variant`` varies it."""
    if not isinstance(schema, Mapping):
        return None if schema is False else "sim"
    root = schema if root is None else root
    schema = _resolved(schema, root, depth)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][variant % len(schema["enum"])]
    if variant == 0:  # a given example or default is what a model would most likely say
        examples = schema.get("examples")
        if isinstance(examples, list) and examples:
            return examples[0]
        for key in ("example", "default"):
            if schema.get(key) is not None:
                return schema[key]
    kind = _kind(schema)
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        return _array(schema, root, depth)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer", variant)
    if kind == "string":
        return _string(schema, variant)
    return {"boolean": variant % 2 == 0, "null": None}.get(kind, "sim")


def _resolved(schema: Mapping[str, Any], root: Any, depth: int) -> Mapping[str, Any]:
    """``schema`` with its ``$ref``, ``allOf`` and first ``anyOf``/``oneOf`` branch folded in."""
    for _ in range(_DEEP * 4):  # a chain of references ends, or is cut short here
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            target = _pointer(root, ref)
            schema = {**(target if isinstance(target, Mapping) else {}), **_without(schema, "$ref")}
            continue
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = dict(_without(schema, "allOf"))
            for part in schema["allOf"]:
                merged = _merge(merged, _resolved(part, root, depth) if isinstance(part, Mapping) else {})
            schema = merged
            continue
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                pick = next((b for b in branches if not _is_null(b)), branches[0])
                schema = _merge(dict(_without(schema, key)), pick if isinstance(pick, Mapping) else {})
                break
        else:
            return schema
    return schema


def _pointer(root: Any, ref: str) -> Any:
    node = root
    for token in ref[1:].split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return {}
    return node


def _without(schema: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = {**a, **b}
    if isinstance(a.get("properties"), Mapping) and isinstance(b.get("properties"), Mapping):
        out["properties"] = {**a["properties"], **b["properties"]}
    if isinstance(a.get("required"), list) and isinstance(b.get("required"), list):
        out["required"] = [*a["required"], *(n for n in b["required"] if n not in a["required"])]
    return out


def _is_null(schema: Any) -> bool:
    return isinstance(schema, Mapping) and str(schema.get("type", "")).lower() == "null"


def _kind(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if "minimum" in schema or "maximum" in schema or "multipleOf" in schema:
        return "number"
    return "string"


def _object(schema: Mapping[str, Any], root: Any, depth: int) -> dict[str, Any]:
    props = schema.get("properties")
    props = props if isinstance(props, Mapping) else {}
    required = schema.get("required")
    if isinstance(required, list):
        names = [n for n in required if isinstance(n, str)]
    else:
        names = list(props)[:1] if depth < _DEEP else []
    extra = [n for n in props if n not in names]
    names += extra[: max(0, int(schema.get("minProperties", 0) or 0) - len(names))]
    spare = schema.get("additionalProperties")
    return {n: sample_value(props.get(n, spare if isinstance(spare, Mapping) else {}), root, depth + 1) for n in names}


def _array(schema: Mapping[str, Any], root: Any, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    head = [sample_value(s, root, depth + 1) for s in prefix] if isinstance(prefix, list) else []
    least = int(schema.get("minItems", 0) or 0)
    count = max(least, len(head), 1 if depth < _DEEP else 0)
    if isinstance(schema.get("maxItems"), int):
        count = max(least, min(count, schema["maxItems"]))
    items = schema.get("items", {})
    if items is False:
        return head[:count]
    unique = bool(schema.get("uniqueItems"))
    rest = [sample_value(items, root, depth + 1, k if unique else 0) for k in range(len(head), count)]
    return head[:count] + rest


def _number(schema: Mapping[str, Any], integer: bool, variant: int) -> int | float:
    step = 1 if integer else 0.5  # how far inside an exclusive bound the value goes
    lows = [_num(schema.get("minimum"), 0), _num(schema.get("exclusiveMinimum"), step)]
    highs = [_num(schema.get("maximum"), 0), _num(schema.get("exclusiveMaximum"), -step)]
    low = max((b for b in lows if b is not None), default=None)
    high = min((b for b in highs if b is not None), default=None)
    value = max((1 if integer else 1.5) + variant, low if low is not None else -math.inf)
    value = min(value, high if high is not None else math.inf)
    multiple = _num(schema.get("multipleOf"), 0)
    if multiple is not None and multiple > 0:
        value = multiple * math.ceil(value / multiple)
        if high is not None and value > high:
            value = multiple * math.floor(high / multiple)
    return math.ceil(value) if integer else value


def _num(value: Any, shift: float) -> float | None:
    """``value`` moved by ``shift`` if it is a number (a bound), else None."""
    return value + shift if isinstance(value, int | float) and not isinstance(value, bool) else None


def _string(schema: Mapping[str, Any], variant: int) -> str:
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        return pattern_sample(pattern)
    text = _FORMATS.get(str(schema.get("format", "")), "sim" if variant == 0 else f"sim{variant}")
    least, most = schema.get("minLength"), schema.get("maxLength")
    if isinstance(least, int) and len(text) < least:
        text += "m" * (least - len(text))
    if isinstance(most, int) and len(text) > most:
        text = text[:most]
    return text


# --- a string for a simple pattern --------------------------------------------------------

_CLASSES = {"d": "0", "w": "a", "s": " ", "D": "a", "W": "-", "S": "a"}


def pattern_sample(pattern: str) -> str:
    """A string the pattern matches (``re.search``), for literals, classes, groups and quantifiers."""
    text, _ = _sequence(pattern, 0)
    return text


def _sequence(p: str, i: int) -> tuple[str, int]:
    """The sample of the first alternative from ``p[i]`` up to a closing ``)`` (other alternatives skipped)."""
    out: list[str] = []
    while i < len(p) and p[i] != ")":
        if p[i] == "|":  # the first alternative is said: skip the rest, up to this group's end
            depth = 0
            while i < len(p) and not (p[i] == ")" and depth == 0):
                if p[i] == "\\":
                    i += 1
                depth += {"(": 1, ")": -1}.get(p[i], 0) if i < len(p) else 0
                i += 1
            break
        atom, i = _atom(p, i)
        times, i = _quantifier(p, i)
        out.append(atom * times)
    return "".join(out), i


def _atom(p: str, i: int) -> tuple[str, int]:
    c = p[i]
    if c in "^$":
        return "", i + 1
    if c == ".":
        return "a", i + 1
    if c == "\\" and i + 1 < len(p):
        e = p[i + 1]
        return ("" if e in "bBAZz" else _CLASSES.get(e, e)), i + 2
    if c == "[":
        return _charset(p, i + 1)
    if c == "(":
        i += 1
        if p.startswith("?:", i) or p.startswith("?=", i):
            i += 2
        elif p.startswith("?P<", i) or p.startswith("?<", i):
            i = p.index(">", i) + 1
        text, i = _sequence(p, i)
        return text, i + 1
    return c, i + 1


def _charset(p: str, i: int) -> tuple[str, int]:
    negate = i < len(p) and p[i] == "^"
    i += negate
    start, members = i, list[str]()
    while i < len(p) and (p[i] != "]" or i == start):
        if p[i] == "\\" and i + 1 < len(p):
            members.append(_CLASSES.get(p[i + 1], p[i + 1]))
            i += 2
        elif i + 2 < len(p) and p[i + 1] == "-" and p[i + 2] != "]":
            members.append(p[i])
            i += 3
        else:
            members.append(p[i])
            i += 1
    if not negate:
        return (members[0] if members else ""), i + 1
    return next((c for c in "a0Z_ -" if c not in members), "~"), i + 1


def _quantifier(p: str, i: int) -> tuple[int, int]:
    if i >= len(p):
        return 1, i
    c, times = p[i], 1
    if c in "*?":
        times, i = 0, i + 1
    elif c == "+":
        times, i = 1, i + 1
    elif c == "{" and re.match(r"\{\d+(,\d*)?\}", p[i:]):
        close = p.index("}", i)
        times, i = int(p[i + 1 : close].split(",")[0]), close + 1
    else:
        return 1, i
    if i < len(p) and p[i] in "?+":  # lazy or possessive: the same least count
        i += 1
    return times, i


# --- does the conversation call for a tool ------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in _WORD.findall(text.lower())}


def keywords(name: str, description: str) -> set[str]:
    """The words that name a tool: its name's parts (3+ letters) and its description's words (5+)."""
    parts = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    named = {w for w in _words(parts) if len(w) >= 3}
    described = {w for w in _words(description) if len(w) >= 5}
    return (named | described) - _GENERIC


def asks_for(turn: str, name: str, description: str) -> bool:
    """True if the user turn ``turn`` names the tool (a word of it is one of the tool's keywords)."""
    return bool(_words(turn) & keywords(name, description))
