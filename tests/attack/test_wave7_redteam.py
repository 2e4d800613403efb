"""Red team, wave 7: the caller holds each lent child's output memfd from the start, and a
child never sends a descriptor (a report carrying one is refused: max_fds=0).

Every attack runs in a real, confined child (tests.attack.wave7_entries) of a real fork
server. The trusted side must end that one job and nothing else: innocent jobs beside it
answer their own outputs, the fork server is not restarted, and nothing leaks (caller
descriptors, memfds holding data, children).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import time
from pathlib import Path

import psutil
import pytest

from sandbox import Limits
from tests.attack.test_wave6_redteam import LIMITS, Box, _alive, box_fixtures
from tests.attack.wave7_entries import SECRET, SIGNALLING_FCNTLS
from tests.held import memfd_paths, memfds
from tests.sandbox.test_descriptors import no_descriptors_left, wait_sent
from tests.sandbox.test_unprivileged import pytest_as_nobody

pytestmark = pytest.mark.timeout(90)

ENTRY = "tests.attack.wave7_entries:dispatch"

INNOCENT = {"do": "concat", "suffix": "!"}
REPO = Path(__file__).resolve().parents[2]


class Box7(Box):
    """tests.attack.test_wave6_redteam's Box, on this wave's entries."""

    entry = ENTRY

    def tree(self) -> list[psutil.Process]:
        """The fork server, its spawner and every live child."""
        server = psutil.Process(self.sb.fork_server_pid)
        spawners = server.children()
        return [server, *spawners, *self.children()]


box, fresh = box_fixtures(Box7)


def _holding(pid: int | str, needle: bytes, span: int = 2 << 20) -> list[str]:
    """The memfds of `pid` whose first `span` bytes contain `needle` (opened anew by
    their /proc path: what anyone able to reach that process's descriptors could read)."""
    found = []
    for path in memfd_paths(pid):
        try:
            with open(path, "rb") as f:
                if needle in f.read(span):
                    found.append(path)
        except OSError:
            continue
    return found


def _visible(pid: int) -> bool:
    try:
        os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    return True


def _innocent_ok(result) -> None:
    assert result.status == "ok" and result.outputs == [b"innocent!"], result
    result.close()


# -- 1. the output memfd after an error report ------------------------------------------------

def test_bytes_written_after_an_error_report_are_readable_by_no_one_else(box):
    before = box.fds()
    held_before = len(memfds())
    result = box.job("error_then_write", s=1.5)
    assert result.status == "error" and result.error.startswith("W7: hostile"), result
    hostile = int(result.error.rsplit(" ", 1)[1])
    # The child writes on (it is DONE, killed at EXIT_GRACE_S): no one else holds a view.
    time.sleep(0.2)
    others = [p for p in box.tree() if p.pid != hostile]
    assert _holding("self", SECRET) == []
    for process in others:
        assert _holding(process.pid, SECRET) == [], process
    if _visible(hostile):                         # (as nobody, a confined child's fds are not)
        assert _holding(hostile, SECRET), "the attack wrote nothing: the test proves nothing"
    assert len(memfds()) <= held_before
    box.only_warm_children_within(6, "a child that reported an error lived on")
    for process in box.tree():
        assert _holding(process.pid, SECRET) == [], process
    box.back_to(before)
    box.innocent()


# -- 2. the output memfd after an ok report, while the caller reads it ------------------------

def test_holes_and_rewrites_after_an_ok_report_never_break_the_caller_nor_a_neighbour(box):
    before = box.fds()

    async def beside():
        hostile = asyncio.ensure_future(box.sb.run([], {"do": "ok_then_scribble", "s": 1.0}))
        innocents = [asyncio.ensure_future(box.sb.run([b"innocent"], INNOCENT))
                     for _ in range(4)]
        result = await hostile
        reads = 0
        if result.status == "ok":
            assert len(result.outputs) == 2
            end = time.monotonic() + 0.8                 # the child scribbles meanwhile
            while time.monotonic() < end:
                first, second = result.outputs[0], result.outputs[1]
                assert (len(first), len(second)) == (5000, 3000)
                assert set(first) <= {0x41, 0x00, 0xff} and set(second) <= {0x42, 0x00, 0xff}
                reads += 1
                await asyncio.sleep(0)
        else:
            assert result.status == "crashed", result     # a table caught mid-rewrite
        result.close()
        for innocent in await asyncio.gather(*innocents):
            _innocent_ok(innocent)
        return reads
    for _ in range(3):
        box.run(beside())
    box.back_to(before)


def test_memfd_oddities_in_the_child_change_nothing_the_caller_reads(box):
    before = box.fds()
    result = box.job("memfd_oddities")
    assert result.status == "ok" and len(result.outputs) == 2, result
    done = json.loads(result.outputs[0])
    assert result.outputs[1] == b"payload" * 1000
    # Its seals are sealed (F_SEAL_SEAL): no new one; ftruncate/fallocate are SIGSYS.
    for name in ("seal_write", "seal_grow", "seal_future_write"):
        assert done[name] == "EPERM", (name, done)
    assert done["size"] == done["was"] == os.fstat(result.outputs.fileno()).st_size, done
    # The caller reads by offset (pread), whatever flags or offset the shared open file
    # was left with.
    for _ in range(3):
        assert result.outputs[1] == b"payload" * 1000
    result.close()
    box.back_to(before)
    box.innocent()


@pytest.mark.parametrize("how", ["ftruncate", "fallocate"])
def test_resizing_the_output_memfd_is_a_violation_of_that_job_only(box, how):
    before = box.fds()
    result = box.job("resize_output", how=how)
    assert result.status == "violation", result
    box.innocent()
    box.back_to(before)


@pytest.mark.parametrize("job_mb, extra", [(None, 500_000), (1, 700_000)])
def test_outputs_beyond_the_output_cap_are_output_too_large(box, job_mb, extra):
    """The output memfd is the cap plus room for the largest length table
    (trailer.memfd_size): a child that fills that room with output bytes instead of a
    table must still exceed its cap, as an honest child's outputs over output_mb do."""
    cap_mb = job_mb or LIMITS.output_mb
    limits = Limits(output_mb=job_mb) if job_mb else None
    result = box.job("overfill", n=(cap_mb << 20) + extra, limits=limits)
    try:
        total = sum(len(item) for item in result.outputs)
        assert result.status == "output_too_large", (
            f"{total} bytes of outputs answered ok under a cap of {cap_mb} MB", result)
    finally:
        result.close()
    box.innocent()


# -- 3. descriptors in flight, several hostile children at once -------------------------------

@contextlib.contextmanager
def _nofile(soft: int | None):
    """The caller's soft RLIMIT_NOFILE lowered to `soft` (None: as it is), for the block:
    a fork server started inside it inherits it."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, old[1]), old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("nofile", [None, 1024, 384])
def test_fd_floods_from_several_children_cost_innocent_neighbours_nothing(fresh, nofile):
    """Every child is the same user; each flooder keeps messages of 253 descriptors in
    flight on its line (and one on its control channel too) for as long as it can. The
    caller's job sends carry descriptors (inputs, params): as an unprivileged user whose
    NOFILE is low, they face the same ETOOMANYREFS the children's reports did."""
    with _nofile(nofile):
        box = fresh(workers=7, queue=16)
        pid = box.sb.fork_server_pid
        before = box.fds()

        async def round_():
            hostile = [box.sb.run([], {"do": "flood_fds", "s": 1.0, "hang": 5})
                       for _ in range(2)]
            hostile.append(box.sb.run([], {"do": "flood_fds_on_control", "s": 1.0,
                                           "hang": 5}))
            innocents = [box.sb.run([b"innocent"], INNOCENT) for _ in range(4)]
            results = await asyncio.gather(*hostile, *innocents)
            for result in results[:3]:
                assert result.status == "crashed", result
                result.close()
            for result in results[3:]:
                _innocent_ok(result)
        for _ in range(8):
            box.run(round_())
        assert box.sb.fork_server_pid == pid and box.sb.restarts == 0
        box.back_to(before)


@pytest.mark.timeout(280)
def test_this_wave_holds_as_an_unprivileged_user():
    """This file again as nobody (the floods above all): then the caller, the fork server
    and the children are one user, none of them exempt (CAP_SYS_RESOURCE), and SIGIO
    may reach the fork server and the spawner by uid."""
    if os.geteuid() != 0:
        assert os.geteuid() != 0                  # this run is the unprivileged one
        return
    pytest_as_nobody(["tests/attack/test_wave7_redteam.py", "-k", "not unprivileged"],
                     timeout_s=260)


# -- 3b. signals by F_SETOWN/F_SETSIG (no kill() needed) --------------------------------------

def _sigio(box: Box7, pids: list[int]) -> tuple[object, list[psutil.Process]]:
    victims = [psutil.Process(p) for p in pids]
    result = box.job("sigio_at", pids=pids, s=1.0)
    assert result.status == "violation", result        # F_SETOWN: SIGSYS
    return result, victims


@pytest.mark.parametrize("target", ["sibling", "fork_server", "spawner"])
def test_a_child_cannot_signal_a_neighbour_through_sigio(fresh, target):
    """seccomp lets kill() reach only the child itself; F_SETOWN + F_SETSIG(SIGKILL) +
    O_ASYNC on its stderr pipe and job line would have the kernel send the signal for
    it, to any process of its own uid (a sibling child; as nobody, everything). Landlock's
    signal scope (ABI 6) refuses that on this kernel; the policy refuses the fcntl."""
    box = fresh(workers=2)
    pid = box.sb.fork_server_pid
    server = psutil.Process(pid)
    [spawner] = server.children()
    if target == "sibling":
        pids = [c.pid for c in box.children()]    # the idle, lent children: the child
    else:                                         # that takes the job aims at the other
        pids = [{"fork_server": server, "spawner": spawner}[target].pid]
    result, victims = _sigio(box, pids)
    time.sleep(0.5)
    # Of the idle children it aimed at, only the one that took the job is gone (killed
    # for the call); a fork server or spawner aimed at lives.
    survivors = [victim for victim in victims if _alive(victim)]
    assert len(survivors) == len(victims) - (target == "sibling"), (target, victims)
    box.settle()
    assert box.sb.fork_server_pid == pid and box.sb.restarts == 0
    box.innocent()


ABI_5 = "tests.attack.wave7_entries:landlock_abi_5"


@pytest.mark.parametrize("warmup", [None, ABI_5], ids=["landlock_abi_6", "landlock_abi_5"])
def test_a_child_cannot_kill_a_busy_neighbour_through_sigio(fresh, warmup):
    """The same attack aimed at a sibling child running an innocent job, on this kernel
    and as on one whose Landlock has no signal scope (ABI < 6: Linux before 6.12; the
    fork server's warm-up pins the ABI the children see to 5): the policy refuses it
    either way, or that innocent job is killed (it was, before fcntl was filtered)."""
    box = fresh(workers=3, warmup=warmup)
    layers = {layer.name: layer for layer in box.sb.layers()}
    assert layers["landlock"].available
    if warmup:
        assert "ABI 5" in layers["landlock"].detail, layers["landlock"]

    async def beside():
        innocent = asyncio.ensure_future(box.sb.run([], {"do": "sleep", "s": 1.5}))
        await wait_sent(box.sb)
        await asyncio.sleep(0.2)                  # its child is asleep in the entry
        pids = [c.pid for c in box.children()]
        hostile = await box.sb.run([], {"do": "sigio_at", "pids": pids, "s": 1.0})
        return await innocent, hostile
    innocent, hostile = box.run(beside())
    assert hostile.status == "violation", hostile
    assert innocent.status == "ok" and innocent.outputs == [b"slept"], (
        "an innocent job killed by its neighbour's SIGIO", innocent)
    innocent.close()
    box.settle()


@pytest.mark.parametrize("target", ["fork_server", "spawner"])
def test_without_landlock_scopes_a_child_cannot_kill_the_fork_server_through_sigio(
        fresh, target):
    """As on a kernel before 6.12 (Landlock ABI 5). As root the uid check refuses it
    (the fork server is root, the children nobody); as nobody only the policy does."""
    box = fresh(workers=2, warmup=ABI_5)
    pid = box.sb.fork_server_pid
    server = psutil.Process(pid)
    [spawner] = server.children()
    victim = {"fork_server": server, "spawner": spawner}[target]
    _sigio(box, [victim.pid])
    time.sleep(0.5)
    assert _alive(victim), f"the {target} was killed by a child's SIGIO"
    box.settle()
    assert box.sb.fork_server_pid == pid and box.sb.restarts == 0
    box.innocent()


@pytest.mark.parametrize("name", [*SIGNALLING_FCNTLS, "F_SETFL_O_NONBLOCK"])
def test_only_the_fcntls_that_signal_another_process_are_refused(box, name):
    result = box.job("fcntl_call", name=name)
    if name == "F_SETFL_O_NONBLOCK":                   # the control: allowed
        assert result.status == "ok" and result.outputs == [b"done"], result
        result.close()
    else:
        assert result.status == "violation", result
    box.innocent()


# -- 4. the canary's pages -----------------------------------------------------------------

def test_idle_childrens_memfds_hold_no_page_and_no_byte_after_the_canary(fresh):
    box = fresh(workers=3, canary="tests.attack.wave7_entries:big_canary")
    box.settle()
    idle = list(box.sb._pool.idle)
    assert len(idle) == 3
    deadline = time.monotonic() + 5               # each idle child runs its 3 MB canary
    while any(os.fstat(w.output.fileno()).st_blocks for w in idle):
        assert time.monotonic() < deadline, [os.fstat(w.output.fileno()).st_blocks
                                             for w in idle]
        box.sleep(0.05)
    for worker in idle:
        info = os.fstat(worker.output.fileno())
        assert info.st_blocks == 0, (worker.id, info.st_blocks)
        head = worker.output.read(0, 4 << 20)
        assert head.count(0) == len(head), "the canary's bytes are readable by the caller"
    assert memfds() == [], memfds()
    # ...and the canary did run in each of those very children.
    async def reports():
        return await asyncio.gather(*[box.sb.run([], {"do": "canary_report"})
                                      for _ in range(3)])
    results = box.run(reports())
    for result in results:
        assert result.status == "ok", result
        seen = json.loads(result.outputs[0])
        assert seen.get("same_process") is True and seen.get("confined") == "big", seen
        result.close()


# -- 5. the caller short of descriptors when a worker (two fds) arrives ------------------------

def test_a_worker_arriving_with_one_free_descriptor_leaks_nothing(fresh):
    """The next worker brings two descriptors while the caller has one free: the kernel
    installs the first and drops the second (MSG_CTRUNC). The one installed must not be
    kept, the job's answer must stand, and the fork server must go on."""
    box = fresh(workers=1, queue=2)
    sb = box.sb
    pid = sb.fork_server_pid
    before = box.fds()
    first_serial = max(w.id for w in sb._pool.idle)

    async def scenario():
        job = asyncio.ensure_future(sb.run([], {"do": "sleep", "s": 1.0}))
        await wait_sent(sb)
        os.kill(pid, signal.SIGSTOP)              # no new worker until one fd is free
        plug = None
        try:
            with no_descriptors_left():
                result = await job                # its line and params closed: two free
                plug = os.open("/dev/null", os.O_RDONLY)     # one free
                assert _free_fds() == 1, _free_fds()
                os.kill(pid, signal.SIGCONT)
                await asyncio.sleep(1.0)          # workers arrive meanwhile, each dropped
                free_now = _free_fds()
        finally:
            os.kill(pid, signal.SIGCONT)
            if plug is not None:
                os.close(plug)
        return result, free_now
    result, free_now = box.run(scenario())
    assert result.status == "ok" and result.outputs == [b"slept"], result
    result.close()
    assert free_now == 1, f"{1 - free_now} descriptor(s) of a dropped worker kept"
    box.settle()
    assert sb.fork_server_pid == pid and sb.restarts == 0
    lent = max(w.id for w in sb._pool.idle) - first_serial
    assert 2 <= lent <= 10, f"{lent} children lent for one job while one fd was free"
    box.back_to(before)
    box.innocent()


def _free_fds() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft - len(os.listdir("/proc/self/fd")) + 1     # (listdir's own fd)


# -- 6. many lent, idle children ---------------------------------------------------------------

def test_many_idle_children_cost_the_caller_two_empty_descriptors_each(fresh):
    box = fresh(workers=12, queue=32)
    before = box.fds()
    idle = list(box.sb._pool.idle)
    assert len(idle) == 12
    outputs = {w.output.fileno() for w in idle}
    assert len(outputs) == 12
    for fd in outputs:
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:sandbox-output")
        assert os.fstat(fd).st_blocks == 0        # none holds a page
    lines = [w.line.fileno() for w in idle]
    assert len(set(lines)) == 12 and all(fd >= 0 for fd in lines)

    async def mixed():
        jobs = []
        for i in range(36):
            if i % 3 == 0:
                jobs.append(box.sb.run([], {"do": "error_then_write", "s": 0.2,
                                            "bytes": 1 << 16}))
            elif i % 3 == 1:
                jobs.append(box.sb.run([], {"do": "flood_fds", "s": 0.2, "hang": 2}))
            else:
                jobs.append(box.sb.run([b"innocent"], INNOCENT))
        results = await asyncio.gather(*jobs)
        for i, result in enumerate(results):
            if i % 3 == 2:
                _innocent_ok(result)
            else:
                assert result.status in ("error", "crashed"), result
                result.close()
    box.run(mixed())
    box.back_to(before)
    assert len(box.sb._pool.idle) == 12
    assert all(os.fstat(w.output.fileno()).st_blocks == 0 for w in box.sb._pool.idle)
