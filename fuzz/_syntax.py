"""PDF object model and serialisation: objects, streams, xref tables and streams, revisions.

Runs wherever the strategies run (test process or fuzz driver). Deliberately independent of
pikepdf and pypdf: a generator that used the libraries under test to write its inputs would
only produce what they already agree on.

Python values map to PDF objects: None -> null, bool, int, float, bytes -> literal string,
list -> array, dict (str keys) -> dictionary. The classes below cover the rest; `Raw` lets a
strategy emit a token verbatim (odd number forms, hand-escaped strings, broken syntax).
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable

# Bytes that may appear unescaped in a name: regular characters minus '#'.
_DELIMITERS = b"()<>[]{}/%"
NAME_PLAIN = frozenset(c for c in range(0x21, 0x7F) if c not in _DELIMITERS and c != ord("#"))


class Name(str):
    """A PDF name, without its slash; serialisation adds #xx escapes where needed."""


@dataclasses.dataclass(frozen=True)
class Ref:
    num: int
    gen: int = 0


@dataclasses.dataclass(frozen=True)
class HexString:
    data: bytes


@dataclasses.dataclass(frozen=True)
class Raw:
    """A token written exactly as given (no escaping, no checks)."""

    token: bytes


@dataclasses.dataclass
class Stream:
    """A stream object. /Length is filled in from `data` unless the dictionary sets it
    (so an attack can lie about it)."""

    dictionary: dict
    data: bytes


# A string-crypt hook: (bytes) -> bytes, bound to one object number by the caller.
Crypt = Callable[[bytes], bytes]


def name_token(value: str | bytes) -> bytes:
    raw = value.encode("latin-1") if isinstance(value, str) else value
    return b"/" + b"".join(bytes([c]) if c in NAME_PLAIN else b"#%02X" % c for c in raw)


def literal_string(data: bytes) -> bytes:
    # Backslash and both parentheses are always escaped, so balance never matters here;
    # CR is escaped because a raw CR inside a string is read back as LF.
    out = data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    return b"(" + out.replace(b"\r", b"\\r") + b")"


def number_token(value: int | float) -> bytes:
    if isinstance(value, int):
        return b"%d" % value
    # PDF has no exponent form: fixed notation, trailing zeros trimmed.
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return (text if text not in ("", "-0") else "0").encode()


def serialize(obj: Any, crypt: Crypt | None = None) -> bytes:
    """One PDF object as bytes. `crypt`, when given, encrypts strings (written as hex)."""
    if obj is None:
        return b"null"
    if obj is True:
        return b"true"
    if obj is False:
        return b"false"
    if isinstance(obj, Name):
        return name_token(obj)
    if isinstance(obj, (int, float)):
        return number_token(obj)
    if isinstance(obj, bytes):
        return literal_string(obj) if crypt is None else serialize(HexString(crypt(obj)))
    if isinstance(obj, HexString):
        data = obj.data if crypt is None else crypt(obj.data)
        return b"<" + data.hex().encode() + b">"
    if isinstance(obj, Ref):
        return b"%d %d R" % (obj.num, obj.gen)
    if isinstance(obj, Raw):
        return obj.token
    if isinstance(obj, (list, tuple)):
        return b"[" + b" ".join(serialize(item, crypt) for item in obj) + b"]"
    if isinstance(obj, dict):
        body = b" ".join(name_token(key) + b" " + serialize(value, crypt) for key, value in obj.items())
        return b"<<" + body + b">>"
    if isinstance(obj, Stream):
        data = obj.data if crypt is None else crypt(obj.data)
        dictionary = {**obj.dictionary}
        dictionary.setdefault("Length", len(data))
        return serialize(dictionary, crypt) + b"\nstream\n" + data + b"\nendstream"
    raise TypeError(f"cannot serialise {obj!r} as a PDF object")


@dataclasses.dataclass
class Revision:
    """One section of a file: its objects, its trailer, and how its xref is written.

    objects: number -> object (gen from `gens`, default 0).
    xref: "table" or "stream".
    packed: numbers written inside one object stream (xref "stream" only; never streams).
    """

    objects: dict[int, Any]
    trailer: dict
    xref: str = "table"
    packed: frozenset[int] = frozenset()
    gens: dict[int, int] = dataclasses.field(default_factory=dict)
    compress_xref: bool = True


@dataclasses.dataclass
class Written:
    """A serialised file and where its xrefs landed (attacks point /Prev at them)."""

    data: bytes
    xref_offsets: list[int]  # startxref value of each revision, in order


def write_pdf(
    revisions: list[Revision],
    *,
    version: str = "1.7",
    eol: bytes = b"\n",
    crypt_for: Callable[[int, int], Crypt | None] | None = None,
) -> Written:
    """Serialise revisions into one file: the first is the original, the rest incremental
    updates, each with /Prev pointing at the previous xref and /Size covering all objects.

    crypt_for(num, gen) gives the crypt hook of one object (None: leave it in the clear).
    """
    out = bytearray(b"%PDF-" + version.encode() + eol + b"%\xe2\xe3\xcf\xd3" + eol)
    size = 1 + max((num for rev in revisions for num in rev.objects), default=0)
    size += sum(1 for rev in revisions if rev.xref == "stream") + sum(1 for rev in revisions if rev.packed)
    next_free = size - 1  # extra numbers (xref streams, object streams) are taken from the top
    xref_offsets: list[int] = []
    for rev in revisions:
        entries: dict[int, tuple[int, int, int]] = {}  # num -> (type, field2, field3)
        loose = {num: obj for num, obj in rev.objects.items() if num not in rev.packed}
        for num, obj in loose.items():
            gen = rev.gens.get(num, 0)
            crypt = crypt_for(num, gen) if crypt_for else None
            entries[num] = (1, len(out), gen)
            out += b"%d %d obj" % (num, gen) + eol + serialize(obj, crypt) + eol + b"endobj" + eol
        if rev.packed:
            if rev.xref != "stream":
                raise ValueError("object streams need an xref stream")
            stm_num, next_free = next_free, next_free - 1
            header, body = [], bytearray()
            for index, num in enumerate(sorted(rev.packed)):
                header.append(b"%d %d" % (num, len(body)))
                body += serialize(rev.objects[num]) + b"\n"
                entries[num] = (2, stm_num, index)
            head = b" ".join(header) + b"\n"
            stm = Stream({"Type": Name("ObjStm"), "N": len(header), "First": len(head),
                          "Filter": Name("FlateDecode")}, zlib.compress(head + bytes(body)))
            entries[stm_num] = (1, len(out), 0)
            out += b"%d 0 obj" % stm_num + eol + serialize(stm) + eol + b"endobj" + eol
        trailer = {**rev.trailer, "Size": size}
        if xref_offsets:
            trailer["Prev"] = xref_offsets[-1]
        if not xref_offsets:
            entries[0] = (0, 0, 65535)
        start = len(out)
        if rev.xref == "table":
            out += xref_table(entries, eol) + b"trailer" + eol + serialize(trailer) + eol
        else:
            xref_num, next_free = next_free, next_free - 1
            entries[xref_num] = (1, start, 0)
            stm = xref_stream(entries, trailer, compress=rev.compress_xref)
            out += b"%d 0 obj" % xref_num + eol + serialize(stm) + eol + b"endobj" + eol
        out += b"startxref" + eol + b"%d" % start + eol + b"%%EOF" + eol
        xref_offsets.append(start)
    return Written(bytes(out), xref_offsets)


def _subsections(nums: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for num in sorted(nums):
        if runs and runs[-1][-1] + 1 == num:
            runs[-1].append(num)
        else:
            runs.append([num])
    return runs


def xref_table(entries: dict[int, tuple[int, int, int]], eol: bytes = b"\n") -> bytes:
    # Each entry is exactly 20 bytes: the two-byte end of line is " \n" or "\r\n".
    end = b"\r\n" if eol == b"\r\n" else b" \n"
    out = bytearray(b"xref" + eol)
    for run in _subsections(list(entries)):
        out += b"%d %d" % (run[0], len(run)) + eol
        for num in run:
            kind, field2, field3 = entries[num]
            out += b"%010d %05d %s" % (field2, field3, b"n" if kind == 1 else b"f") + end
    return bytes(out)


def xref_stream(entries: dict[int, tuple[int, int, int]], trailer: dict, *, compress: bool = True) -> Stream:
    width2 = max(1, (max((e[1] for e in entries.values()), default=0).bit_length() + 7) // 8)
    width3 = max(1, (max((e[2] for e in entries.values()), default=0).bit_length() + 7) // 8)
    runs = _subsections(list(entries))
    rows = b"".join(
        bytes([entries[n][0]]) + entries[n][1].to_bytes(width2, "big") + entries[n][2].to_bytes(width3, "big")
        for run in runs for n in run
    )
    dictionary = {**trailer, "Type": Name("XRef"), "W": [1, width2, width3],
                  "Index": [x for run in runs for x in (run[0], len(run))]}
    if compress:
        # PNG "Up" rows, as real writers do: consecutive entries differ in few bytes, so
        # the differences compress far better than the entries (and readers must undo it).
        width = 1 + width2 + width3
        previous, predicted = bytes(width), bytearray()
        for i in range(0, len(rows), width):
            row = rows[i : i + width]
            predicted += b"\x02" + bytes((x - y) & 0xFF for x, y in zip(row, previous))
            previous = row
        dictionary["Filter"] = Name("FlateDecode")
        dictionary["DecodeParms"] = {"Predictor": 12, "Columns": width}
        rows = zlib.compress(bytes(predicted))
    return Stream(dictionary, rows)
