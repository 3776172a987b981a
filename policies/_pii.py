"""Automatic PII detection: which personal-data detectors fire on a request the caller did not mark.

A request whose ``sensitivity`` is still the default (``"internal"``: the field cannot tell a
caller who said so from one who said nothing) is scanned — every message's text, every tool
call's arguments and every tool result — and, when a detector fires, marked ``sensitivity =
"pii"``, so the routing's PII guard (``privacy.pii_classes``) keeps it on local models. A request
marked ``"pii"`` or ``"public"`` is never scanned: the caller has said what it holds.

The names of the detectors that fired ride on the marked request under ``PII_DETECTED_KEY`` in
its metadata (so every plan, auxiliary call and ledger row made from it knows them, and a marked
request is not scanned twice); the values they matched are never kept anywhere.

Detection is on by default for every tenant. ``tenants.<name>.pii_detection`` and
``jobs.<name>.pii_detection`` take ``true``, ``false`` or a list of detector names; the job's,
when it is set, wins over the tenant's. ``tenants.<name>.pii_phone_regions`` are the regions
whose national phone formats count (numbers written with ``+`` and a country code always do).

Pure: the checks (``_pii_checks``) are functions of the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

import msgspec

from interlock._types import ChatRequest, TextPart, ToolCallPart, ToolResultPart
from interlock.policies import _pii_checks as checks

PiiDetector = Literal["email", "phone", "payment_card", "iban", "us_ssn", "uk_nino", "es_dni"]
PiiDetection = bool | tuple[PiiDetector, ...]  # the config's setting: all, none, or these

# Every detector, in the order they run and are reported (the cheapest gates first).
DETECTORS: tuple[PiiDetector, ...] = ("email", "payment_card", "iban", "us_ssn", "uk_nino", "es_dni", "phone")
PII_DETECTED_KEY = "interlock.pii_detected"
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US",)

_Check = Callable[[str, Sequence[str]], bool]
_CHECKS: dict[PiiDetector, _Check] = {
    "email": lambda text, _: checks.has_email(text),
    "payment_card": lambda text, _: checks.has_payment_card(text),
    "iban": lambda text, _: checks.has_iban(text),
    "us_ssn": lambda text, _: checks.has_us_ssn(text),
    "uk_nino": lambda text, _: checks.has_uk_nino(text),
    "es_dni": lambda text, _: checks.has_es_dni(text),
    "phone": checks.has_phone,
}
_NEEDS_DIGITS = frozenset(DETECTORS) - {"email"}
_DIGIT = re.compile(r"\d")  # every detector but e-mail needs a digit: most prose is passed over at once


def enabled(setting: PiiDetection) -> tuple[PiiDetector, ...]:
    """The detectors a ``pii_detection`` setting turns on, in ``DETECTORS`` order."""
    if setting is True:
        return DETECTORS
    if setting is False:
        return ()
    return tuple(d for d in DETECTORS if d in setting)


def unmarked(request: ChatRequest) -> bool:
    """Whether the caller left ``sensitivity`` at its default, so the request is scanned."""
    return request.sensitivity == "internal"


def request_texts(request: ChatRequest) -> Iterator[str]:
    """Every text of ``request`` a model would read: message text, tool-call arguments, tool results."""
    for message in request.messages:
        for part in message.content:
            if isinstance(part, TextPart):
                yield part.text
            elif isinstance(part, ToolResultPart):
                yield part.content
            elif isinstance(part, ToolCallPart):
                yield part.arguments


def detect(
    texts: Iterable[str], detectors: Sequence[PiiDetector] = DETECTORS, regions: Sequence[str] = DEFAULT_PHONE_REGIONS
) -> tuple[PiiDetector, ...]:
    """The detectors among ``detectors`` that fire on any of ``texts``, in ``DETECTORS`` order.

    A detector that fired is not run again on later texts; the scan stops once all have fired.
    """
    waiting = [d for d in DETECTORS if d in detectors]
    found: set[PiiDetector] = set()
    for text in texts:
        has_digit = _DIGIT.search(text) is not None if _NEEDS_DIGITS.intersection(waiting) else False
        for name in waiting:
            if (name == "email" or has_digit) and _CHECKS[name](text, regions):
                found.add(name)
        if found:
            waiting = [d for d in waiting if d not in found]
            if not waiting:
                break
    return tuple(d for d in DETECTORS if d in found)


def mark_pii(request: ChatRequest, found: Sequence[str]) -> ChatRequest:
    """``request`` marked ``sensitivity = "pii"``, the detectors that fired named in its metadata."""
    metadata = {**request.metadata, PII_DETECTED_KEY: ",".join(found)}
    return msgspec.structs.replace(request, sensitivity="pii", metadata=metadata)


def detected(request: ChatRequest) -> str:
    """The comma-separated detectors that marked ``request`` (``""`` when none did): the ledger's ``pii_detected``."""
    return request.metadata.get(PII_DETECTED_KEY, "")
