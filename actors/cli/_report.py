"""``interlock report``: the rollup of a ledger file and its breaker transitions, as tables or JSON.

The tables fit the terminal: whole cells and full names, the columns that fit, then the rest in a
continuation table beside the same names (``--wide``: every column in one table; ``--columns``:
only the named ones). The alert thresholds and the demotion rule are ``[alerts]`` of ``--config``,
with ``--alert-*`` and ``--demote-*`` flags over them; ``--json`` echoes the ones used.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
from rich.console import Console

from interlock._clock import RealClock
from interlock.actors.cli._ledger_file import check_ledger_path
from interlock.actors.cli._main import exit_on_bad_input, fail
from interlock.adapters._config_file import load_config
from interlock.adapters.report._fit import Layout, unknown_columns
from interlock.adapters.report._quality import quality_json, quality_sheets, render_quality
from interlock.adapters.report._render import render_rollup, report_json, report_sheets
from interlock.adapters.stores._ledger_open import open_ledger_for_report, report_ledger_url
from interlock.policies._alerts import AlertsConfig, with_overrides
from interlock.policies._quality import quality_rollup
from interlock.policies._rollup import rollup
from interlock.policies._store_url import StoreUrl

_TRAILING_S = 24 * 3600.0
BREAKER_ROWS = 100  # the latest transitions shown; the ledger keeps them all


async def print_report(
    path: str | Path | StoreUrl,
    *,
    console: Console | None = None,
    since: float | None = None,
    task: str | None = None,
    tenant: str | None = None,
    as_json: bool = False,
    quality: bool = False,
    model_ids: Mapping[str, str] | None = None,
    alerts: AlertsConfig | None = None,
    layout: Layout | None = None,
) -> None:
    """Read the ledger at ``path`` and print its rollup (or, with ``quality``, the verdict rollup).

    The rollup is followed by the latest breaker transitions (within ``since``), oldest first;
    they are per provider, so ``task`` and ``tenant`` do not filter them. ``model_ids`` (config
    name -> configured model id) lets the report flag floating aliases: models whose answers
    came from another id than the one configured (the ledger keeps the id the provider named).
    ``alerts`` holds the alert thresholds and the demotion rule (default: ``AlertsConfig()``);
    ``layout`` is ``--wide`` / ``--columns`` (default: the tables that fit the console).
    """
    alerts = alerts or AlertsConfig()
    layout = layout or Layout()
    # A day more than the window, so the spend-spike alert has its trailing baseline.
    history = None if since is None else since - _TRAILING_S
    where = path if isinstance(path, StoreUrl) else report_ledger_url(
        str(path), configured_url=None, configured_path=None, environ={}
    )
    async with open_ledger_for_report(where) as store:
        requests = await store.fetch_requests(history, task, tenant)
        attempts = await store.fetch_attempts(history, task, tenant)
        latest = await store.breaker_transitions(limit=BREAKER_ROWS)
    # The store answers newest first; reversed before a stable sort, equal times keep their order.
    transitions = sorted((t for t in reversed(latest) if since is None or t.ts >= since), key=lambda t: t.ts)
    now = RealClock().wall()
    if quality:
        judged = quality_rollup(attempts, now=now, since=since, **alerts.demotion.as_arguments())
        if as_json:
            sys.stdout.write(quality_json(judged).decode() + "\n")
        else:
            render_quality(judged, console or Console(), layout)
        return
    result = rollup(requests, attempts, now=now, since=since, model_ids=model_ids, **alerts.as_arguments())
    if as_json:
        sys.stdout.write(report_json(result, transitions).decode() + "\n")
        return
    render_rollup(result, console or Console(), transitions, layout)


def _since(value: str | None) -> float | None:
    """``--since`` as seconds ago (``90s``, ``15m``, ``2h``, ``1d``), converted to an epoch."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (value[:-1], value[-1]) if value[-1] in units else (value, "s")
    return RealClock().wall() - float(number) * units[unit]


# flag -> ([alerts] field it overrides, ``demotion.<field>`` for the demotion rule; type; metavar; help)
_ALERT_FLAGS: dict[str, tuple[str, type, str, str]] = {
    "--alert-degraded": ("degraded_threshold", float, "SHARE", "flag a job whose degraded share is above this (0.3)"),
    "--alert-outlier": ("outlier_factor", float, "X", "flag a call costing X times its job's mean (10)"),
    "--alert-spike": ("spike_factor", float, "X", "flag an hour spending X times its trailing mean (3)"),
    "--alert-trailing-hours": ("trailing_hours", int, "HOURS", "the trailing hours of a spend spike's mean (24)"),
    "--alert-spike-min-hours": ("spike_min_hours", int, "HOURS", "the fewest trailing hours a spike needs (3)"),
    "--demote-min-judged": ("demotion.min_judged", int, "N", "judged answers each model needs to be compared (20)"),
    "--demote-margin": ("demotion.margin", float, "GAP", "the least gap in accept rate that flags a model (0.15)"),
    "--demote-confidence": ("demotion.confidence", float, "LEVEL", "the z-test's two-sided confidence (0.95)"),
}


def main(argv: list[str] | None = None) -> int:
    """``interlock report [--ledger PATH] [--since 2h] [--job J] [--tenant T] [--json] [--quality] [...]``."""
    parser = argparse.ArgumentParser(prog="interlock report", description=__doc__)
    parser.add_argument(
        "--ledger", default=None,
        help="a SQLite path or postgresql:// URL (default: $INTERLOCK_LEDGER_URL, then the config's [ledger])",
    )
    parser.add_argument("--since", default=None, help="a window like 90s, 15m, 2h or 1d")
    parser.add_argument("--job", default=None)
    parser.add_argument("--tenant", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quality", action="store_true", help="accept rates of verified answers per job and model")
    parser.add_argument(
        "--config", default=None, help="the TOML config that served: its [alerts], and floating aliases are flagged"
    )
    parser.add_argument("--wide", action="store_true", help="every column in one table, however wide")
    parser.add_argument(
        "--columns", default=None, metavar="A,B,C", help="only these columns, by key: calls,ok,cost,ttft_p95,..."
    )
    for flag, (_, kind, metavar, text) in _ALERT_FLAGS.items():
        parser.add_argument(flag, type=kind, default=None, metavar=metavar, help=text)
    args = parser.parse_args(argv)
    return exit_on_bad_input("report", lambda: _report(args))


def _layout(args: argparse.Namespace) -> Layout:
    """``--wide`` and ``--columns`` (comma-separated keys); ValueError naming unknown keys."""
    names = tuple(n.strip() for n in (args.columns or "").split(",") if n.strip())
    empty = rollup([], [], now=0.0)
    sheets = [*report_sheets(empty), *quality_sheets(quality_rollup([], now=0.0))]
    unknown = unknown_columns(names, sheets)
    if unknown:
        known = sorted({k for sheet in sheets for k in sheet.keys})
        raise ValueError(f"--columns: unknown column {', '.join(unknown)}; expected any of {', '.join(known)}")
    return Layout(wide=args.wide, columns=names)


def _alerts(args: argparse.Namespace, configured: AlertsConfig) -> AlertsConfig:
    """The config's ``[alerts]`` with the flags given laid over it; ValueError naming the flag out of range."""
    alerts = configured
    for flag, (key, *_) in _ALERT_FLAGS.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        try:
            alerts = with_overrides(alerts, {key: value})
        except ValueError as exc:
            raise ValueError(f"{flag}: {exc}") from None
    return alerts


def _report(args: argparse.Namespace) -> int:
    config = None if args.config is None else load_config(args.config)
    where = report_ledger_url(
        args.ledger, configured_url=config.ledger.url if config else None,
        configured_path=config.ledger.path if config else None, environ=os.environ,
    )  # fmt: skip
    if where.kind == "sqlite":
        if not Path(where.path).exists():
            print(f"interlock report: no ledger at {where.path}", file=sys.stderr)
            return 2
        check_ledger_path(where.path)  # a directory, foreign tables, a newer schema: one line, before opening it
    ids = None if config is None else {name: m.id for name, m in config.models.items()}
    try:
        layout = _layout(args)
        alerts = _alerts(args, AlertsConfig() if config is None else config.alerts)
    except ValueError as exc:
        return fail("report", str(exc))
    anyio.run(lambda: print_report(where, since=_since(args.since), task=args.job, tenant=args.tenant,
                                   as_json=args.json, quality=args.quality, model_ids=ids, alerts=alerts,
                                   layout=layout))
    return 0
