"""Provider batches, the clients: which providers have a batch API, and each one's client from the config.

A provider's batch client uses what its interactive calls use: the key from the environment
variable its config names (``actors._wiring.provider_key``, never logged), its base URL (the
simulator's when it is a simulator), its timeouts, and its wire's codec.
"""

from __future__ import annotations

from collections.abc import Mapping

from interlock._errors import ConfigError
from interlock.actors._wiring import DEFAULT_BASE_URLS, provider_key
from interlock.adapters.providers._batch import BatchClient
from interlock.adapters.providers._http_client import HttpTimeouts
from interlock.adapters.providers.anthropic._batch import AnthropicBatchClient
from interlock.adapters.providers.anthropic._codec import AnthropicCodec
from interlock.adapters.providers.openai._batch import OpenAIBatchClient
from interlock.adapters.providers.openai._codec import OpenAICodec
from interlock.policies._config import ProviderConfig

__all__ = ["batch_wire", "make_client"]


def batch_wire(cfg: ProviderConfig) -> str | None:
    """The batch API a provider speaks (``openai`` or ``anthropic``), None when it has none."""
    wire = cfg.format if cfg.kind == "simulator" else cfg.kind
    return wire if wire in ("openai", "anthropic") else None


def make_client(name: str, cfg: ProviderConfig, environ: Mapping[str, str], sim_url: str | None) -> BatchClient:
    """The batch client of provider ``name``, with the key and base URL its interactive calls use."""
    wire = batch_wire(cfg)
    if wire is None:
        raise ConfigError(f"providers.{name}.kind", f"{cfg.kind} has no batch API (OpenAI's or Anthropic's wire has)")
    key = provider_key(name, cfg, environ)
    if key is None and cfg.kind != "simulator":
        raise ConfigError(f"providers.{name}.api_key_env", f"${cfg.api_key_env or '(unset)'} holds no key")
    if cfg.kind == "simulator":
        if sim_url is None:
            raise ConfigError(f"providers.{name}", "a simulator provider needs the simulator running")
        base = sim_url + ("/v1" if wire == "openai" else "")
    else:
        base = (cfg.base_url or DEFAULT_BASE_URLS[wire]).rstrip("/")
    t = cfg.timeouts
    timeouts = HttpTimeouts(connect_s=t.connect_ms / 1000, first_byte_s=t.first_byte_ms / 1000, read_s=t.read_ms / 1000)
    if wire == "anthropic":
        return AnthropicBatchClient(name, base, AnthropicCodec(name, key), timeouts)
    return OpenAIBatchClient(name, base, OpenAICodec(name, key), timeouts)
