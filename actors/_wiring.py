"""From config to living parts: one adapter per configured provider.

Keys are read from the named environment variables here, once, into ``Secret``s; a provider
whose key is missing is left out (its candidates are skipped as ``disabled``) rather than
failing the whole door, so a config can list every provider a team might use.
"""

from __future__ import annotations

from collections.abc import Mapping

from interlock._clock import Clock
from interlock._errors import ConfigError
from interlock._secret import Secret
from interlock.adapters.providers._codec import Codec
from interlock.adapters.providers._command import CommandAdapter
from interlock.adapters.providers._embed import EmbedCodec
from interlock.adapters.providers._http import HttpAdapter, HttpTimeouts
from interlock.adapters.providers._protocol import ProviderAdapter
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.providers.gemini._codec import GeminiCodec
from interlock.adapters.providers.gemini._embed import GeminiEmbedCodec
from interlock.adapters.providers.openai._codec import OpenAICodec
from interlock.adapters.providers.openai._embed import OpenAIEmbedCodec
from interlock.policies._config import ProviderConfig

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}


def provider_key(name: str, cfg: ProviderConfig, environ: Mapping[str, str]) -> Secret | None:
    """The provider's key from its env var; None when it has none configured or set."""
    if not cfg.api_key_env:
        return None
    value = environ.get(cfg.api_key_env)
    if value and value != value.strip():
        # A key pasted with its newline is refused upstream as a 401 that names nothing; say which
        # variable it is here, never its value.
        raise ConfigError(
            f"providers.{name}.api_key_env",
            f"${cfg.api_key_env} has leading or trailing whitespace (a pasted newline?); strip it",
        )
    return Secret(value, source=f"${cfg.api_key_env}") if value else None


def is_enabled(name: str, cfg: ProviderConfig, environ: Mapping[str, str]) -> bool:
    """Hosted providers need their key; local, command and simulator providers do not."""
    if cfg.kind in ("openai", "anthropic", "gemini"):
        return provider_key(name, cfg, environ) is not None
    return True


def build_adapter(
    name: str, cfg: ProviderConfig, *, environ: Mapping[str, str], clock: Clock, simulator_url: str | None
) -> ProviderAdapter:
    """The adapter for one provider, ready to use (its client opens lazily)."""
    if cfg.kind == "command":
        if cfg.command is None:
            raise ConfigError(f"providers.{name}.command", "a command provider needs a [command] table")
        return CommandAdapter(name, cfg.command, clock=clock)
    key = provider_key(name, cfg, environ)
    wire = cfg.format if cfg.kind == "simulator" else cfg.kind
    codec: Codec
    embed: EmbedCodec | None = None  # Anthropic has no embeddings API
    if wire == "anthropic":
        codec = AnthropicCodec(name, key)
    elif wire == "gemini":
        codec, embed = GeminiCodec(name, key), GeminiEmbedCodec(name, key)
    else:
        codec = OpenAICodec(name, key, compatible=cfg.kind == "openai_compatible")
        embed = OpenAIEmbedCodec(name, key)
    base = _base_url(name, cfg, wire or "openai", simulator_url)
    timeouts = HttpTimeouts(
        connect_s=cfg.timeouts.connect_ms / 1000.0,
        first_byte_s=cfg.timeouts.first_byte_ms / 1000.0,
        read_s=cfg.timeouts.read_ms / 1000.0,
    )
    return HttpAdapter(
        name, base, codec, transport=cfg.transport, timeouts=timeouts,
        max_connections=max(cfg.max_concurrency, 1), clock=clock, embed_codec=embed,
    )


def _base_url(name: str, cfg: ProviderConfig, wire: str, simulator_url: str | None) -> str:
    if cfg.kind == "simulator":
        if simulator_url is None:
            raise ConfigError(f"providers.{name}", "a simulator provider needs the simulator running")
        return simulator_url + ("/v1" if wire == "openai" else "")
    if cfg.base_url:
        return cfg.base_url.rstrip("/")
    if cfg.kind in DEFAULT_BASE_URLS:
        return DEFAULT_BASE_URLS[cfg.kind]
    raise ConfigError(f"providers.{name}.base_url", f"required for kind {cfg.kind!r}")
