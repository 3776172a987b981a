"""``interlock check [CONFIG]``: every error of a config at once with its key path, or a summary of what it sets up.

With errors, each is one line (``config <key path>: <problem>``) on stdout, then a count; the
exit code is 1. A clean config prints what it sets up, fitted to the terminal like the report:
the providers, the models of each class, each job with its chain resolved to models (and the
models a degraded answer may come from), the rules, and the budgets. Without CONFIG the
embedded default is checked. A file that cannot be read is bad input (exit 2), as elsewhere.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import msgspec
from rich.console import Console

from interlock._errors import ConfigError
from interlock.actors.cli._main import exit_on_bad_input
from interlock.adapters._config_file import DEFAULT_SOURCE
from interlock.adapters.report._fit import Column, Sheet, print_sheet
from interlock.policies._config import Config, JobConfig, Names, ProviderConfig, Rule
from interlock.policies._config_validate import validate_config

_DASH = "—"
INVALID = 1


def main(argv: list[str] | None = None) -> int:
    """``interlock check [CONFIG]``: 0 when the config is valid, 1 when it has errors (each printed)."""
    parser = argparse.ArgumentParser(prog="interlock check", description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=None, help="a TOML config; default: the embedded one")
    args = parser.parse_args(argv)
    return exit_on_bad_input("check", lambda: check(args.config, Console()))


def check(path: str | None, console: Console) -> int:
    """Check the config at ``path`` (None: the embedded default), print the errors or the summary; the exit code."""
    source = DEFAULT_SOURCE if path is None else path
    result = validate_config(_read(path), source=source)
    if result.errors:
        for error in result.errors:
            console.print(str(error), markup=False, highlight=False, soft_wrap=True)
        count = len(result.errors)
        console.print(
            f"{count} error{'s' if count > 1 else ''} in {source}", markup=False, highlight=False, soft_wrap=True
        )
        return INVALID
    assert result.config is not None  # no errors: the checked config
    print_summary(result.config, source, console)
    return 0


def _read(path: str | None) -> str:
    if path is None:
        return resources.files("interlock.policies").joinpath("default.toml").read_text(encoding="utf-8")
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(path, f"cannot read the file ({reason})") from exc


def print_summary(config: Config, source: str, console: Console) -> None:
    """What a valid config sets up: one line of counts, then a table per part that has entries."""
    classes = config.classes
    counts = ", ".join(
        _count(n, word)
        for n, word in ((len(config.providers), "provider"), (len(config.jobs), "job"), (len(config.rules), "rule"))
    )
    models = f"{_count(len(config.models), 'model')} in {_count(len(classes), 'class')}"
    tenants = _count(len(config.tenants), "tenant")
    console.print(f"{source}: no errors. {counts}, {models}, {tenants}", markup=False, highlight=False)
    for sheet in (_providers(config), _classes(config), _jobs(config), _rules(config), _budgets(config)):
        if sheet.rows:
            print_sheet(console, sheet)
        else:
            console.print(f"{sheet.title}: none.")


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def _endpoint(p: ProviderConfig) -> str:
    if p.kind == "simulator":
        return f"built-in simulator, {p.format} wire"
    if p.command is not None:  # the program only: its arguments may carry anything
        return f"command: {p.command.argv[0]}" if p.command.argv else "command"
    return p.base_url or _DASH


def _providers(config: Config) -> Sheet:
    rows = [
        (name, p.kind, _endpoint(p), p.api_key_env or _DASH, str(p.max_concurrency))
        for name, p in config.providers.items()
    ]
    columns = (
        Column("kind", "kind"),
        Column("endpoint", "endpoint", wrap=True),
        Column("key variable", "key"),
        Column("slots", "slots", "right"),
    )
    return Sheet("Providers", (Column("provider", "provider"),), columns, rows)


def _classes(config: Config) -> Sheet:
    rows = []
    for cls, names in config.classes.items():
        models = ", ".join(f"{n} ({config.models[n].provider})" for n in names)
        rows.append((cls, models))
    return Sheet("Models by class", (Column("class", "class"),), (Column("models", "models", wrap=True),), rows)


def _expand(config: Config, entries: Names) -> list[str]:
    """Chain entries (classes or model names) as the models they stand for, in order, each once."""
    classes = config.classes
    out: dict[str, None] = {}
    for entry in entries:
        for name in (entry,) if entry in config.models else classes.get(entry, ()):
            out.setdefault(name)
    return list(out)


def _hedge(job: JobConfig) -> str:
    if job.hedge_after_ms is None or job.max_hedges == 0:
        return _DASH
    if job.hedge_after_ms == "p95":
        return f"p95, {job.hedge_min_ms}-{job.hedge_max_ms} ms"
    return f"after {job.hedge_after_ms} ms"


def _jobs(config: Config) -> Sheet:
    rows = []
    for name, job in config.jobs.items():
        chain = _expand(config, job.chain)
        resolved = " > ".join(chain)
        if job.on_exhausted == "degrade" and job.max_degrade is not None:
            lesser = [m for m in _expand(config, job.max_degrade.classes) if m not in chain]
            resolved += f"; degraded: {', '.join(lesser) or _DASH}"
        verify = ", ".join(str(type(spec).__struct_config__.tag) for spec in job.verify) or _DASH
        rows.append((name, resolved, _hedge(job), verify))
    columns = (
        Column("chain, resolved to models", "chain", wrap=True),
        Column("hedge", "hedge", wrap=True),
        Column("verify", "verify", wrap=True),
    )
    return Sheet("Jobs", (Column("job", "job"),), columns, rows)


def _condition(rule: Rule) -> str:
    """The keys a rule's ``when`` sets, as ``key = value``; an empty ``when`` always matches."""
    given = msgspec.structs.asdict(rule.when)
    return ", ".join(f"{k} = {v}" for k, v in given.items() if v is not None) or "always"


def _action(rule: Rule) -> str:
    parts = []
    if rule.only_classes is not None:
        parts.append(f"only {', '.join(rule.only_classes)}")
    if rule.exclude_classes:
        parts.append(f"not {', '.join(rule.exclude_classes)}")
    if rule.use_chain is not None:
        parts.append(f"use {', '.join(rule.use_chain)}")
    return "; ".join(parts)


def _rules(config: Config) -> Sheet:
    rows = [(f"rules[{i}]", _condition(r), _action(r)) for i, r in enumerate(config.rules)]
    columns = (Column("when", "when", wrap=True), Column("then", "then", wrap=True))
    return Sheet("Rules, first match first", (Column("rule", "rule"),), columns, rows)


def _budgets(config: Config) -> Sheet:
    rows: list[tuple[str, str]] = []
    for name, p in config.budgets.providers.items():
        limits = [f"${p.usd_per_day:,.2f}/day"] if p.usd_per_day is not None else []
        limits += [f"{p.tokens_per_day:,} tokens/day"] if p.tokens_per_day is not None else []
        rows.append((f"provider {name}", ", ".join(limits) or _DASH))
    for name, t in config.budgets.tenants.items():
        if t.usd_per_day is not None:
            rows.append((f"tenant {name}", f"${t.usd_per_day:,.2f}/day"))
        for caller, c in t.callers.items():
            rows.append((f"tenant {name}, caller {caller}", f"${c.usd_per_day:,.2f}/day"))
    for name, m in config.models.items():
        if m.token_cap_per_day is not None:
            rows.append((f"model {name} (subscription)", f"{m.token_cap_per_day:,} tokens/day"))
    return Sheet("Budgets", (Column("scope", "scope"),), (Column("limit", "limit", wrap=True),), rows)
