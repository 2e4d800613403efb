"""Outputs: a job's outputs as spans of one memfd, read on demand, owned by the Result."""
from __future__ import annotations

import os

import pytest

from sandbox import Outputs, Result
from tests.sandbox.conftest import memfds_held, run

pytestmark = pytest.mark.timeout(60)


def test_outputs_read_compare_and_stream(sb):
    result = run(sb, "echo", inputs=[b"first", b"", b"third!"])
    assert result.status == "ok", result
    outputs = result.outputs
    assert isinstance(outputs, Outputs)
    assert len(outputs) == 3 and outputs == [b"first", b"", b"third!"]
    assert outputs[0] == b"first" and outputs[-1] == b"third!" and outputs[1:] == [b"", b"third!"]
    assert list(outputs) == [b"first", b"", b"third!"]
    offset, length = outputs.span(2)
    assert length == 6 and os.pread(outputs.fileno(), length, offset) == b"third!"
    result.close()
    result.close()                                   # idempotent
    assert outputs.closed
    with pytest.raises(ValueError):
        outputs.fileno()


def test_results_without_outputs_have_an_empty_outputs(sb):
    result = run(sb, "raises")
    assert result.status == "error" and result.outputs == [] and len(result.outputs) == 0
    with pytest.raises(ValueError, match="no memfd"):
        result.outputs.fileno()
    result.close()


def test_a_list_given_to_result_becomes_outputs():
    with Result("ok", outputs=[b"a", b"bc"]) as result:
        assert isinstance(result.outputs, Outputs) and result.outputs == [b"a", b"bc"]
        assert result.outputs.span(1) == (1, 2)
    assert result.outputs.closed


def test_spans_outside_the_memfd_are_refused():
    holder = Outputs.from_bytes([b"abc"])
    with pytest.raises(ValueError, match="outside"):
        Outputs(holder._mem, [(2, 5)])
    with pytest.raises(ValueError, match="need their memfd"):
        Outputs(None, [(0, 1)])
    holder.close()


def test_the_memfd_is_released_when_the_result_is_dropped(sb):
    before = memfds_held()
    for _ in range(20):
        assert run(sb, "echo", inputs=[b"x" * 1000]).outputs == [b"x" * 1000]
    assert memfds_held() <= before
