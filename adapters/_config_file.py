"""Reading a configuration: the TOML file at a path, or the embedded default the package ships.

Policies parse text and read no files; this is the seam where the text comes from the disk.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from interlock._errors import ConfigError
from interlock.policies._config import Config, parse_config

DEFAULT_SOURCE = "interlock.policies/default.toml"


def load_config(path: str | Path) -> Config:
    """Read and check the TOML file at ``path``; a file that cannot be read is a ``ConfigError`` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(str(path), f"cannot read the file ({reason})") from exc
    return parse_config(text, source=str(path))


def default_config() -> Config:
    """The embedded default: a simulated fleet that needs no keys (``interlock demo``)."""
    text = resources.files("interlock.policies").joinpath("default.toml").read_text(encoding="utf-8")
    return parse_config(text, source=DEFAULT_SOURCE)
