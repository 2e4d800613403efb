"""The output length table, which travels in the output memfd after the outputs.

Written by the child (encode), read once by the server (read_spans, sandbox.workers)
from a memfd whose size the spawner fixed and sealed (memfd_size). Layout of the `used`
bytes:

    output 0 | output 1 | ... | length 0 .. length n-1 (u64 LE each) | n (u64 LE) | MAGIC

read_spans trusts nothing in it: the count is bounded before anything is read for it,
the lengths must sum exactly to where the table starts, everything lies within `used`
and `used` within the memfd. Any failure is a TrailerError (the job "crashed").
"""
from __future__ import annotations

import struct

from sandbox.memfd import MemFile

MAGIC = b"SBXOUTS1"
#: Most outputs one job may return (its table is then 800 KB).
MAX_OUTPUTS = 100_000
_COUNT = struct.Struct("<Q")
_FOOTER = _COUNT.size + len(MAGIC)


class TrailerError(Exception):
    """The output table is not valid: the child wrote something else."""


def memfd_size(output_mb: int) -> int:
    """The size of a child's output memfd: the output cap plus room for the largest
    length table."""
    return (output_mb << 20) + size(MAX_OUTPUTS)


def size(count: int) -> int:
    """Bytes the trailer of `count` outputs takes."""
    return count * _COUNT.size + _FOOTER


def encode(lengths: list[int]) -> bytes:
    if len(lengths) > MAX_OUTPUTS:
        raise ValueError(f"at most {MAX_OUTPUTS} outputs, got {len(lengths)}")
    return struct.pack(f"<{len(lengths)}Q", *lengths) + _COUNT.pack(len(lengths)) + MAGIC


def read_spans(mem: MemFile, used: int) -> list[tuple[int, int]]:
    """The (offset, length) of each output in `mem`, from the trailer ending at `used`."""
    if type(used) is not int or not _FOOTER <= used <= mem.size:
        raise TrailerError("bytes used out of range")
    footer = mem.read(used - _FOOTER, _FOOTER)
    if footer[_COUNT.size:] != MAGIC:
        raise TrailerError("no output table")
    (count,) = _COUNT.unpack(footer[:_COUNT.size])
    if count > MAX_OUTPUTS or size(count) > used:
        raise TrailerError("output count out of range")
    table_start = used - size(count)
    lengths = struct.unpack(f"<{count}Q", mem.read(table_start, count * _COUNT.size))
    if sum(lengths) != table_start:
        raise TrailerError("output lengths do not add up to the table's offset")
    spans, offset = [], 0
    for length in lengths:
        spans.append((offset, length))
        offset += length
    return spans
