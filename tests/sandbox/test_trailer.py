"""The output table a child writes after its outputs: read once by the server, trusted
in nothing. A forged table ends its job "crashed"; the fork server never notices."""
from __future__ import annotations

import struct

import pytest

from sandbox import MemFile, trailer
from tests.sandbox.conftest import run

pytestmark = pytest.mark.timeout(60)


def forge(sb, **params):
    pid = sb.fork_server_pid
    result = run(sb, "forge_trailer", **params)
    assert sb.fork_server_pid == pid
    return result


def test_a_well_formed_forged_table_is_read(sb):
    result = forge(sb, data=b"abc".hex(), lengths=[1, 2])
    assert result.status == "ok" and result.outputs == [b"a", b"bc"], result


@pytest.mark.parametrize("params", [
    {"data": b"abc".hex(), "lengths": [1, 2], "count": 3},              # wrong count
    {"data": b"abc".hex(), "lengths": [1, 2], "count": 1},
    {"data": b"abc".hex(), "lengths": [1, 1]},                          # a gap
    {"data": b"abc".hex(), "lengths": [1, 10**9]},                      # past the end
    {"data": b"abc".hex(), "lengths": [2**64 - 1, 4]},                  # sum overflows u64
    {"data": "", "lengths": [], "count": 2**64 - 1},                    # huge count
    {"data": "", "lengths": [], "count": trailer.MAX_OUTPUTS + 1},
    {"data": b"abc".hex(), "lengths": [3], "magic": b"NOTMAGIC".hex()},
    {"data": b"abc".hex(), "lengths": [3], "used": 5},                  # used too small
    {"data": b"abc".hex(), "lengths": [3], "used": 0},
    {"data": b"abc".hex(), "lengths": [3], "used": 30},                 # used past the table
], ids=lambda p: ",".join(f"{k}={str(v)[:12]}" for k, v in p.items() if k != "data"))
def test_a_forged_table_ends_its_job_crashed(sb, params):
    result = forge(sb, **params)
    assert result.status == "crashed" and result.reason == "sent an invalid output table", \
        result


def test_bytes_used_beyond_the_memfd_is_an_invalid_report(sb):
    result = forge(sb, data="", lengths=[], used=1 << 40)
    assert result.status == "crashed" and result.reason == "sent an invalid report", result


def test_read_spans_checks_everything_on_a_real_memfd():
    def blob(body: bytes, lengths, count=None, magic=trailer.MAGIC) -> MemFile:
        count = len(lengths) if count is None else count
        return MemFile.from_bytes(body + struct.pack(f"<{len(lengths)}Q", *lengths)
                                  + struct.pack("<Q", count) + magic)

    with blob(b"hello", [2, 3]) as mem:
        assert trailer.read_spans(mem, mem.size) == [(0, 2), (2, 3)]
    with blob(b"", []) as mem:
        assert trailer.read_spans(mem, mem.size) == []
    for mem, used in [(blob(b"hello", [2, 2]), None), (blob(b"hello", [5], count=9), None),
                      (blob(b"hello", [5], magic=b"x" * 8), None), (blob(b"hello", [5]), 3),
                      (blob(b"hello", [5]), "29"), (blob(b"hello", [5]), 10**6)]:
        with mem, pytest.raises(trailer.TrailerError):
            trailer.read_spans(mem, mem.size if used is None else used)
    assert trailer.encode([1, 2]).endswith(trailer.MAGIC)
    with pytest.raises(ValueError):
        trailer.encode([0] * (trailer.MAX_OUTPUTS + 1))


def test_an_entry_returning_too_many_outputs_is_an_error(sb):
    result = run(sb, "many_outputs", n=trailer.MAX_OUTPUTS + 1)
    assert result.status == "error" and "more than" in result.error, result


def test_many_small_outputs_travel(sb):
    result = run(sb, "many_outputs", n=5000)
    assert result.status == "ok" and len(result.outputs) == 5000, result
    assert result.outputs[4999] == b"4999" and result.outputs.span(0) == (0, 1)
