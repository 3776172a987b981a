"""``interlock report``: the rollup of a ledger file and its breaker transitions, as tables or JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
from rich.console import Console

from interlock._clock import RealClock
from interlock.actors.cli._ledger_file import check_ledger_path
from interlock.actors.cli._main import exit_on_bad_input
from interlock.adapters._config_file import load_config
from interlock.adapters.report._quality import quality_json, render_quality
from interlock.adapters.report._render import render_rollup, report_json
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._quality import quality_rollup
from interlock.policies._rollup import rollup

_TRAILING_S = 24 * 3600.0
BREAKER_ROWS = 100  # the latest transitions shown; the ledger keeps them all


async def print_report(
    path: str | Path,
    *,
    console: Console | None = None,
    since: float | None = None,
    task: str | None = None,
    tenant: str | None = None,
    as_json: bool = False,
    quality: bool = False,
    model_ids: Mapping[str, str] | None = None,
) -> None:
    """Read the ledger at ``path`` and print its rollup (or, with ``quality``, the verdict rollup).

    The rollup is followed by the latest breaker transitions (within ``since``), oldest first;
    they are per provider, so ``task`` and ``tenant`` do not filter them. ``model_ids`` (config
    name -> configured model id) lets the report flag floating aliases: models whose answers
    came from another id than the one configured (the ledger keeps the id the provider named).
    """
    # A day more than the window, so the spend-spike alert has its trailing baseline.
    history = None if since is None else since - _TRAILING_S
    async with SqliteLedgerStore(path) as store:
        requests = await store.fetch_requests(history, task, tenant)
        attempts = await store.fetch_attempts(history, task, tenant)
        latest = await store.breaker_transitions(limit=BREAKER_ROWS)
    # The store answers newest first; reversed before a stable sort, equal times keep their order.
    transitions = sorted((t for t in reversed(latest) if since is None or t.ts >= since), key=lambda t: t.ts)
    now = RealClock().wall()
    if quality:
        judged = quality_rollup(attempts, now=now, since=since)
        if as_json:
            sys.stdout.write(quality_json(judged).decode() + "\n")
        else:
            render_quality(judged, console or Console())
        return
    result = rollup(requests, attempts, now=now, since=since, model_ids=model_ids)
    if as_json:
        sys.stdout.write(report_json(result, transitions).decode() + "\n")
        return
    render_rollup(result, console or Console(), transitions)


def _since(value: str | None) -> float | None:
    """``--since`` as seconds ago (``90s``, ``15m``, ``2h``, ``1d``), converted to an epoch."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (value[:-1], value[-1]) if value[-1] in units else (value, "s")
    return RealClock().wall() - float(number) * units[unit]


def main(argv: list[str] | None = None) -> int:
    """``interlock report [--ledger PATH] [--since 2h] [--job J] [--tenant T] [--json] [--quality]``."""
    parser = argparse.ArgumentParser(prog="interlock report", description=__doc__)
    parser.add_argument("--ledger", default="interlock.sqlite")
    parser.add_argument("--since", default=None, help="a window like 90s, 15m, 2h or 1d")
    parser.add_argument("--job", default=None)
    parser.add_argument("--tenant", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quality", action="store_true", help="accept rates of verified answers per job and model")
    parser.add_argument("--config", default=None, help="the TOML config that served: floating aliases are flagged")
    args = parser.parse_args(argv)
    return exit_on_bad_input("report", lambda: _report(args))


def _report(args: argparse.Namespace) -> int:
    if not Path(args.ledger).exists():
        print(f"interlock report: no ledger at {args.ledger}", file=sys.stderr)
        return 2
    check_ledger_path(args.ledger)  # a directory, foreign tables, a newer schema: one line, before the store opens it
    ids = None if args.config is None else {name: m.id for name, m in load_config(args.config).models.items()}
    anyio.run(lambda: print_report(args.ledger, since=_since(args.since), task=args.job, tenant=args.tenant,
                                   as_json=args.json, quality=args.quality, model_ids=ids))
    return 0
