"""Every error of a configuration at once, each with its key path: what ``interlock check`` reports.

``parse_config`` stops at the first error, which is what a program starting up needs. A person
fixing a file wants them all: ``validate_config`` decodes in collecting mode (``_decode`` with
``DecodeProblems``: an entry that fails is left out, a section that fails is read as its
default) and then runs every cross-check in collecting mode too (``check_config`` with a list).

A cross-check that only echoes a shape error already reported is left out: one that names an
entry the decode had to leave out (a chain naming a model whose price was malformed would
otherwise be "unknown model" too; the classes such a model declared stay known), one under a
section decoded as its default, or any
cross-check at all once a whole table of named entries (``providers``, ``models``, ``jobs``,
``tenants``) was unreadable, since then every reference into it would fail.
"""

from __future__ import annotations

import tomllib

import msgspec

from interlock._errors import ConfigError
from interlock.policies._config import Config, DecodeProblems, _decode
from interlock.policies._config_check import check_config

_NAMED_SECTIONS = frozenset({"providers", "models", "jobs", "tenants"})


class ConfigCheck(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of ``validate_config``: the checked config when there is no error, else every error in order."""

    config: Config | None
    errors: tuple[ConfigError, ...]


def validate_config(text: str, *, source: str = "<string>") -> ConfigCheck:
    """Decode and check TOML ``text``, collecting every error instead of raising the first."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return ConfigCheck(config=None, errors=(ConfigError(source, f"not valid TOML: {exc}"),))
    problems = DecodeProblems()
    decoded = _decode(raw, problems)
    found: list[ConfigError] = []
    try:
        checked = check_config(decoded, found, more_classes=tuple(sorted(problems.classes)))
    except ConfigError as exc:  # a check that does not collect yet: its one error, and the checks stop there
        found.append(exc)
        checked = decoded
    errors = (*problems.errors, *(e for e in found if not _echoes(e, problems)))
    return ConfigCheck(config=None if errors else checked, errors=errors)


def _echoes(error: ConfigError, problems: DecodeProblems) -> bool:
    """Whether a cross-check's ``error`` only repeats what the decode already reported."""
    if problems.broken & _NAMED_SECTIONS:
        return True
    if any(error.key == section or error.key.startswith((f"{section}.", f"{section}[")) for section in problems.broken):
        return True
    return any(repr(name) in error.problem for name in problems.dropped)
