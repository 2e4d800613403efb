"""One client that asks for a big answer and never reads it must not lock everyone else
out: its answer's bytes are held in the upload budget (Admission.hold_answer), so with
an exploited child any tiny upload could get an answer over NOTRACE_MAX_INFLIGHT_MB and,
unread, refuse every other upload until NOTRACE_ANSWER_STALL_S. An answer stalled for
more than STALLED_AFTER_S is dropped at once when a new upload needs its room.
(Found by the red team against the first version, which held answers until a
whole-answer deadline.)"""
from __future__ import annotations

import socket
import time

import pytest

from notrace.admission import STALLED_AFTER_S
from tests.attack.conftest import order, server_pids
from tests.held import memfds
from tests.attack.test_answers import _request_head, manifest
from tests.pdfs import make_pdf

pytestmark = pytest.mark.timeout(60)


def test_an_unread_answer_does_not_refuse_everyone_else(hostile_server):
    server_pid, _ = server_pids(hostile_server)
    request = _request_head(hostile_server, order(
        {"do": "answer", "outputs": [manifest()], "body_mb": 32}))     # over the 16 MiB budget
    with socket.create_connection(("127.0.0.1", hostile_server.port), timeout=20) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(request)
        deadline = time.monotonic() + 10
        while not memfds(server_pid):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(STALLED_AFTER_S + 0.5)                                # it is stalled now
        reply = hostile_server.post("compress", [make_pdf(2)])
        assert reply.status == 200, (reply.status, reply.body[:200])
        # The stalled answer was dropped for it: its connection ends short.
        s.settimeout(10)
        received = 0
        try:
            while chunk := s.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < 32 << 20

