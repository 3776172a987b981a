"""A secret value that never shows itself in a repr, str, log line or exception."""

from __future__ import annotations

import os
from typing import final

from ._errors import ConfigError


@final
class Secret:
    """Holds an API key; only ``reveal()`` gives the value, and only adapters call it."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, source: str = "value") -> None:
        self._value = value
        self._source = source

    @classmethod
    def from_env(cls, variable: str, environ: dict[str, str] | None = None) -> Secret:
        """Read the secret from the named environment variable; a missing one is a ConfigError."""
        env = os.environ if environ is None else environ
        value = env.get(variable)
        if not value:
            raise ConfigError(f"env.{variable}", "environment variable is not set")
        return cls(value, source=f"${variable}")

    def reveal(self) -> str:
        """The secret itself; for the one adapter line that puts it in a header."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self._source}, ****)"

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled")
