"""lz-string's base64 form (``lz64``), decompressed with a bound on the output.

posthog-js sends its batches as ``LZString.compressToBase64(json)`` (``?compression=lz64``). The
format is lz-string's (https://github.com/pieroxy/lz-string, ``_decompress`` and
``decompressFromBase64`` of ``lz-string.js`` 1.5): LZW codes of a growing bit width, packed 6 bits
per base64 character, lowest bit first; code 0 and 1 bring a new 8- or 16-bit UTF-16 code unit,
code 2 ends the stream. The Python ports (``lzstring``, ``lzstring_optimized``) inflate without
any bound, and LZW's output grows with the square of its input (each dictionary entry is one unit
longer than the last), so a 1 MB body could ask for tens of gigabytes: this decoder counts what it
emits and stops at the limit, as the gzip decoder does (``ingest_api.api.deps``).
"""

from __future__ import annotations

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_VALUES = {character: index for index, character in enumerate(_ALPHABET)}


class Lz64Error(ValueError):
    """The text is not lz-string base64 (a character outside the alphabet, a code that names no
    dictionary entry, or a stream without its end code)."""


class Lz64TooLarge(ValueError):
    """The decompressed text would be longer than the limit (``limit`` UTF-16 code units)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"lz64 text inflates past {limit} characters")
        self.limit = limit


class _Bits:
    """The stream's bits, 6 per base64 character, lowest first."""

    def __init__(self, text: str) -> None:
        try:
            self.values = [_VALUES[character] for character in text]
        except KeyError as exc:
            raise Lz64Error(f"character {exc.args[0]!r} is not lz-string base64") from exc
        self.index, self.position = 0, 32  # 32: lz-string's reset value for base64 (6 bits used)

    def read(self, width: int) -> int:
        """The next ``width`` bits as an integer (first bit lowest).

        Raises:
            Lz64Error: the text ended first.
        """
        bits = 0
        for power in range(width):
            if self.index >= len(self.values):
                raise Lz64Error("the lz64 text ends before its end code")
            if self.values[self.index] & self.position:
                bits |= 1 << power
            self.position >>= 1
            if self.position == 0:
                self.position = 32
                self.index += 1
        return bits


def decompress_from_base64(text: str, limit: int) -> str:
    """Decompress ``LZString.compressToBase64`` output (``text``) to the original string.

    ``limit``: the most UTF-16 code units the output may have (a byte limit works as one: UTF-8
    never takes fewer bytes than UTF-16 units). Lone surrogates the stream may carry become U+FFFD.

    Raises:
        Lz64Error: ``text`` is empty or not lz-string base64.
        Lz64TooLarge: the output would be longer than ``limit``.
    """
    if not text:
        raise Lz64Error("the lz64 text is empty")
    bits = _Bits(text)
    dictionary: list[str] = ["", "", ""]  # codes 0-2 are the markers, never entries
    enlarge_in, width = 4, 3
    first = bits.read(2)
    if first == 2:
        return ""
    if first > 2:
        raise Lz64Error("the lz64 text does not start with a character code")
    entry = chr(bits.read(8 if first == 0 else 16))
    dictionary.append(entry)
    previous, out, size = entry, [entry], 1
    while True:
        code = bits.read(width)
        if code == 2:
            break
        if code < 2:  # a literal UTF-16 code unit: a new entry
            dictionary.append(chr(bits.read(8 if code == 0 else 16)))
            code = len(dictionary) - 1
            enlarge_in -= 1
            if enlarge_in == 0:
                enlarge_in, width = 1 << width, width + 1
        if code < len(dictionary):
            entry = dictionary[code]
        elif code == len(dictionary):  # LZW's one code ahead of its dictionary: w + w[0]
            entry = previous + previous[0]
        else:
            raise Lz64Error(f"lz64 code {code} names no entry (the dictionary has {len(dictionary)})")
        size += len(entry)
        if size > limit:
            raise Lz64TooLarge(limit)
        out.append(entry)
        dictionary.append(previous + entry[0])
        enlarge_in -= 1
        previous = entry
        if enlarge_in == 0:
            enlarge_in, width = 1 << width, width + 1
    units = "".join(out)
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
