"""One OS process governing two loopback providers with breakers and cooldowns shared through a state store.

Run by tests/test_shared_signals.py: ``python tests/signals_worker.py SPEC`` where SPEC is JSON:
``state`` (the state store's address: a SQLite file or a redis:// URL), ``failing`` and
``limited`` (the base URLs of two loopback providers: one answering 500, one 429 with a
Retry-After). It wires the provider actors as the tree does — one ``ProviderState`` per provider
from ``SharedSignals.provider_state``, held by the child spec, under a supervisor on a runtime —
prints ``ready``, then answers one command per stdin line with one JSON line:

- ``call PROVIDER N``: N calls one after another; each outcome is ``ok``, ``error:<class>`` or
  ``rejected:<reason>`` (refused at admission, never sent upstream);
- ``health PROVIDER``: the breaker's state, the cooldown left and its cause, the recent causes;
- ``quit``: close everything and exit.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import anyio.to_thread

from interlock._actor import ActorRef
from interlock._clock import RealClock
from interlock._errors import AdmissionRejected, InterlockError
from interlock._runtime import Runtime
from interlock._supervisor import ChildSpec, Restart, Strategy
from interlock._types import ChatRequest, Message
from interlock.actors._provider_actor import (
    Call,
    GetHealth,
    ProviderActor,
    ProviderHealth,
    ProviderMsg,
    ProviderSettings,
)
from interlock.actors._shared_signals import SharedSignals, fleet_signals
from interlock.actors._wiring import build_adapter
from interlock.adapters.providers._protocol import ProviderAdapter
from interlock.policies._config import ProviderConfig, parse_config
from interlock.policies._store_url import STATE_KINDS, parse_store_url

# Four failures in a window of four open the breaker for a minute; probes (which would fail
# too) are spaced an hour apart, so nothing but the calls a test makes reaches an upstream.
_PROVIDER = """
kind = "openai_compatible"
base_url = "{url}"
max_concurrency = 4
probe = {{ interval_s = 3600, open_interval_s = 3600 }}
breaker = {{ window_calls = 4, min_calls = 4, failure_rate_pct = 50, open_wait_s = 60 }}
cooldown = {{ max_s = 60 }}
"""
_CONFIG = """
[providers.failing]
{failing}
[providers.limited]
{limited}
[models.m]
provider = "failing"
id = "m-2024-01-01"
class = "fast"
context_window = 100000
max_output_tokens = 100
price = {{ input = 1.0, output = 1.0 }}

[jobs.j]
chain = ["m"]

[state]
signals_refresh_ms = 50
"""
REQUEST = ChatRequest(messages=(Message.text("user", "hi"),), max_tokens=5)


def provider_spec(name: str, cfg: ProviderConfig, shared: SharedSignals, clock: RealClock) -> ChildSpec:
    """As ``actors._tree._provider_spec``: the state is made once, by the shared signals, outside every incarnation."""
    settings = ProviderSettings(
        max_concurrency=cfg.max_concurrency, breaker=cfg.breaker, probe=cfg.probe, cooldown=cfg.cooldown
    )
    state = shared.provider_state(name)

    def start() -> ProviderActor:
        def adapter() -> ProviderAdapter:
            return build_adapter(name, cfg, environ={}, clock=clock, simulator_url=None)

        return ProviderActor(name, adapter, settings, None, state)

    return ChildSpec(f"provider:{name}", start, Restart.PERMANENT, shutdown=10.0)


async def one_call(ref: ActorRef[ProviderMsg]) -> str:
    try:
        async for _ in await ref.ask_stream(Call(REQUEST, "m-2024-01-01")):
            pass
    except AdmissionRejected as exc:
        return f"rejected:{exc.reason}"
    except InterlockError as exc:
        return f"error:{exc.kind.value}"
    return "ok"


async def answer(command: list[str], refs: dict[str, ActorRef[ProviderMsg]]) -> Any:
    match command:
        case ["call", provider, count]:
            return [await one_call(refs[provider]) for _ in range(int(count))]
        case ["health", provider]:
            health: ProviderHealth = await refs[provider].ask(GetHealth(), timeout=5.0)
            return {
                "breaker": health.breaker, "cooling_down_s": health.cooling_down_s,
                "cooldown_cause": health.cooldown_cause, "causes": [t.cause for t in health.recent_transitions],
            }  # fmt: skip
    raise SystemExit(f"unknown command {command!r}")


async def main(spec: dict[str, str]) -> None:
    provider = {name: _PROVIDER.format(url=spec[name]) for name in ("failing", "limited")}
    config = parse_config(_CONFIG.format(**provider))
    clock = RealClock()
    where = parse_store_url(spec["state"], key="state", allowed=STATE_KINDS, from_env=True)
    async with fleet_signals(config, where, clock) as shared, Runtime(clock=clock) as rt:
        specs = [provider_spec(n, p, shared, clock) for n, p in config.providers.items()]
        await rt.spawn_supervisor("providers", specs, strategy=Strategy.ONE_FOR_ONE, max_restarts=5, period=10.0)
        refs: dict[str, ActorRef[ProviderMsg]] = {n: rt.lookup(f"provider:{n}") for n in config.providers}
        print("ready", flush=True)
        while (line := await anyio.to_thread.run_sync(sys.stdin.readline)) not in ("", "quit\n"):
            print(json.dumps(await answer(line.split(), refs)), flush=True)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
