"""Attacker code in a child, beside an innocent job on the same Sandbox: whatever the
child does after, around or instead of its report ends its own job and nothing else;
the fork server keeps its pid, and no descriptor, process or zombie is left behind."""
from __future__ import annotations

import os
import time

import pytest

from sandbox import STATUSES, Limits
from tests.attack.conftest import LIMITS, fd_count, zombies

pytestmark = pytest.mark.timeout(30)


def hostile_beside_innocent(box, params, *, innocents: int = 1, delay_s: float = 0.1,
                            limits=None):
    """Run the attack and `innocents` innocent jobs (one after the other, starting
    delay_s in) at once; return the attack's Result once everything is checked."""
    pid = box.sb.fork_server_pid

    async def neighbours():
        return [await box.innocent(delay_s) for _ in range(innocents)]

    hostile, statuses = box.run(box.job(params, limits=limits), neighbours())
    assert statuses == ["ok"] * innocents
    assert box.sb.fork_server_pid == pid and box.sb.restarts == 0 and box.sb.ready
    assert hostile.status in STATUSES and not box.sb._jobs
    return hostile


@pytest.fixture
def no_leaks(box):
    """The server's and fork server's descriptors before == after, and no zombie, once
    the attacker's child is gone."""
    before = box.steady_fd_counts()
    server, fork_server = os.getpid(), box.sb.fork_server_pid
    yield
    # A warm child's fds may still be in transit, and a dead child stays a zombie until
    # the spawner's next reap: wait (bounded) for both to settle.
    deadline = time.monotonic() + 5
    while True:
        box.settle()
        after = fd_count(server), fd_count(fork_server)
        left = zombies(fork_server)
        if (after == before and not left) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after == before, "descriptors leaked"
    assert not left, f"zombies left: {left}"


@pytest.mark.parametrize("then", ["hang", "scribble", "reports"])
def test_what_a_child_does_after_its_report_changes_nothing(box, no_leaks, then):
    """Report ok, then stay alive: hang, rewrite the output memfd, or report again and
    again. The first report stands (its bytes are the child's own to choose anyway); the
    child is killed EXIT_GRACE_S later, so its slot comes back."""
    started = time.monotonic()
    result = hostile_beside_innocent(box, {"do": "report_then", "then": then, "for_s": 30},
                                     innocents=3)
    assert result.status == "ok" and len(result.outputs) == 1, result
    assert result.outputs[0] in (b"first", b"XXXXX")
    result.close()
    assert time.monotonic() - started < LIMITS.wall_s + 3


def test_a_stderr_flood_delays_nobody(box, no_leaks):
    """256 MiB on stderr while three innocent jobs run: read and dropped."""
    result = hostile_beside_innocent(box, {"do": "stderr_flood", "mb": 256}, innocents=3)
    assert result.status in ("ok", "cpu", "timeout"), result
    result.close()


@pytest.mark.parametrize("before_s", [0.05, 0.005, 0.0])
def test_a_report_racing_the_deadline_is_ok_or_timeout(box, no_leaks, before_s):
    """Sleep until just before the wall-clock deadline, then report."""
    pid = box.sb.fork_server_pid
    short = Limits(wall_s=1.0)
    result, _ = box.run(box.job({"do": "sleep_then_report", "s": 1.0 - before_s},
                                limits=short), box.innocent(0.5))
    assert result.status in ("ok", "timeout"), result
    if result.ok:
        assert result.outputs == [b"late"]
    result.close()
    assert box.sb.fork_server_pid == pid


@pytest.mark.parametrize("how, then, expected", [
    ("close", "return", "crashed"),           # the report cannot be sent: no result
    ("close", "hang", "timeout"),
    ("SHUT_RDWR", "return", "violation"),     # shutdown() is not in the policy
])
def test_a_child_that_closes_its_channel_ends_its_job_only(box, no_leaks, how, then,
                                                           expected):
    params = {"do": "close_channel", "how": how, "then": then}
    result = hostile_beside_innocent(box, params, limits=Limits(wall_s=1.0))
    assert result.status == expected, result


@pytest.mark.parametrize("lengths, used_delta", [
    ([], 0),                     # no outputs, but 5 bytes before the table
    ([5], 0),                    # sum == table start exactly
    ([6], 0),                    # sum one past the table start
    ([4], 0),                    # sum one short
    ([2 ** 63, 2 ** 63 + 5], 0),  # sums to 5 modulo 2^64
    ([2 ** 64 - 1], 0),
    ([5], -1), ([5], 1),         # `used` one short of / past what was written
])
def test_a_lying_output_table_ends_its_job_only(box, no_leaks, lengths, used_delta):
    """A table whose lengths do not add up exactly (or `used` that does not point at its
    end) is "crashed"; one that does is "ok", whatever it claims."""
    data = b"hello"
    table = 8 * len(lengths) + 16
    params = {"do": "forge_trailer", "data": data.hex(), "lengths": lengths,
              "used": len(data) + table + used_delta}
    result = hostile_beside_innocent(box, params)
    if lengths == [5] and used_delta == 0:
        assert result.status == "ok" and result.outputs == [data]
    else:
        assert result.status == "crashed", result
    result.close()


def test_a_forged_count_of_two_to_the_63_is_refused(box, no_leaks):
    params = {"do": "forge_trailer", "lengths": [], "count": 2 ** 63}
    result = hostile_beside_innocent(box, params)
    assert result.status == "crashed", result


@pytest.mark.parametrize("do, expected", [
    ("fork", {"violation"}), ("kill_parent", {"violation", "error"}),
    ("execve", {"violation", "error"}), ("segfault", {"crashed"}), ("exit3", {"crashed"}),
])
def test_escape_attempts_end_their_job_only(box, no_leaks, do, expected):
    result = hostile_beside_innocent(box, {"do": do})
    assert result.status in expected, result
    result.close()


def test_a_hundred_thousand_empty_outputs_cost_the_loop_little(box, no_leaks):
    """The largest table the server accepts (MAX_OUTPUTS spans), read on the event loop."""
    from sandbox import trailer
    started = time.monotonic()
    result = hostile_beside_innocent(box, {"do": "forge_trailer",
                                           "lengths": [0] * trailer.MAX_OUTPUTS})
    assert result.status == "ok" and len(result.outputs) == trailer.MAX_OUTPUTS
    result.close()
    assert time.monotonic() - started < 2
