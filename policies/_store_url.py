"""Where the state store and the ledger live: a URL (or a plain path) read from config or environment.

``[state] url`` takes ``redis://`` / ``rediss://`` or ``sqlite:///path``; ``[ledger] url`` takes
``postgresql://`` (``postgres://``) or ``sqlite:///path``; a plain path is a SQLite file. The
environment wins over the file: ``INTERLOCK_STATE_URL`` and ``INTERLOCK_LEDGER_URL``.

A password may come only from the environment (or the server's own means: ``PGPASSWORD``,
``.pgpass``, a Redis ACL file): a config file is shown, copied and committed, so a password in
its URL is refused with the key that holds it. A ``StoreUrl`` keeps the URL it was given for the
store to connect with, and shows only ``shown`` — the URL with any password replaced by
``***`` — in its repr, in errors and in every output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, final
from urllib.parse import urlsplit, urlunsplit

from interlock._errors import ConfigError

StoreKind = Literal["sqlite", "redis", "postgresql"]

STATE_ENV: Final = "INTERLOCK_STATE_URL"
LEDGER_ENV: Final = "INTERLOCK_LEDGER_URL"
_SCHEMES: Final[dict[str, StoreKind]] = {
    "sqlite": "sqlite", "redis": "redis", "rediss": "redis", "unix": "redis",
    "postgresql": "postgresql", "postgres": "postgresql",
}  # fmt: skip
STATE_KINDS: Final[tuple[StoreKind, ...]] = ("sqlite", "redis")
LEDGER_KINDS: Final[tuple[StoreKind, ...]] = ("sqlite", "postgresql")


@final
class StoreUrl:
    """One store's address: its kind, where it is, and how it may be shown (never with a password)."""

    __slots__ = ("_url", "kind", "path", "shown")

    def __init__(self, kind: StoreKind, url: str, *, path: str = "") -> None:
        self.kind: StoreKind = kind
        self._url = url
        self.path = path  # the SQLite file, for kind "sqlite"; "" otherwise
        self.shown = redact_url(url) if kind != "sqlite" else path

    @property
    def url(self) -> str:
        """The URL to connect with, password included: hand it to the store's client, never print it."""
        return self._url

    def __repr__(self) -> str:
        return f"StoreUrl({self.kind}, {self.shown!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreUrl) and (self.kind, self._url, self.path) == (other.kind, other._url, other.path)

    def __hash__(self) -> int:
        return hash((self.kind, self._url, self.path))


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``; the rest as given."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))


def parse_store_url(value: str, *, key: str, allowed: tuple[StoreKind, ...], from_env: bool = False) -> StoreUrl:
    """Read one store address; ``key`` names where it came from in every error (never the password)."""
    text = value.strip()
    if not text:
        raise ConfigError(key, "is empty; give a URL or a path")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if not scheme:
        return StoreUrl("sqlite", f"sqlite:///{text}", path=text)  # a plain path: the embedded store
    kind = _SCHEMES.get(scheme)
    if kind is None or kind not in allowed:
        expected = ", ".join(f"{k}://" for k in _schemes_for(allowed))
        raise ConfigError(key, f"unsupported scheme {scheme}://; expected {expected} or a plain path")
    if kind == "sqlite":
        rest = text[len(scheme) + 3 :]  # "/relative.db" or "//abs/path.db": one slash is the URL's
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise ConfigError(key, "sqlite:// needs a path: sqlite:///relative.db or sqlite:////abs/path.db")
        return StoreUrl("sqlite", text, path=path)
    try:
        parts = urlsplit(text)
        _ = parts.port  # a bad port raises here, not in the client later
    except ValueError as exc:
        raise ConfigError(key, f"not a valid URL ({redact_url(text)}): {exc}") from None
    if parts.password is not None and not from_env:
        env = LEDGER_ENV if kind == "postgresql" else STATE_ENV
        raise ConfigError(
            key,
            f"holds a password; a config file is shown and committed: give the URL with its password in ${env}"
            " (or the server's own PGPASSWORD / .pgpass / ACL file) instead",
        )
    return StoreUrl(kind, text)


def _schemes_for(allowed: tuple[StoreKind, ...]) -> list[str]:
    return [scheme for scheme, kind in _SCHEMES.items() if kind in allowed]


def resolve_store_url(
    *,
    configured_url: str | None,
    configured_path: str | None,
    environ: Mapping[str, str],
    env: str,
    key: str,
    allowed: tuple[StoreKind, ...],
) -> StoreUrl | None:
    """The store address in force: ``$env`` over ``key``'s URL over its path; None when none is given."""
    from_env = environ.get(env, "").strip()
    if from_env:
        return parse_store_url(from_env, key=f"${env}", allowed=allowed, from_env=True)
    if configured_url:
        return parse_store_url(configured_url, key=key, allowed=allowed)
    if configured_path:
        return parse_store_url(configured_path, key=key.rsplit(".", 1)[0] + ".path", allowed=("sqlite",))
    return None
