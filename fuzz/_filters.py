"""Stream filter encoders (and the bounded decoders the tests use to check bombs).

Runs in the test process or a fuzz driver. Flate, LZW, ASCIIHex, ASCII85 and RunLength,
plus PNG and TIFF predictors. The LZW encoder is our own: neither pikepdf nor the standard
library writes LZW, and the bomb needs to control the code stream directly.
"""
from __future__ import annotations

import base64
import dataclasses
import zlib

from fuzz._syntax import Name

CLEAR, EOD = 256, 257
_FIRST_CODE, _MAX_CODE = 258, 4095


_CODE_BITS = {width: f"0{width}b" for width in range(9, 13)}


def pack_lzw_codes(codes: list[int], *, early_change: int = 1) -> bytes:
    """Pack LZW codes MSB-first with the PDF width schedule: 9 bits, one more each time the
    table would outgrow the width (one code early when early_change=1), 12 at most."""
    # As one string of binary digits turned into bytes at once: a bit loop per code was
    # the single most expensive function of generation (an LZW bomb has ~40,000 codes).
    digits = []
    next_code, width = _FIRST_CODE, 9
    for code in codes:
        digits.append(format(code, _CODE_BITS[width]))
        if code == CLEAR:
            next_code, width = _FIRST_CODE, 9
        elif code != EOD:
            next_code += 1
            if next_code + early_change > (1 << width) and width < 12:
                width += 1
    bits = "".join(digits)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def lzw_encode(data: bytes, *, early_change: int = 1) -> bytes:
    codes = [CLEAR]
    table: dict[int, int] = {}  # (code of a string << 8 | next byte) -> code of both
    next_code = _FIRST_CODE
    current = -1  # code of the string matched so far (none yet)
    for byte in data:
        if current < 0:
            current = byte
            continue
        extended = table.get(current << 8 | byte)
        if extended is not None:
            current = extended
            continue
        codes.append(current)
        # Clear a few codes before 4095 so that decoders that are off by one still agree.
        if next_code < _MAX_CODE - 2:
            table[current << 8 | byte] = next_code
            next_code += 1
        else:
            codes.append(CLEAR)
            table = {}
            next_code = _FIRST_CODE
        current = byte
    if current >= 0:
        codes.append(current)
    codes.append(EOD)
    return pack_lzw_codes(codes, early_change=early_change)


def lzw_decode(data: bytes, *, early_change: int = 1, max_output: int = 1 << 24) -> bytes:
    """Decode LZW, stopping at max_output bytes (the point of a bomb is that it never ends)."""
    out = bytearray()
    table: list[bytes] = [bytes([i]) for i in range(256)] + [b"", b""]
    width, previous = 9, None
    buffer = bits = 0
    for byte in data:
        buffer = (buffer << 8) | byte
        bits += 8
        while bits >= width:
            bits -= width
            code = (buffer >> bits) & ((1 << width) - 1)
            buffer &= (1 << bits) - 1
            if code == CLEAR:
                table, width, previous = table[:258], 9, None
                continue
            if code == EOD:
                return bytes(out)
            if previous is None:
                entry = table[code]
            else:
                entry = table[code] if code < len(table) else previous + previous[:1]
                if len(table) <= _MAX_CODE:
                    table.append(previous + entry[:1])
                if len(table) + early_change >= (1 << width) and width < 12:
                    width += 1
            out += entry
            if len(out) >= max_output:
                return bytes(out[:max_output])
            previous = entry
    return bytes(out)


def runlength_encode(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        run = 1
        while i + run < len(data) and run < 128 and data[i + run] == data[i]:
            run += 1
        if run > 1:
            out += bytes([257 - run, data[i]])
            i += run
            continue
        start = i
        while i < len(data) and i - start < 128 and (i + 1 >= len(data) or data[i + 1] != data[i]):
            i += 1
        if i == start:  # a run starts right here; keep at least one literal byte
            i += 1
        out += bytes([i - start - 1]) + data[start:i]
    return bytes(out + b"\x80")


def runlength_decode(data: bytes, *, max_output: int = 1 << 24) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data) and len(out) < max_output:
        length = data[i]
        if length == 128:
            break
        if length < 128:
            out += data[i + 1 : i + 2 + length]
            i += 2 + length
        else:
            out += data[i + 1 : i + 2] * (257 - length)
            i += 2
    return bytes(out[:max_output])


def asciihex_encode(data: bytes, *, lowercase: bool = False, spaced: bool = False) -> bytes:
    text = data.hex() if lowercase else data.hex().upper()
    if spaced:  # whitespace between digits is legal and readers must skip it
        text = " ".join(text[i : i + 2] for i in range(0, len(text), 2))
    return text.encode() + b">"


def ascii85_encode(data: bytes) -> bytes:
    return base64.a85encode(data) + b"~>"


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A /DecodeParms predictor. kind 2 is TIFF, 10-15 PNG; Columns is picked at encode
    time so the data always fills whole rows (pypdf refuses partial rows)."""

    kind: int
    colors: int = 1
    bits: int = 8
    max_columns: int = 64

    @property
    def bytes_per_pixel(self) -> int:
        return max(1, self.colors * self.bits // 8)

    def columns_for(self, length: int) -> int:
        pixels = length // self.bytes_per_pixel
        return max([d for d in range(1, min(pixels, self.max_columns) + 1) if pixels % d == 0], default=1)

    def encode(self, data: bytes) -> tuple[bytes, dict]:
        if len(data) % self.bytes_per_pixel:
            return Predictor(self.kind, 1, 8, self.max_columns).encode(data)
        columns = self.columns_for(len(data))
        row_length = columns * self.bytes_per_pixel
        rows = [data[i : i + row_length] for i in range(0, len(data), row_length)]
        parms = {"Predictor": self.kind, "Colors": self.colors, "BitsPerComponent": self.bits, "Columns": columns}
        bpp = self.bytes_per_pixel
        if self.kind == 2:
            return b"".join(_tiff_row(row, self.colors, self.bits) for row in rows), parms
        out, prior = bytearray(), bytes(row_length)
        for index, row in enumerate(rows):
            kind = (self.kind - 10) if self.kind < 15 else index % 5
            out.append(kind)
            out += _png_row(kind, row, prior, bpp)
            prior = row
        return bytes(out), parms


def _tiff_row(row: bytes, colors: int, bits: int) -> bytes:
    # TIFF differences are taken per sample (16-bit samples carry), unlike PNG's per byte.
    size = bits // 8
    samples = [int.from_bytes(row[i : i + size], "big") for i in range(0, len(row), size)]
    mask = (1 << bits) - 1
    return b"".join(((value - (samples[i - colors] if i >= colors else 0)) & mask).to_bytes(size, "big")
                    for i, value in enumerate(samples))


def _png_row(kind: int, row: bytes, prior: bytes, bpp: int) -> bytes:
    out = bytearray(len(row))
    for i, value in enumerate(row):
        left = row[i - bpp] if i >= bpp else 0
        up = prior[i]
        up_left = prior[i - bpp] if i >= bpp else 0
        if kind == 0:
            guess = 0
        elif kind == 1:
            guess = left
        elif kind == 2:
            guess = up
        elif kind == 3:
            guess = (left + up) // 2
        else:
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            guess = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
        out[i] = (value - guess) & 0xFF
    return bytes(out)


_ENCODERS = {
    "FlateDecode": lambda data: zlib.compress(data),
    "LZWDecode": lzw_encode,
    "ASCIIHexDecode": asciihex_encode,
    "ASCII85Decode": ascii85_encode,
    "RunLengthDecode": runlength_encode,
}
FILTER_NAMES = tuple(_ENCODERS)
_PREDICTABLE = ("FlateDecode", "LZWDecode")


@dataclasses.dataclass(frozen=True)
class FilterChain:
    """A /Filter list (applied by readers left to right) with optional predictors.

    `encode(data)` returns the stream data and the dictionary entries to put beside it.
    """

    filters: tuple[str, ...]
    predictors: tuple[Predictor | None, ...] = ()

    def __post_init__(self) -> None:
        for name in self.filters:
            if name not in _ENCODERS:
                raise ValueError(f"unknown filter {name!r}; expected one of {FILTER_NAMES}")
        if self.predictors and len(self.predictors) != len(self.filters):
            raise ValueError(f"predictors {self.predictors!r} must match filters {self.filters!r}")

    def encode(self, data: bytes) -> tuple[bytes, dict]:
        predictors = self.predictors or (None,) * len(self.filters)
        parms: list[dict | None] = [None] * len(self.filters)
        # Readers decode left to right, so we encode right to left.
        for index in reversed(range(len(self.filters))):
            name, predictor = self.filters[index], predictors[index]
            if predictor is not None and name in _PREDICTABLE:
                data, parms[index] = predictor.encode(data)
            data = _ENCODERS[name](data)
        return data, self.entries(parms)

    def entries(self, parms: list[dict | None]) -> dict:
        if not self.filters:
            return {}
        if len(self.filters) == 1:
            entries: dict = {"Filter": Name(self.filters[0])}
            return {**entries, "DecodeParms": parms[0]} if parms[0] else entries
        entries = {"Filter": [Name(f) for f in self.filters]}
        return {**entries, "DecodeParms": parms} if any(parms) else entries
