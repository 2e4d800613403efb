"""Mutations of seed files: byte-level damage and structure-aware edits found by regex.

Runs in the test process or a fuzz driver. Works on any PDF bytes (corpus or generated), so
the edits search for syntax (`N G obj`, `N G R`, `/Length`, xref entries, `startxref`)
instead of relying on a parse. An edit whose target is missing leaves the file unchanged.
"""
from __future__ import annotations

import re
from typing import Callable

from hypothesis import strategies as st

_OBJ = re.compile(rb"(\d+)\s+(\d+)\s+obj\b")
_REF = re.compile(rb"\b(\d+)\s+(\d+)\s+R\b")
_LENGTH = re.compile(rb"/Length\s+(\d+(?:\s+\d+\s+R)?)")
_XREF_ENTRY = re.compile(rb"\b(\d{10}) (\d{5}) [nf]")
_STARTXREF = re.compile(rb"startxref\s+(\d+)")
_PAIR = re.compile(rb"/[A-Za-z0-9]+\s*(?:\d+\s+\d+\s+R|/[A-Za-z0-9]+|-?\d+(?:\.\d+)?|true|false|null)")
_KIDS = re.compile(rb"/Kids\s*\[")
_OUTLINE_ITEM = re.compile(rb"/(?:Title|First|Next)\b")
_TRAILER_DICT = re.compile(rb"trailer\s*<<|/Type\s*/XRef")
_DICT_OPEN = re.compile(rb"<<|\[")

Mutation = Callable[..., bytes]


def _pick(draw, pattern: re.Pattern, data: bytes) -> re.Match | None:
    matches = list(pattern.finditer(data))
    return draw(st.sampled_from(matches)) if matches else None


def _enclosing_object(data: bytes, position: int) -> int | None:
    """Number of the object whose `N G obj` header comes last before position."""
    headers = [m for m in _OBJ.finditer(data, 0, position)]
    return int(headers[-1].group(1)) if headers else None


def flip_bytes(draw, data: bytes, seeds) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
    return bytes(out)


def truncate(draw, data: bytes, seeds) -> bytes:
    return data[: draw(st.integers(0, max(0, len(data) - 1)))]


def delete_range(draw, data: bytes, seeds) -> bytes:
    start = draw(st.integers(0, len(data)))
    return data[:start] + data[start + draw(st.integers(1, 512)) :]


def splice(draw, data: bytes, seeds) -> bytes:
    other = draw(seeds)
    return data[: draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))) :]


def wrong_offset(draw, data: bytes, seeds) -> bytes:
    pattern = draw(st.sampled_from([_XREF_ENTRY, _STARTXREF]))
    match = _pick(draw, pattern, data)
    if match is None:
        return data
    old = int(match.group(1))
    new = draw(st.sampled_from([0, old + 1, max(0, old - 1), len(data), len(data) + 1000, 9_999_999_999 if pattern is _XREF_ENTRY else 2**63]))
    # Xref entries keep their fixed 10-digit width: the damage is in the value, not the layout.
    token = (b"%010d" % new)[-10:] if pattern is _XREF_ENTRY else b"%d" % new
    return data[: match.start(1)] + token + data[match.end(1) :]


def lying_length(draw, data: bytes, seeds) -> bytes:
    match = _pick(draw, _LENGTH, data)
    if match is None:
        return data
    own = _enclosing_object(data, match.start())
    choices = [b"0", b"-1", b"2147483647", b"%d" % draw(st.integers(0, 100_000)), b"1 0 R"]
    if own is not None:
        choices.append(b"%d 0 R" % own)  # a stream whose length is itself
    return data[: match.start(1)] + draw(st.sampled_from(choices)) + data[match.end(1) :]


def delete_key(draw, data: bytes, seeds) -> bytes:
    match = _pick(draw, _PAIR, data)
    if match is None:
        return data
    # Either the whole pair, or only its key (leaving the dictionary with an odd count).
    end = match.end() if draw(st.booleans()) else re.compile(rb"/[A-Za-z0-9]+").match(data, match.start()).end()
    return data[: match.start()] + data[end:]


def duplicate_key(draw, data: bytes, seeds) -> bytes:
    match = _pick(draw, _PAIR, data)
    if match is None:
        return data
    key = re.match(rb"/[A-Za-z0-9]+", match.group()).group()
    value = draw(st.sampled_from([b"null", b"0", b"/Bogus", b"1 0 R", b"<<>>", b"[]"]))
    return data[: match.end()] + b" " + key + b" " + value + data[match.end() :]


def redirect_reference(draw, data: bytes, seeds) -> bytes:
    match = _pick(draw, _REF, data)
    if match is None:
        return data
    numbers = sorted({int(m.group(1)) for m in _OBJ.finditer(data)}) or [1]
    own = _enclosing_object(data, match.start())
    target = draw(st.sampled_from([0, 2**31 - 1, draw(st.sampled_from(numbers))] + ([own] if own else [])))
    return data[: match.start()] + b"%d %d R" % (target, draw(st.sampled_from([0, 0, 1, 65535]))) + data[match.end() :]


def inject_nesting(draw, data: bytes, seeds) -> bytes:
    match = _pick(draw, _DICT_OPEN, data)
    position = match.end() if match else len(data) // 2
    depth = draw(st.integers(1, 2000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b"<</A ", b">>")]))
    closing = closer * depth if draw(st.booleans()) else b""  # balanced or not
    return data[:position] + b" /Nest " + opener * depth + closing + b" " + data[position:]


def page_tree_cycle(draw, data: bytes, seeds) -> bytes:
    match = _pick(draw, _KIDS, data)
    if match is None:
        return data
    own = _enclosing_object(data, match.start())
    parents = [m for m in _KIDS.finditer(data)]
    target = own if own is not None and draw(st.booleans()) else _enclosing_object(data, draw(st.sampled_from(parents)).start())
    if target is None:
        return data
    return data[: match.end()] + b"%d 0 R " % target + data[match.end() :]


def outline_cycle(draw, data: bytes, seeds) -> bytes:
    match = _pick(draw, _OUTLINE_ITEM, data)
    if match is None:
        return data
    own = _enclosing_object(data, match.start())
    if own is None:
        return data
    key = draw(st.sampled_from([b"/Next", b"/First", b"/Parent", b"/Prev"]))
    return data[: match.start()] + key + b" %d 0 R " % own + data[match.start() :]


def prev_loop(draw, data: bytes, seeds) -> bytes:
    offsets = [int(m.group(1)) for m in _STARTXREF.finditer(data)]
    match = _pick(draw, _TRAILER_DICT, data)
    if not offsets or match is None:
        return data
    target = draw(st.sampled_from(offsets))
    existing = re.compile(rb"/Prev\s+\d+").search(data, match.end())
    if existing and existing.start() - match.end() < 4096:
        return data[: existing.start()] + b"/Prev %d" % target + data[existing.end() :]
    return data[: match.end()] + b" /Prev %d " % target + data[match.end() :]


MUTATIONS: tuple[Mutation, ...] = (
    flip_bytes, truncate, delete_range, splice, wrong_offset, lying_length, delete_key, duplicate_key,
    redirect_reference, inject_nesting, page_tree_cycle, outline_cycle, prev_loop,
)


@st.composite
def mutants(draw, seeds: st.SearchStrategy[bytes], *, max_mutations: int, max_size: int) -> bytes:
    """A seed with 1..max_mutations mutations applied, cut to max_size bytes."""
    data = draw(seeds)
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=max_mutations)):
        data = mutation(draw, data, seeds)[:max_size]
    return data
