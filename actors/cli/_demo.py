"""``interlock demo``: a mixed workload through the door on the simulated fleet, then the report.

No keys, no servers to start: the embedded default config describes simulator providers, one
with a heavy latency tail and one that rate-limits; on it the demo scripts an outage of a third
(``DEMO_OUTAGE``: the embedded default itself has none, so a fresh ``interlock serve`` answers
from its first request). The demo drives jobs and tenants through the door with a live progress
bar, then prints ``interlock report`` from the SQLite ledger it wrote, where fallbacks, hedges,
the breaker trip and degraded labels show, and then the quality loop: the reviewer's verdicts on
``extract`` per job and model, and the model its verdicts flag as a demotion candidate (the demo
scripts its reviewers' odds, ``DEMO_REVIEWS``; verdicts of a reviewer that could not run are
counted apart as unjudged and flag nobody).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from interlock._errors import InterlockError
from interlock.actors.cli._ledger_file import check_ledger_path
from interlock.actors.cli._main import exit_on_bad_input
from interlock.actors.cli._report import print_report
from interlock.adapters._config_file import default_config, load_config
from interlock.policies._config import Config

if TYPE_CHECKING:
    from interlock.actors._door import Door

# sim_gemini's models fail from 1.5 s to 7.5 s: early enough that the demo's 400 requests meet it
# however fast the machine is, so the report shows fallbacks and a breaker trip.
DEMO_OUTAGE: dict[str, Any] = {
    "start": 1.5, "end": 7.5, "models": ["sim-flash-1", "sim-open-1"], "fault": {"kind": "unavailable"},
}


# The demo's reviewers, scripted: sim-flagship-1 (flagship_anthropic, which reviews the OpenAI and
# Google authors of ``extract``) accepts about half of what it reads, sim-flagship-2
# (flagship_openai, the one reviewer from another lab than tail's) nearly all. So the verdicts,
# not an outage, set mini below tail on extract: the quality report flags mini as a demotion
# candidate. Its rate limits are rarer here, so that tail's reviews mostly run rather than
# being unjudged while sim_openai cools down.
DEMO_REVIEWS: dict[str, dict[str, Any]] = {
    "sim-flagship-1": {"review_accept_p": 0.4},
    "sim-flagship-2": {
        "review_accept_p": 0.97, "faults": [{"p": 0.03, "fault": {"kind": "rate_limit", "retry_after": 0.5}}],
    },
}


def demo_config() -> Config:
    """The embedded default with the demo's scripted outage and reviewers (``DEMO_REVIEWS``) added."""
    config = default_config()
    outages = [*config.simulator.get("outages", []), DEMO_OUTAGE]
    models = dict(config.simulator.get("models", {}))
    for model_id, behaviour in DEMO_REVIEWS.items():
        models[model_id] = {**models.get(model_id, {}), **behaviour}
    simulator = {**config.simulator, "outages": outages, "models": models}
    return msgspec.structs.replace(config, simulator=simulator)


_TOPICS = ["the quarterly numbers", "a customer email", "a failing test", "the onboarding doc", "a pull request"]
# (task, tenant, sensitivity, weight)
_MIX = [
    ("cheap_bulk", "acme", "internal", 40),
    ("cheap_bulk", "globex", "internal", 20),
    ("default", "acme", "internal", 15),
    ("hard_reasoning", "acme", "internal", 8),
    ("hard_reasoning", "globex", "internal", 4),
    ("review", "acme", "internal", 5),
    ("extract", "acme", "internal", 36),
    ("default", "globex", "pii", 8),
]


def _workload(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    weights = [w for *_, w in _MIX]
    items = []
    for i in range(n):
        task, tenant, sensitivity, _ = rng.choices(_MIX, weights)[0]
        # Some prompts repeat, so the response cache has something to replay.
        suffix = "" if rng.random() < 0.3 else f" (#{i})"
        prompt = f"Summarize {rng.choice(_TOPICS)} in two sentences.{suffix}"
        items.append({"prompt": prompt, "task": task, "tenant": tenant, "sensitivity": sensitivity, "caller": "demo"})
    return items


async def _drive(door: Door, items: list[dict[str, Any]], concurrency: int, console: Console) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    limiter = anyio.CapacityLimiter(concurrency)
    columns = (TextColumn("[bold]requests"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("demo", total=len(items), status="")

        async def one(item: dict[str, Any]) -> None:
            async with limiter:
                options = {k: v for k, v in item.items() if k != "prompt"}
                try:
                    reply = await door.ask(item["prompt"], **options)
                    route = reply.route
                    if route is not None and route.hedged:
                        outcomes["hedged"] += 1
                    if route is not None and route.cache_hit:
                        outcomes["cached"] += 1
                    outcomes["degraded" if route is not None and route.degraded else "ok"] += 1
                except InterlockError as exc:
                    outcomes[f"failed ({exc.kind})"] += 1
                progress.update(bar, advance=1, status=" ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))

        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(one, item)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """``interlock demo [--requests N] [--concurrency C] [--ledger PATH] [--config FILE]``."""
    parser = argparse.ArgumentParser(prog="interlock demo", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--ledger", default="interlock-demo.sqlite", help="SQLite ledger file (replaced)")
    parser.add_argument("--config", default=None, help="a TOML config; default: the embedded simulated fleet")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    return exit_on_bad_input("demo", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    console = Console()
    ledger = Path(args.ledger)
    config = load_config(args.config) if args.config else demo_config()
    # The demo replaces its ledger; a path that is no interlock ledger is refused, never deleted.
    check_ledger_path(ledger)
    for stale in (ledger, Path(f"{ledger}-wal"), Path(f"{ledger}-shm")):
        stale.unlink(missing_ok=True)

    # Imported once the input is checked, so a bad config or ledger path is refused at once.
    from interlock.actors._door import open as open_door

    async def run() -> None:
        async with open_door(config, ledger_path=ledger) as door:
            console.print(f"[bold]interlock demo[/]: {args.requests} requests, {len(door.config.providers)} "
                          f"simulated providers, ledger {ledger}")
            await _drive(door, _workload(args.requests, args.seed), args.concurrency, console)
            health = await door.health()
            for name, h in sorted(health.items()):
                console.print(f"  {name:<14} breaker={h.breaker:<9} healthy={h.healthy} "
                              f"transitions={h.breaker_transitions}")
            await door.flush()
        ids = {name: m.id for name, m in config.models.items()}
        await print_report(ledger, console=console, model_ids=ids, alerts=config.alerts)
        await print_report(ledger, console=console, quality=True, alerts=config.alerts)
        console.print(
            f"\nSee it as pictures: [bold]interlock dashboard --ledger {ledger}[/], then open http://127.0.0.1:4100/ui"
        )

    anyio.run(run)
    return 0
