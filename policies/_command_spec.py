"""Settings of a command-line model provider (``kind = "command"``)."""

from __future__ import annotations

from typing import Literal

import msgspec

from interlock._errors import ErrorClass


class StderrRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A regular expression over stderr that classifies a failure."""

    pattern: str
    error: ErrorClass


class CommandSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to run a model's CLI: argv, how the prompt goes in, how the answer comes out.

    ``argv`` may hold ``{model}`` and, with ``prompt_via = "arg"``, ``{prompt}`` placeholders.
    With ``output = "jsonl"`` every stdout line is a JSON object; ``text_field`` is the dotted
    path of its text (e.g. ``delta.text``), and the optional usage fields name token counts.
    """

    argv: tuple[str, ...]
    prompt_via: Literal["stdin", "arg"] = "stdin"
    output: Literal["text", "jsonl"] = "text"
    text_field: str = "text"
    input_tokens_field: str | None = None
    output_tokens_field: str | None = None
    exit_codes: dict[int, ErrorClass] = msgspec.field(default_factory=dict)
    stderr_rules: tuple[StderrRule, ...] = ()
    timeout_s: float = 300.0
    env: dict[str, str] = msgspec.field(default_factory=dict)

    def __repr__(self) -> str:
        # env values may be credentials: a repr names the variables only.
        return f"CommandSpec(argv={self.argv!r}, output={self.output!r}, env={sorted(self.env)!r})"
