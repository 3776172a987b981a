"""The personal-data checks behind ``policies._pii``: each says whether a text holds one kind.

Each check is a cheap gate first (a character the kind cannot do without, found by ``in`` or one
compiled pattern), then a candidate pattern, then the kind's own rule: the Luhn sum for payment
cards, ISO 13616's mod-97 and per-country length for IBANs, the letter checksum of a Spanish DNI,
the Social Security Administration's never-issued areas, groups and serials for US SSNs, the
HMRC prefix and suffix rules for UK National Insurance numbers, and Google's libphonenumber
(the ``phonenumbers`` package, imported on the first text with a long enough digit run) for
phone numbers. A check returns a bool and keeps nothing it saw.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

# An address is found from its "@": a local-part character before it, a domain with a letters-only
# top-level label after it. Matching from the "@" keeps the scan linear (a pattern that starts with
# the local part retries up to 64 characters at every word).
_EMAIL_LOCAL_END = re.compile(r"[\w.%+-]")
_EMAIL_DOMAIN = re.compile(r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b")
# Groups of three or more digits joined by one space or dash: "4111 1111 1111 1111", "3782-822463-10005".
# A short group after a space ("12/25", "ext 12") is not part of the number.
_DIGIT_RUN = re.compile(r"(?<![\w])[0-9]{3,}(?:[ -][0-9]{3,})*(?![\w])")
_IBAN = re.compile(r"(?<![\w])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,32}")
_SSN = re.compile(r"([0-9]{3})([- ])([0-9]{2})\2([0-9]{4})(?![0-9-])")
_NINO = re.compile(r"\b([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b")
_DNI = re.compile(r"(?<![\w])([0-9]{8})-? ?([A-Za-z])(?![\w])")
# A phone number needs at least seven digits, maybe with +, brackets, spaces, dots, dashes or slashes.
_PHONE_SPAN = re.compile(r"(?:\+|\(|(?<![\w]))[0-9][0-9 ().\-/]{5,24}[0-9](?![\w])")

_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_SSN_NEVER_ISSUED = frozenset({"078-05-1120", "219-09-9999", "123-45-6789"})  # published, advertised examples
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
# ISO 13616 registry: the length of each country's IBAN.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn (mod 10) check that card numbers carry."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_issuer(digits: str) -> bool:
    # Issuer identification: 2221-2720 (Mastercard), 3 (Amex, Diners, JCB), 4 (Visa), 5 (Mastercard,
    # Maestro), 6 (Discover, UnionPay, Maestro). Other leading digits issue no payment cards.
    first = digits[0]
    return first in "3456" or (first == "2" and 2221 <= int(digits[:4]) <= 2720)


def has_payment_card(text: str) -> bool:
    """A 13-19 digit number (spaces or dashes between groups allowed) of a card issuer that passes Luhn."""
    for match in _DIGIT_RUN.finditer(text):
        digits = match.group().replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and _card_issuer(digits) and luhn_valid(digits):
            return True
    return False


def iban_valid(iban: str) -> bool:
    """Whether ``iban`` (no spaces, upper case) has its country's length and ISO 7064 mod-97 remainder 1."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def has_iban(text: str) -> bool:
    """An IBAN, printed with or without its groups of four, in either case."""
    for match in _IBAN.finditer(text):
        compact = match.group().replace(" ", "").upper()
        length = IBAN_LENGTHS.get(compact[:2])
        # The pattern may run on into the next word: the country's length says where the IBAN ends.
        if length is not None and len(compact) >= length and iban_valid(compact[:length]):
            return True
    return False


def has_us_ssn(text: str) -> bool:
    """A US Social Security number, AAA-GG-SSSS (or with spaces), in a block the SSA issues."""
    for match in _SSN.finditer(text):
        if match.start() and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "-"):
            continue  # the tail of a longer number (a phone number, a reference)
        area, _, group, serial = match.groups()
        if area == "000" or area == "666" or area[0] == "9" or group == "00" or serial == "0000":
            continue
        if f"{area}-{group}-{serial}" not in _SSN_NEVER_ISSUED:
            return True
    return False


def has_uk_nino(text: str) -> bool:
    """A UK National Insurance number (AB 12 34 56 C), its prefix letters and suffix as HMRC allocates them."""
    return any(m.group(1) not in _NINO_BAD_PREFIXES for m in _NINO.finditer(text))


def has_es_dni(text: str) -> bool:
    """A Spanish DNI: eight digits and the letter their value mod 23 selects."""
    return any(_DNI_LETTERS[int(m.group(1)) % 23] == m.group(2).upper() for m in _DNI.finditer(text))


def has_email(text: str) -> bool:
    """An e-mail address: a local part, ``@``, and a domain with a top-level label of letters."""
    at = text.find("@")
    while at != -1:
        if at and _EMAIL_LOCAL_END.match(text, at - 1) and _EMAIL_DOMAIN.match(text, at):
            return True
        at = text.find("@", at + 1)
    return False


_phonenumbers: Any = None  # the module, once a text needed it (importing it costs about 45 ms)


def _library() -> Any:
    global _phonenumbers
    if _phonenumbers is None:
        import phonenumbers

        _phonenumbers = phonenumbers
    return _phonenumbers


@functools.cache
def _national_digits(region: str) -> tuple[int, int]:
    """The fewest and most digits a national number of ``region`` is written with (its trunk prefix too)."""
    metadata = _library().PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return (0, 0)
    lengths = metadata.general_desc.possible_length or (7, 15)
    return min(lengths), max(lengths) + len(metadata.national_prefix or "")


def has_phone(text: str, regions: Sequence[str]) -> bool:
    """A phone number libphonenumber finds valid: international (``+``) anywhere, national in ``regions``.

    Only spans with as many digits as a number can have reach the matcher (seven to fifteen with a
    ``+``, the region's own lengths without), each on its own: most prose has none, and the
    matcher costs about 0.1 ms per span it is given. Leniency ``VALID``: the number must be a
    valid, assigned-range number for its region, so dates, amounts and order numbers rarely pass.
    """
    library: Any = None
    for match in _PHONE_SPAN.finditer(text):
        span = match.group()
        digits = sum(ch.isdigit() for ch in span)
        if digits < 7:
            continue
        # A number written with its country code parses in any region; a national one only in its own.
        if span[0] == "+":
            tried: Sequence[str] = ("ZZ",) if digits <= 15 else ()
        else:
            tried = [r for r in regions if _national_digits(r)[0] <= digits <= _national_digits(r)[1]]
        if tried and library is None:
            library = _library()
        for region in tried:
            found = library.PhoneNumberMatcher(span, region, leniency=library.Leniency.VALID)
            if next(iter(found), None) is not None:
                return True
    return False


def known_region(region: str) -> bool:
    """Whether libphonenumber knows ``region`` (an ISO 3166 alpha-2 code such as ``US`` or ``GB``)."""
    import phonenumbers

    return region in phonenumbers.SUPPORTED_REGIONS
