"""Recognizing and replacing sensitive values: payment card numbers (Luhn and issuer ranges), IBANs
(ISO 13616 mod-97) and IP addresses (truncated to their network). The scrub rules name them
(``validator:`` and ``replace:`` in ``pipelines/scrub_rules.yaml``)."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of ISO/IEC 7812-1 on a string of digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


#: (prefix ranges as (low, high) on the leading digits, allowed lengths), per card scheme.
#: Sources: ISO/IEC 7812 issuer identification numbers as published by the schemes.
_CARD_SCHEMES: tuple[tuple[tuple[tuple[int, int], ...], frozenset[int]], ...] = (
    (((4, 4),), frozenset({13, 16, 19})),  # Visa
    (((51, 55), (2221, 2720)), frozenset({16})),  # Mastercard
    (((34, 34), (37, 37)), frozenset({15})),  # American Express
    (((6011, 6011), (644, 649), (65, 65)), frozenset(range(16, 20))),  # Discover
    (((3528, 3589),), frozenset(range(16, 20))),  # JCB
    (((300, 305), (36, 36), (38, 39)), frozenset(range(14, 20))),  # Diners Club
    (((62, 62),), frozenset(range(16, 20))),  # UnionPay
    (((50, 50), (56, 58), (6304, 6304), (6759, 6759)), frozenset(range(12, 20))),  # Maestro
)


def is_card_number(text: str) -> bool:
    """Whether ``text`` (digits, maybe grouped by spaces/dashes) is a plausible payment card number.

    13–19 digits passing the Luhn check, with a known issuer prefix and a length that issuer uses.
    """
    digits = re.sub(r"[ -]", "", text)
    if not digits.isdigit() or not 12 <= len(digits) <= 19 or not luhn_valid(digits):
        return False
    for ranges, lengths in _CARD_SCHEMES:
        if len(digits) not in lengths:
            continue
        for low, high in ranges:
            width = len(str(low))
            if low <= int(digits[:width]) <= high:
                return True
    return False


def is_iban(text: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters → 10..35, mod 97 == 1."""
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


VALIDATORS: dict[str, Callable[[str], bool]] = {"card_number": is_card_number, "iban": is_iban}


#: ``[v6]:port``, ``v4:port``, or a bare address (a zone id such as ``%eth0`` is kept apart).
_ADDRESS_PARTS = re.compile(r"^\[(?P<bracketed>[^\]]+)\](?P<bport>:\d{1,5})?$|^(?P<v4>[\d.]+)(?P<port>:\d{1,5})$")
#: An IPv4 address inside a span that is not an address as a whole (``[198.51.100.7:9092]``).
_IPV4_INSIDE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")


_IPV4_NETWORK_MASK = ((1 << 24) - 1) << 8  # /24
_IPV6_NETWORK_MASK = ((1 << 48) - 1) << 80  # /48


def _network(address: str) -> str | None:
    """The network of a bare address: IPv4 /24, IPv6 /48, IPv4-mapped IPv6 ``::ffff:`` + the IPv4
    /24 (its /120). ``None`` if not an IP. A zone id (``fe80::1%eth0``) is dropped."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{_network(str(ip.ipv4_mapped))}"
    # Host bits zeroed by a mask (ip_network(f"{ip}/48") parsed the text again: 8x slower for IPv6).
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(ip) & _IPV4_NETWORK_MASK))
    return str(ipaddress.IPv6Address(int(ip) & _IPV6_NETWORK_MASK))


# Cached: a micro-batch's enrichment (pipelines.transform.country_columns) and its scrub both truncate
# each distinct address; the second call, and a returning client's next batch, cost a lookup.
@functools.lru_cache(maxsize=65_536)
def truncate_ip(address: str | None) -> str | None:
    """The ``ip`` column's value: the address's network with host bits zeroed, without brackets or
    port (IPv4 /24, IPv6 /48, IPv4-mapped IPv6 ``::ffff:a.b.c.0``); ``None`` if not an IP.

    /24 and /48 are the prefixes Google Analytics' IP anonymization zeroes (the last octet of
    IPv4, the last 80 bits of IPv6); see ``docs/privacy.md``.
    """
    if not address:
        return None
    address = address.strip()
    parts = _ADDRESS_PARTS.match(address)
    if parts:
        address = parts["bracketed"] or parts["v4"]
    return _network(address)


def _text_network(address: str) -> str | None:
    """:func:`_network` of an address found in text, its zone id kept; ``None`` for what is no
    address, or nobody's: ``::/48`` (``::1``, ``::``, and Python slices such as ``[::2]``), and a
    two-group IPv6 whose first group is a short word (``Db::Add1``, ``10::1``)."""
    bare, _, zone = address.partition("%")
    network = _network(bare)
    if network is None or network == "::":
        return None
    if "." not in bare and bare.count(":") < 3 and len(bare.split(":", 1)[0]) < 3:
        return None
    return f"{network}%{zone}" if zone else network


def truncate_ip_text(match: str) -> str | None:
    """An address found in text, truncated as :func:`truncate_ip` does, its brackets, zone id and
    port kept (``[2001:db8::1]:443`` → ``[2001:db8::]:443``). A span that is no address as a whole
    has the IPv4 addresses inside it truncated (``[198.51.100.7:9092]`` → ``[198.51.100.0:9092]``).
    ``None`` when nothing in ``match`` is an address."""
    parts = _ADDRESS_PARTS.match(match)
    network = None
    if not parts:
        network = _text_network(match)
    elif parts["bracketed"]:
        inner = _text_network(parts["bracketed"])
        network = None if inner is None else f"[{inner}]{parts['bport'] or ''}"
    elif (v4 := _network(parts["v4"])) is not None:
        network = f"{v4}{parts['port']}"
    if network is not None:
        return network
    inside = _IPV4_INSIDE.sub(lambda m: _network(m.group(0)) or m.group(0), match)
    return inside if inside != match else None


#: Named replacements a value pattern may use (``replace:`` in the rules file).
REPLACERS: dict[str, Callable[[str], str | None]] = {"truncate_ip": truncate_ip_text}
