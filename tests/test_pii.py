"""Automatic PII detection: the detectors' rules, and a detected request kept local through a real door."""

from __future__ import annotations

import json
import string
import subprocess
import sys
from importlib import resources
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import interlock
from interlock import ConfigError, Message, TextPart, ToolCallPart, ToolResultPart
from interlock.actors import _router_actor
from interlock.policies import _pii
from interlock.policies._config import parse_config
from interlock.policies._pii import DETECTORS, detect
from interlock.policies._pii_checks import IBAN_LENGTHS, iban_valid, luhn_valid
from interlock.testing import read_ledger

# -- the checks, as properties -------------------------------------------------------------------

_PROSE = st.text(alphabet=string.ascii_letters + " .,;!?", max_size=60)
# (issuer prefix, card length, grouping) of the major issuers: Visa, Mastercard (both ranges), Amex,
# Discover, JCB, Diners; the grouping is how each is usually printed.
_ISSUERS = [
    ("4", 16, (4, 4, 4, 4)), ("4", 19, (4, 4, 4, 4, 3)), ("4", 13, (13,)), ("51", 16, (4, 4, 4, 4)),
    ("55", 16, (4, 4, 4, 4)), ("2221", 16, (4, 4, 4, 4)), ("2720", 16, (4, 4, 4, 4)), ("34", 15, (4, 6, 5)),
    ("37", 15, (4, 6, 5)), ("6011", 16, (4, 4, 4, 4)), ("65", 16, (4, 4, 4, 4)), ("3530", 16, (4, 4, 4, 4)),
    ("36", 14, (4, 6, 4)),
]  # fmt: skip


def _luhn_digit(body: str) -> str:
    return next(str(d) for d in range(10) if luhn_valid(body + str(d)))


def _grouped(number: str, groups: tuple[int, ...], sep: str) -> str:
    out, at = [], 0
    for size in groups:
        out.append(number[at : at + size])
        at += size
    return sep.join(out)


@st.composite
def _cards(draw: st.DrawFn) -> tuple[str, tuple[int, ...]]:
    prefix, length, groups = draw(st.sampled_from(_ISSUERS))
    body = prefix + "".join(draw(st.lists(st.sampled_from(string.digits), min_size=length - len(prefix) - 1,
                                          max_size=length - len(prefix) - 1)))  # fmt: skip
    return body + _luhn_digit(body), groups


def _printed(number: str, groups: tuple[int, ...], style: str) -> str:
    return number if style == "" else _grouped(number, groups, style)


@settings(max_examples=200, deadline=None)
@given(_cards(), st.sampled_from(["", " ", "-"]), _PROSE, _PROSE)
def test_a_luhn_valid_card_number_is_found_however_it_is_printed(
    card: tuple[str, tuple[int, ...]], style: str, before: str, after: str
) -> None:
    number, groups = card
    text = f"{before} {_printed(number, groups, style)} {after}"
    assert "payment_card" in detect([text])


@settings(max_examples=200, deadline=None)
@given(_cards(), st.integers(1, 9), st.sampled_from(["", " ", "-"]), _PROSE, _PROSE)
def test_a_card_number_failing_luhn_is_not_a_card(
    card: tuple[str, tuple[int, ...]], shift: int, style: str, before: str, after: str
) -> None:
    number, groups = card
    broken = number[:-1] + str((int(number[-1]) + shift) % 10)
    assert not luhn_valid(broken)
    assert "payment_card" not in detect([f"{before} {_printed(broken, groups, style)} {after}"])


def _check_digits(country: str, bban: str) -> int:
    moved = bban + country + "00"
    return 98 - int("".join(str(int(ch, 36)) for ch in moved)) % 97


@st.composite
def _ibans(draw: st.DrawFn) -> tuple[str, str, int]:
    country = draw(st.sampled_from(sorted(IBAN_LENGTHS)))
    size = IBAN_LENGTHS[country] - 4
    bban = "".join(draw(st.lists(st.sampled_from(string.digits + string.ascii_uppercase), min_size=size,
                                 max_size=size)))  # fmt: skip
    return country, bban, _check_digits(country, bban)


def _iban_text(country: str, check: int, bban: str, spaced: bool) -> str:
    compact = f"{country}{check:02d}{bban}"
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4)) if spaced else compact


@settings(max_examples=200, deadline=None)
@given(_ibans(), st.booleans(), st.booleans(), _PROSE, _PROSE)
def test_an_iban_with_its_mod97_check_is_found(
    iban: tuple[str, str, int], spaced: bool, lower: bool, before: str, after: str
) -> None:
    country, bban, check = iban
    printed = _iban_text(country, check, bban, spaced)
    assert iban_valid(printed.replace(" ", ""))
    assert "iban" in detect([f"{before} {printed.lower() if lower else printed} {after}"])


@settings(max_examples=200, deadline=None)
@given(_ibans(), st.integers(1, 96), st.booleans(), _PROSE, _PROSE)
def test_an_iban_with_wrong_check_digits_is_not_found(
    iban: tuple[str, str, int], shift: int, spaced: bool, before: str, after: str
) -> None:
    country, bban, check = iban
    wrong = 2 + (check - 2 + shift) % 97  # another value in 2..98: the mod-97 remainder is no longer 1
    assert "iban" not in detect([f"{before} {_iban_text(country, wrong, bban, spaced)} {after}"])


@settings(max_examples=200, deadline=None)
@given(_PROSE)
def test_prose_without_digits_or_an_at_sign_fires_nothing(text: str) -> None:
    assert detect([text]) == ()


@pytest.mark.parametrize(
    ("text", "fires"),
    [
        ("write to jane.doe+tax@example.co.uk today", "email"),
        ("call me on (415) 555-2671 after six", "phone"),
        ("my mobile is +44 7911 123456", "phone"),
        ("Tel. 030 901820 in Berlin", None),  # a German national number, outside the tenant's regions
        ("SSN 536-22-8726 on file", "us_ssn"),
        ("NI number AB 12 34 56 C", "uk_nino"),
        ("DNI 12345678Z", "es_dni"),
    ],
)
def test_each_detector_fires_on_its_own_kind(text: str, fires: str | None) -> None:
    assert detect([text]) == ((fires,) if fires else ())


@pytest.mark.parametrize(
    "text",
    [
        "SSN 666-22-8726",  # area 666 is never issued
        "SSN 536-00-8726",  # group 00 is never issued
        "SSN 078-05-1120",  # the wallet-card example, void since 1943
        "NI number GB 12 34 56 C",  # GB is not an allocated prefix
        "DNI 12345678A",  # the letter does not match the digits mod 23
        "meeting on 2025-03-04 at 10:30; 4,500 units; order 12345678; v1.2.3",
        "user@localhost is not an address with a domain",
    ],
)
def test_values_that_break_their_kind_s_rules_do_not_fire(text: str) -> None:
    assert detect([text]) == ()


def test_national_phone_formats_count_only_in_the_regions_given() -> None:
    assert detect(["Tel. 030 901820"], regions=("DE",)) == ("phone",)
    assert detect(["call (415) 555-2671"], regions=("GB",)) == ()
    assert detect(["call +1 415 555 2671"], regions=()) == ("phone",)  # an international number, anywhere


def test_only_the_detectors_asked_for_run() -> None:
    text = "jane@example.com, IBAN GB82 WEST 1234 5698 7654 32"
    assert detect([text]) == ("email", "iban")
    assert detect([text], ("iban",)) == ("iban",)


# -- through a real door on the embedded simulator -------------------------------------------------

_EXTRA = """
[tenants.trusted]
pii_detection = false

[tenants.cards_only]
pii_detection = ["payment_card"]

[jobs.anonymised]
chain = ["fast"]
pii_detection = false

[jobs.strict]
chain = ["fast", "local"]
pii_detection = true
"""
_EMAIL = "jane.doe@example.com"
_CARD = "4111 1111 1111 1111"


def _config(extra: str = _EXTRA) -> interlock.Config:
    text = resources.files("interlock.policies").joinpath("default.toml").read_text(encoding="utf-8")
    return parse_config(text + extra)


def _class(reply: interlock.ChatResponse) -> str:
    assert reply.route is not None
    return reply.route.model_class


async def _rows(path: Path) -> dict[str, str]:
    requests, _ = await read_ledger(path)
    return {r.request_id: r.pii_detected for r in requests}


@pytest.mark.anyio
async def test_a_detected_request_is_served_locally_and_the_ledger_names_the_detector_not_the_value(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    async with interlock.open(_config(), ledger_path=ledger, gc_tuning=False) as door:
        plain = await door.ask("summarise the meeting notes", tenant="acme", request_id="plain")
        found = await door.ask(f"my card is {_CARD}, mail me at {_EMAIL}", tenant="acme", request_id="found")
    assert _class(plain) != "local"
    assert _class(found) == "local"
    rows = await _rows(ledger)
    assert rows == {"plain": "", "found": "email,payment_card"}
    stored = b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.is_file())  # noqa: ASYNC240
    for value in (_EMAIL, _CARD, _CARD.replace(" ", "")):
        assert value.encode() not in stored


@pytest.mark.anyio
async def test_personal_data_in_a_tool_result_is_found_too(tmp_path: Path) -> None:
    messages = [
        Message.text("user", "look the customer up"),
        Message("assistant", (ToolCallPart("c1", "crm_lookup", '{"id": 7}'),)),
        Message("tool", (ToolResultPart("c1", '{"iban": "DE89 3704 0044 0532 0130 00"}'),)),
        Message("user", (TextPart("and now summarise"),)),
    ]
    async with interlock.open(_config(), ledger_path=tmp_path / "l.sqlite", gc_tuning=False) as door:
        reply = await door.ask(messages, request_id="tool")
    assert _class(reply) == "local"
    assert await _rows(tmp_path / "l.sqlite") == {"tool": "iban"}


@pytest.mark.anyio
async def test_detection_can_be_turned_off_per_tenant_and_per_job_and_narrowed(tmp_path: Path) -> None:
    prompt = f"mail {_EMAIL} about it"
    ledger = tmp_path / "l.sqlite"
    async with interlock.open(_config(), ledger_path=ledger, gc_tuning=False) as door:
        by_tenant = await door.ask(prompt, tenant="trusted", request_id="tenant_off")
        by_job = await door.ask(prompt, task="anonymised", request_id="job_off")
        narrowed = await door.ask(prompt, tenant="cards_only", request_id="cards_only")
        job_wins = await door.ask(prompt, tenant="trusted", task="strict", request_id="job_on")
    for reply in (by_tenant, by_job, narrowed):
        assert _class(reply) != "local"
    assert _class(job_wins) == "local"
    assert await _rows(ledger) == {"tenant_off": "", "job_off": "", "cards_only": "", "job_on": "email"}


@pytest.mark.anyio
async def test_a_request_the_caller_marked_is_never_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[int] = []
    real = _router_actor.detect

    def counted(*args: object, **kwargs: object) -> tuple[str, ...]:
        scans.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_router_actor, "detect", counted)
    prompt = f"mail {_EMAIL} about it"
    ledger = tmp_path / "l.sqlite"
    async with interlock.open(_config(), ledger_path=ledger, gc_tuning=False) as door:
        public = await door.ask(prompt, sensitivity="public", request_id="public")
        pii = await door.ask("hello", sensitivity="pii", request_id="pii")
        assert scans == []
        await door.ask(prompt, request_id="unmarked")
        assert scans == [1]  # one scan per unmarked request, none again for its marked re-plans
    assert _class(public) != "local"
    assert _class(pii) == "local"
    assert await _rows(ledger) == {"public": "", "pii": "", "unmarked": "email"}


def test_the_config_names_a_bad_setting_by_its_key() -> None:
    with pytest.raises(ConfigError, match=r"tenants\.t\.pii_phone_regions: unknown region 'XX'"):
        _config('[tenants.t]\npii_phone_regions = ["XX"]\n')
    with pytest.raises(ConfigError, match=r"jobs\.j\.pii_detection: an empty list"):
        _config('[jobs.j]\nchain = ["fast"]\npii_detection = []\n')
    with pytest.raises(ConfigError, match=r"tenants\.t\.pii_detection"):
        _config('[tenants.t]\npii_detection = ["mail"]\n')


def test_every_detector_is_reported_in_one_fixed_order() -> None:
    assert set(DETECTORS) == set(_pii.enabled(True))
    assert _pii.enabled(False) == ()
    assert _pii.enabled(("phone", "email")) == ("email", "phone")


def test_the_benchmark_runs_and_reports_its_figures_beside_its_baseline() -> None:
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "pii.py"
    argv = [sys.executable, str(bench), "--kb", "1", "--repeat", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for kind in ("prose", "numbers", "pii"):
        assert summary[f"{kind}_scan_us_per_kb"] > 0
        assert summary[f"{kind}_scan_over_regex"] > 0
    assert "email,phone" in done.stdout  # the PII prompt's detectors, in the table


@pytest.mark.anyio
async def test_texts_to_embed_are_scanned_too_and_personal_data_is_embedded_locally(tmp_path: Path) -> None:
    """An embed sends its texts to the provider as a chat sends its messages: the same scan, the same rule."""
    ledger = tmp_path / "ledger.sqlite"
    async with interlock.open(_config(), ledger_path=ledger, gc_tuning=False) as door:
        plain = await door.embed(["the weather in Lisbon"], task="embed", request_id="plain")
        found = await door.embed(["the weather", f"write to {_EMAIL}"], task="embed", request_id="found")
    assert plain.route is not None
    assert found.route is not None
    assert plain.route.model_class == "specialist"
    assert (found.route.model, found.route.model_class) == ("embed_local", "local")
    assert len(found.vectors) == 2
    assert await _rows(ledger) == {"plain": "", "found": "email"}
    stored = b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.is_file())  # noqa: ASYNC240
    assert _EMAIL.encode() not in stored


@pytest.mark.anyio
async def test_personal_data_to_embed_with_no_local_embedder_is_refused_naming_the_rule(tmp_path: Path) -> None:
    """A job whose chain has no model allowed to see PII refuses, typed, before any provider sees the texts."""
    config = _config(_EXTRA + '\n[jobs.cloud_embed]\nchain = ["specialist"]\n')
    ledger = tmp_path / "ledger.sqlite"
    async with interlock.open(config, ledger_path=ledger, gc_tuning=False) as door:
        with pytest.raises(interlock.PolicyRefused) as refused:
            await door.embed([f"write to {_EMAIL}"], task="cloud_embed", request_id="refused")
    assert refused.value.rule == "pii"
    requests, attempts = await read_ledger(ledger)
    assert [(r.request_id, r.outcome, r.pii_detected) for r in requests] == [("refused", "error", "email")]
    assert attempts == []  # no provider was asked
