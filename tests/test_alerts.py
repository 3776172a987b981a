"""The ``[alerts]`` section and the report's alert flags: thresholds and the demotion rule from config and flags."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import msgspec
import pytest

from interlock._errors import ConfigError
from interlock._records import AttemptRecord, RequestRecord
from interlock.adapters.stores._ledger_store import SqliteLedgerStore
from interlock.policies._alerts import AlertsConfig, DemotionRule, with_overrides
from interlock.policies._config import parse_config


def test_defaults_are_those_of_the_rollups() -> None:
    """An absent ``[alerts]`` gives the thresholds ``rollup`` and ``quality_rollup`` default to."""
    alerts = parse_config("").alerts
    assert alerts == AlertsConfig()
    assert alerts.as_arguments() == {
        "degraded_threshold": 0.3, "outlier_factor": 10.0, "spike_factor": 3.0,
        "trailing_hours": 24, "spike_min_hours": 3,
    }  # fmt: skip
    assert alerts.demotion.as_arguments() == {"min_judged": 20, "margin": 0.15, "confidence": 0.95}


def test_the_section_decodes_with_its_demotion_rule() -> None:
    """Every field of ``[alerts]`` and ``[alerts.demotion]`` is read from the TOML."""
    text = "[alerts]\ndegraded_threshold = 0.1\nspike_factor = 5\n[alerts.demotion]\nmin_judged = 8\nmargin = 0.3\n"
    alerts = parse_config(text).alerts
    assert (alerts.degraded_threshold, alerts.spike_factor, alerts.outlier_factor) == (0.1, 5.0, 10.0)
    assert alerts.demotion == DemotionRule(min_judged=8, margin=0.3, confidence=0.95)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[alerts]\ndegraded_threshold = 1.5", "alerts.degraded_threshold"),
        ("[alerts]\noutlier_factor = 0", "alerts.outlier_factor"),
        ("[alerts]\ntrailing_hours = 0", "alerts.trailing_hours"),
        ("[alerts]\nspike_min_hours = 30", "alerts.spike_min_hours"),
        ("[alerts]\ndegraded = 0.2", "alerts.degraded"),
        ("[alerts.demotion]\nmin_judged = 0", "alerts.demotion.min_judged"),
        ("[alerts.demotion]\nmargin = -0.1", "alerts.demotion.margin"),
        ("[alerts.demotion]\nconfidence = 1.0", "alerts.demotion.confidence"),
    ],
)
def test_out_of_range_settings_name_their_key(text: str, key: str) -> None:
    """A setting out of its bounds, or an unknown one, is a ConfigError naming its key path."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.key == key


def test_overrides_replace_only_what_is_given_and_are_checked() -> None:
    """Flags replace their field, ``None`` leaves the config's value, and a bad value raises ValueError."""
    base = parse_config("[alerts]\noutlier_factor = 4\n").alerts
    changed = with_overrides(base, {"degraded_threshold": 0.05, "spike_factor": None, "demotion.margin": 0.4})
    assert (changed.degraded_threshold, changed.outlier_factor, changed.spike_factor) == (0.05, 4.0, 3.0)
    assert changed.demotion.margin == 0.4
    with pytest.raises(ValueError, match="margin"):
        with_overrides(base, {"demotion.margin": 2.0})


# -- the command line ----------------------------------------------------------------------------


def _records(now: float) -> list[RequestRecord | AttemptRecord]:
    """A task degraded on 2 of 10 calls, and two models judged 11/20 and 17/20 on it."""
    rows: list[RequestRecord | AttemptRecord] = [
        RequestRecord(request_id=f"q{i}", ts=now - 60 + i, tenant="acme", caller="api", task="extract",
                      model="weak", degraded=i < 2, attempts=1)
        for i in range(10)
    ]  # fmt: skip
    for model, accepted in (("weak", 11), ("strong", 17)):
        for i in range(20):
            verdict = "accept:reviewer" if i < accepted else "reject:reviewer:wrong total"
            rows.append(
                AttemptRecord(request_id=f"{model}{i}", attempt=0, ts=now - 30 - i, tenant="acme", caller="api",
                              task="extract", model_class="fast", model=model, provider="up", outcome="ok",
                              verdict=verdict)
            )  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger file holding ``_records``, written by the real store."""
    path = tmp_path_factory.mktemp("alerts") / "ledger.sqlite"

    async def write() -> None:
        async with SqliteLedgerStore(path) as store:
            await store.write(_records(time.time()))

    anyio.run(write)
    return path


def report(ledger: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``interlock report --ledger LEDGER ARGS`` in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "interlock.actors.cli._main", "report", "--ledger", str(ledger), *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "80"}, check=False,
    )  # fmt: skip


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    return msgspec.json.decode(done.stdout)  # type: ignore[no-any-return]


def test_the_degraded_alert_follows_the_flag(ledger: Path) -> None:
    """20% degraded is no alert at the default 30%, and one with ``--alert-degraded 0.1``."""
    assert _json(report(ledger, "--json"))["alerts"] == []
    body = _json(report(ledger, "--json", "--alert-degraded", "0.1"))
    assert body["thresholds"]["degraded_threshold"] == 0.1  # type: ignore[index]
    assert [a["kind"] for a in body["alerts"]] == ["degraded_share"]  # type: ignore[attr-defined]


def test_config_alerts_apply_and_flags_override_them(ledger: Path, tmp_path: Path) -> None:
    """``--config`` supplies ``[alerts]``; a flag given beside it wins for its own field only."""
    config = tmp_path / "fleet.toml"
    config.write_text("[alerts]\ndegraded_threshold = 0.15\noutlier_factor = 7.0\n")
    body = _json(report(ledger, "--json", "--config", str(config)))
    assert [a["kind"] for a in body["alerts"]] == ["degraded_share"]  # type: ignore[attr-defined]
    body = _json(report(ledger, "--json", "--config", str(config), "--alert-degraded", "0.25"))
    assert body["alerts"] == []
    assert body["thresholds"]["outlier_factor"] == 7.0  # type: ignore[index]


def test_the_demotion_rule_comes_from_config_and_flags(ledger: Path, tmp_path: Path) -> None:
    """weak (55%) is flagged below strong (85%) by default; not when 30 judged are needed or the gap is 40 points."""
    flagged = _json(report(ledger, "--json", "--quality"))
    assert [(d["model"], d["better_model"]) for d in flagged["demotions"]] == [("weak", "strong")]  # type: ignore[attr-defined]
    config = tmp_path / "strict.toml"
    config.write_text("[alerts.demotion]\nmin_judged = 30\n")
    strict = _json(report(ledger, "--json", "--quality", "--config", str(config)))
    assert strict["demotions"] == []
    assert strict["settings"]["min_judged"] == 30  # type: ignore[index]
    wide_gap = _json(report(ledger, "--json", "--quality", "--demote-margin", "0.4"))
    assert wide_gap["demotions"] == []
    relaxed = _json(report(ledger, "--json", "--quality", "--config", str(config), "--demote-min-judged", "20"))
    assert len(relaxed["demotions"]) == 1  # type: ignore[arg-type]


def test_a_flag_out_of_range_is_one_line_naming_it(ledger: Path) -> None:
    """``--alert-degraded 2`` is refused before the ledger is read: one line on stderr naming the flag, exit 2."""
    done = report(ledger, "--alert-degraded", "2")
    assert done.returncode == 2
    assert done.stderr.startswith("interlock report: --alert-degraded: degraded_threshold must be between 0 and 1")
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""
