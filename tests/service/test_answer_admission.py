"""Answers count against the upload budget while they stream; stalled ones are dropped.

A result streams out of its memfd for as long as its client takes to read it. Without a
bound, clients that stop reading could pin workers + queue answers of
NOTRACE_CHILD_OUTPUT_MB each in the server's memory. So an answer keeps its bytes
reserved in the admission budget until it is sent (the answer itself is never refused);
NOTRACE_ANSWER_STALL_S closes the connection of a client that reads nothing for that
long, freeing its memfd, and an answer stalled past STALLED_AFTER_S is dropped at once
when a new upload needs its room.
"""
from __future__ import annotations

import socket
import time

import pytest

from notrace.admission import STALLED_AFTER_S, Admission
from notrace.problems import HttpProblem
from tests.pdfs import make_pdf
from tests.service.access import wait_until
from tests.service.test_big_results import _big_answer_pdf, _memfds, _SlowReader

ANSWER_STALL_S = 3


def test_a_held_answer_takes_the_budget_and_gives_it_back():
    admission = Admission(max_requests=4, max_bytes=100, max_files=10)
    dropped = []
    with admission.hold_answer(150, drop=lambda: dropped.append(1)) as answer:
        assert admission.bytes == 150 and admission.requests == 1   # never refused
        with pytest.raises(HttpProblem) as refused:                 # it is being read
            admission.admit(1)
        assert refused.value.status == 503 and not dropped
        answer.writing()
        answer.waiting_since -= STALLED_AFTER_S + 0.1              # its client stalled
        admission.admit(100).release()                             # dropped for room
        assert dropped == [1]
    assert (admission.bytes, admission.requests) == (0, 0)


def test_a_stalled_answer_is_dropped_for_a_request_slot_too():
    admission = Admission(max_requests=1, max_bytes=1000, max_files=10)
    dropped = []
    answer = admission.hold_answer(10, drop=lambda: dropped.append(1))
    answer.writing()
    with pytest.raises(HttpProblem):
        admission.admit(1)                                          # not stalled yet
    answer.waiting_since -= STALLED_AFTER_S + 0.1
    admission.admit(1).release()
    assert dropped == [1] and admission.requests == 0


@pytest.fixture(scope="module")
def stingy(start_server):
    return start_server(max_upload_mb=30, max_inflight_mb=40,
                        answer_stall_s=ANSWER_STALL_S)


@pytest.mark.timeout(90)
def test_a_client_that_stops_reading_holds_its_answer_only_until_its_stall_limit(stingy):
    document = _big_answer_pdf(parts=4, image_mb=12)     # answers a ~48 MB zip
    small = make_pdf(1)
    memfds_before = _memfds(stingy.process.pid)
    client = _SlowReader(stingy, "split", [document], {"every": "1"})
    try:
        client.read_head()
        assert client.status == 200
        assert int(client.headers["content-length"]) > 40 << 20
        # The client reads nothing more: its answer holds more than the whole budget
        # (and has not been stalled for STALLED_AFTER_S yet).
        refused = stingy.post("info", [small])
        assert refused.status == 503 and refused.problem_type == "/problems/busy"
        assert "retry-after" in refused.headers
        # After ANSWER_STALL_S of no reading the server drops the connection and memfd.
        deadline = time.monotonic() + ANSWER_STALL_S + 20
        while time.monotonic() < deadline and _memfds(stingy.process.pid) > memfds_before:
            time.sleep(0.2)
        assert _memfds(stingy.process.pid) <= memfds_before
        assert stingy.post("info", [small]).status == 200
        client.sock.settimeout(10)
        received = 0
        try:
            while chunk := client.sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received + len(client.rest) < int(client.headers["content-length"])
    finally:
        client.close()
    # The access line follows the memfd's close, and reaches server.lines through the
    # thread that drains the server's stderr: wait for it (bounded).
    gone = wait_until(lambda: [r for r in stingy.log_records()
                               if r.get("operation") == "split" and "status" in r],
                      timeout=10, what="the split's access line")
    assert gone[-1].get("client_gone") is True, gone[-1]
