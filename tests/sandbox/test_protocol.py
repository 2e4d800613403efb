"""The protocol as a trust boundary: whatever a child sends on its job line ends its own
job (crashed) and nothing else; the caller, the fork server and the job beside it never
notice."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import STATUSES, protocol
from sandbox.outbox import Outbox
from tests.sandbox.conftest import TEST_LIMITS, on_own_loop

pytestmark = pytest.mark.timeout(60)

INNOCENT = {"do": "concat", "suffix": "!"}


@pytest.fixture(scope="module")
def pair():
    yield from on_own_loop()


def hostile_beside_innocent(pair, messages, then="return"):
    """Run a hostile job and an innocent one at once; return the hostile Result after
    checking the innocent one is ok and the fork server is the same process."""
    loop, sb = pair
    pid = sb.fork_server_pid

    async def both():
        return await asyncio.gather(
            sb.run([], {"do": "speak", "messages": messages, "then": then}),
            sb.run([b"innocent"], INNOCENT))

    hostile, innocent = loop.run_until_complete(both())
    assert innocent.status == "ok" and innocent.outputs == [b"innocent!"], innocent
    assert sb.fork_server_pid == pid and sb.ready
    assert hostile.status in STATUSES
    assert not sb._jobs
    return hostile


def raw(data: bytes, **extra) -> dict:
    return {"pieces": [data.hex()], **extra}


def repeated(data: bytes, times: int) -> list:
    return [data.hex(), times]


def test_deep_nesting_ends_only_its_job(pair):
    # json.loads raised RecursionError, which escaped the fork server's loop and killed it.
    message = {"pieces": [repeated(b"[", 2000), repeated(b"]", 2000)]}
    hostile = hostile_beside_innocent(pair, [message])
    assert hostile.status == "crashed" and hostile.reason == "sent an invalid report", hostile


def test_deep_nesting_inside_a_valid_looking_report(pair):
    message = {"pieces": [b'{"status":"error","error":'.hex(), repeated(b"{\"a\":", 1500),
                          b"1".hex(), repeated(b"}", 1500), b"}".hex()]}
    hostile = hostile_beside_innocent(pair, [message])
    assert hostile.status == "crashed" and hostile.reason == "sent an invalid report"


def test_a_report_near_the_socket_buffer_ends_only_its_job(pair):
    # Re-encoded with the fork server's fields it exceeded the SEQPACKET buffer: EMSGSIZE
    # was read as "the server is gone" and the fork server shut down.
    count = (200 * 1024) // 2
    message = {"pieces": [b'{"status":"ok","lengths":['.hex(), repeated(b"0,", count - 1),
                          b'0]}'.hex()]}
    hostile = hostile_beside_innocent(pair, [message])
    assert hostile.status == "crashed" and hostile.reason == "sent an invalid report"


R = b'{"type":"report",'


@pytest.mark.parametrize("report", ids=lambda report: report[:40].decode("latin-1"), argvalues=[
    b"", b"\xff\xfe garbage", b"[]", b"null", b'"ok"', b"{}", b"NaN",
    b'{"status":"ok","used":0}',                              # no type
    R + b'"status":"ok"}', R + b'"status":"ok","used":-1}', R + b'"status":"ok","used":1.5}',
    R + b'"status":"ok","used":true}', R + b'"status":"ok","used":"12"}',
    R + b'"status":"ok","used":1e400}', R + b'"status":"ok","used":' + b"9" * 5000 + b"}",
    R + b'"status":"ok","used":99999999999999}', R + b'"status":"error","error":42}',
    R + b'"status":"error","error":"' + b"x" * 301 + b'"}',
    R + b'"status":"error","error":"x","usage":[]}',
    R + b'"status":"memory","usage":{"cpu_s":"fast"}}',
    R + b'"status":"memory","usage":{"cpu_s":-1}}', R + b'"status":"memory","usage":{"x":1}}',
    R + b'"status":"victory"}', R + b'"status":"ok","used":0,"extra":1}',
    R + b'"status":["ok"]}', R + b'"status":NaN}', R + b'"status":"ok","used":0,"used":-5}',
])
def test_malformed_reports_end_only_their_job(pair, report):
    # R + ...: a report in every other respect, so each field's own check is what refuses it.
    hostile = hostile_beside_innocent(pair, [raw(report)], then="exit")
    assert hostile.status == "crashed", hostile


def test_a_valid_report_sent_by_hand_is_taken(pair):
    # The control for the cases above: the channel is reached and a well-formed report counts.
    hostile = hostile_beside_innocent(pair, [raw(R + b'"status":"error","error":"hand"}')],
                                      then="exit")
    assert hostile.status == "error" and hostile.error == "hand", hostile


def test_a_report_with_descriptors_ends_only_its_job(pair):
    hostile = hostile_beside_innocent(pair, [raw(b'{"status":"error","error":"x"}', fds=3)])
    assert hostile.status == "crashed" and hostile.reason == "sent an invalid report"


def test_many_messages_end_only_their_job(pair):
    hostile = hostile_beside_innocent(pair, [raw(b'{"status":"error","error":"x"}',
                                                 times=5000)])
    assert hostile.status in ("error", "crashed")


def test_an_oversize_message_ends_only_its_job(pair):
    # 200 KB: under the socket buffer, so it arrives (and is refused unread).
    hostile = hostile_beside_innocent(pair, [{"pieces": [repeated(b" ", 200 * 1024)]}])
    assert hostile.status == "crashed" and hostile.reason == "sent an invalid report"


# --- the property -------------------------------------------------------------------
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
_field_values = (_json_values | st.sampled_from(["ok", "error", "memory", "output_too_large",
                                                 "ready", "result", "job"])
                 | st.integers(min_value=-2**70, max_value=2**70)
                 | st.floats(min_value=0, max_value=1e6))
_reports = st.dictionaries(
    st.sampled_from(["type", "status", "used", "error", "usage", "lengths", "id", "layers"])
    | st.text(max_size=6), _field_values, max_size=6).map(
        lambda d: json.dumps(d).encode())


@st.composite
def _messages(draw):
    kind = draw(st.sampled_from(["report", "bytes", "nest", "oversize", "number"]))
    if kind == "report":
        message = raw(draw(_reports))
    elif kind == "bytes":
        message = raw(draw(st.binary(max_size=300)))
    elif kind == "nest":
        depth = draw(st.integers(1, 4000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        message = {"pieces": [b'{"status":"error","error":'.hex(), repeated(opener, depth),
                              b"0".hex(), repeated(closer, depth), b"}".hex()]}
    elif kind == "oversize":
        message = {"pieces": [repeated(b"7", draw(st.integers(4000, 400_000)))]}
    else:
        digits = draw(st.integers(1, 6000))
        message = {"pieces": [b'{"status":"ok","used":'.hex(), repeated(b"9", digits),
                              draw(st.sampled_from([b"", b".5", b"e999", b"e-999"])).hex(),
                              b"}".hex()]}
    message["fds"] = draw(st.sampled_from([0, 0, 0, 1, 4]))
    message["times"] = draw(st.sampled_from([1, 1, 2, 50]))
    return message


@pytest.mark.slow
@pytest.mark.timeout(400)
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages=st.lists(_messages(), min_size=1, max_size=4),
       then=st.sampled_from(["return", "exit", "hang"]))
def test_whatever_a_child_sends_the_fork_server_survives(pair, messages, then):
    hostile_beside_innocent(pair, messages, then)


# --- the pieces, on real sockets -------------------------------------------------------
def test_recv_turns_every_decoding_failure_into_a_protocol_error():
    ours, theirs = protocol.socketpair()
    with ours, theirs:
        for data in (b"[" * 5000 + b"]" * 5000, b"\xff", b"[1]", b"1" * 5000, b"{" * 10):
            theirs.send(data)
            with pytest.raises(protocol.ProtocolError):
                protocol.recv(ours)
        theirs.send(b"x" * 5000)
        with pytest.raises(protocol.ProtocolError, match="truncated"):
            protocol.recv(ours, max_bytes=4096)


def test_an_unsendable_end_is_replaced_by_a_crashed_one():
    # EMSGSIZE on one child's end says that child crashed; only EPIPE/ECONNRESET/EOF means
    # the server is gone.
    ours, theirs = protocol.socketpair()
    with ours, theirs:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ours.setblocking(False)
        outbox = Outbox(ours)
        outbox.append({"type": "ended", "id": 7, "status": "ok", "reason": "x" * 100_000})
        outbox.append({"type": "ended", "id": 8, "status": "ok", "reason": ""})
        assert outbox.flush() is True
        first, _ = protocol.recv(theirs)
        second, _ = protocol.recv(theirs)
        assert first["id"] == 7 and first["status"] == "crashed", first
        assert second == {"type": "ended", "id": 8, "status": "ok", "reason": ""}
        theirs.close()
        outbox.append({"type": "ended", "id": 9, "status": "ok", "reason": ""})
        assert outbox.flush() is False                  # now the peer is gone


def test_a_lent_child_that_cannot_be_sent_is_dropped_and_its_fds_closed():
    ours, theirs = protocol.socketpair()
    with ours, theirs:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ours.setblocking(False)
        outbox, dropped = Outbox(ours), []
        fd = os.open("/dev/null", os.O_RDONLY)
        outbox.append({"type": "worker", "id": 3, "pad": "x" * 100_000}, [fd],
                      dropped=lambda: dropped.append(3))
        assert outbox.flush() is True and dropped == [3]
        with pytest.raises(OSError):
            os.fstat(fd)                                # the outbox closed it
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(1)                              # and nothing was sent


def test_no_log_line_from_children(pair, caplog):
    with caplog.at_level(logging.WARNING, logger="sandbox"):
        hostile_beside_innocent(pair, [raw(b"garbage")])
    assert not [r for r in caplog.records if r.name == "sandbox"]


@pytest.mark.parametrize("message", [
    {"type": "started", "id": 10 ** 9, "limits": TEST_LIMITS.to_dict()},   # no such child
    {"type": "started", "id": "1", "limits": TEST_LIMITS.to_dict()},
    {"type": "started"},
    {"type": "done", "id": 10 ** 9, "kill": "everything"},
    {"type": "surprise", "id": None},
    {"type": "started", "id": "IDLE", "limits": "fast"},         # a real child, broken limits
    {"type": "started", "id": "IDLE", "limits": {**TEST_LIMITS.to_dict(), "wall_s": -1}},
    {"type": "done", "id": "IDLE", "kill": "everything"},
])
def test_a_malformed_word_from_the_caller_ends_at_most_the_child_it_names(pair, message):
    """Caller-facing code too: a message the fork server cannot take ends no more than
    the one lent child it names (never the fork server), and the next job is served."""
    loop, sb = pair
    pid = sb.fork_server_pid

    async def send():
        deadline = loop.time() + 10
        while not sb._pool.idle:
            assert loop.time() < deadline, "no child was lent"
            await asyncio.sleep(0.01)
        if message.get("id") == "IDLE":
            sb._tell(dict(message, id=sb._pool.idle[0].id))
        else:
            sb._tell(message)
        await asyncio.sleep(0.05)
        return await sb.run([b"after"], INNOCENT)

    innocent = loop.run_until_complete(send())
    assert innocent.outputs == [b"after!"] and sb.fork_server_pid == pid
    assert not sb._jobs
