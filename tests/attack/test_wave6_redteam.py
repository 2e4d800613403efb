"""Red team, wave 6: the fork server lends each ready child to the caller (job line).

Every attack runs in a real, confined child (tests.attack.wave6_entries) of a real fork
server. After each, the trusted side must have ended that one job and nothing else: the
caller's descriptors back to what they were, no job or waiter left behind in Sandbox
(_jobs, _pool), the fork server holding its warm children only, and an innocent job ok.
"""
from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import time

import psutil
import pytest

from sandbox import Limits, Sandbox
from sandbox.runner import RESULT_GRACE_S
from tests.steady import back_to, steady

pytestmark = pytest.mark.timeout(60)

ENTRY = "tests.attack.wave6_entries:dispatch"
LIMITS = Limits(memory_mb=256, cpu_s=3, wall_s=3, output_mb=8)


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie (one that exits as it is looked at is not alive)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Box:
    """A Sandbox on a loop of its own, with the checks every attack ends with."""

    entry = ENTRY

    def __init__(self, **kwargs) -> None:
        self.loop = asyncio.new_event_loop()
        self.sb = Sandbox(self.entry, **{"limits": LIMITS, "workers": 2, "queue": 8,
                                         **kwargs})
        self.loop.run_until_complete(self.sb.start())
        self.settle()

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def job(self, do: str, inputs=(), limits=None, **params):
        return self.run(self.sb.run(list(inputs), {"do": do, **params}, limits))

    def innocent(self) -> None:
        result = self.job("concat", [b"innocent"], suffix="!")
        assert result.status == "ok" and result.outputs == [b"innocent!"], result
        result.close()

    def sleep(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))

    def only_warm_children_within(self, seconds: float, why: str) -> None:
        """Until the spawner's children are just the warm ones (bounded by `seconds`)."""
        deadline = time.monotonic() + seconds
        while len(self.children()) > self.sb.workers:
            assert time.monotonic() < deadline, why
            self.sleep(0.05)

    def children(self) -> list[psutil.Process]:
        procs = psutil.Process(self.sb.fork_server_pid).children()
        return [c for p in procs for c in p.children() if _alive(c)]

    def settle(self, timeout_s: float = 15.0) -> None:
        """Ready, every job answered, and only the warm children left."""
        deadline = time.monotonic() + timeout_s
        while not self.sb.ready:
            assert time.monotonic() < deadline, "the sandbox never became ready"
            self.sleep(0.05)
        self.innocent()
        while (len(self.children()) != self.sb.workers or len(self.sb._pool.idle)
               != self.sb.workers):
            assert time.monotonic() < deadline, (len(self.children()),
                                                 len(self.sb._pool.idle))
            self.sleep(0.05)
        assert self.sb._jobs == {} and not self.sb._pool.wanting, self.sb._jobs

    def fds(self) -> int:
        """The caller's descriptor count once it holds still (the loop runs meanwhile)."""
        return self.run(asyncio.to_thread(steady, lambda: len(os.listdir("/proc/self/fd")),
                                          samples=4, interval_s=0.05, timeout_s=10))

    def back_to(self, before: int) -> None:
        self.settle()
        self.run(asyncio.to_thread(back_to, lambda: (len(os.listdir("/proc/self/fd")),),
                                   (before,), timeout_s=10))

    def close(self) -> None:
        self.run(self.sb.close())
        self.loop.close()


def box_fixtures(kind: type[Box]):
    """The fixtures `box` (one `kind` for the module) and `fresh` (a maker of Boxes of
    their own, for attacks on the fork server itself), closed after use."""
    @pytest.fixture(scope="module")
    def box():
        shared = kind()
        try:
            yield shared
        finally:
            shared.close()

    @pytest.fixture
    def fresh():
        made: list[Box] = []

        def make(**kwargs) -> Box:
            made.append(kind(**kwargs))
            return made[-1]
        yield make
        for each in made:
            each.close()
    return box, fresh


box, fresh = box_fixtures(Box)


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


# -- 1. the job line ------------------------------------------------------------------------

@pytest.mark.parametrize("fds", [0, 3])
@pytest.mark.parametrize("then", ["exit", "hang"])
def test_a_flood_on_the_line_after_the_report_ends_only_that_job(box, fds, then):
    before = box.fds()
    result = box.job("report_then_flood", n=20000, fds=fds, then=then, s=20)
    assert result.status == "ok" and result.outputs == [b"first"], result
    result.close()
    box.back_to(before)


def test_descriptors_sent_with_the_report_are_refused_and_never_kept(box):
    before = box.fds()
    for _ in range(3):
        result = box.job("fds_in_report")
        assert result.status == "crashed" and "invalid report" in result.reason, result
    box.back_to(before)


@pytest.mark.parametrize("how", ["close", "empty"])   # shutdown(): SIGSYS
def test_a_line_closed_or_emptied_while_the_child_lives_on_times_out(box, how):
    before, cpu = box.fds(), _cpu_s()
    started = time.monotonic()
    result = box.job("close_line", how=how, limits=Limits(wall_s=1))
    took = time.monotonic() - started
    assert result.status == "timeout", result
    assert 0.9 <= took < 1 + 3, took                       # the fork server's deadline
    assert _cpu_s() - cpu < 0.5 * took, "the caller's loop spun while it waited"
    box.back_to(before)


def test_a_report_after_an_empty_datagram_is_still_that_jobs_own(box):
    # The zero-length datagram reads as EOF (the caller stops reading); the report sent
    # afterwards is found when the fork server says the child ended.
    result = box.job("close_line", how="empty", report_after=0.2, then="exit")
    assert result.status in ("ok", "crashed"), result
    if result.status == "ok":
        assert result.outputs == [b"late"]
    result.close()
    box.innocent()


def test_a_report_then_a_spinning_child_is_answered_and_the_child_killed(box):
    before = box.fds()
    started = time.monotonic()
    result = box.job("report_then_spin")
    assert result.status == "ok" and result.outputs == [b"answered"], result
    assert time.monotonic() - started < 1.0
    result.close()
    box.only_warm_children_within(6, "a reported child was never killed")  # EXIT_GRACE_S: 2
    box.back_to(before)


def test_output_rewritten_after_the_report_never_breaks_the_caller(box):
    before = box.fds()
    for _ in range(3):
        result = box.job("rewrite_after_report", s=1.0)
        if result.status == "ok":
            assert len(result.outputs) == 2
            for _ in range(50):                            # the child rewrites meanwhile
                first, second = bytes(result.outputs[0]), bytes(result.outputs[1])
                assert (len(first), len(second)) == (5000, 3000)
        else:
            assert result.status == "crashed", result      # a table caught mid-rewrite
        result.close()
    box.innocent()
    box.back_to(before)


def test_a_stderr_flood_ends_as_a_normal_job(box):
    result = box.job("stderr_flood", mb=64)
    assert result.status == "ok" and result.outputs == [b"flooded"], result
    result.close()
    box.innocent()


# -- 2. the control channel, after the child was lent ---------------------------------------

@pytest.mark.parametrize("what", ["ready", "report", "worker", "fds", "big", "flood"])
def test_a_message_on_the_control_channel_after_the_lend_ends_that_job(box, what):
    before = box.fds()
    result = box.job("control_speaks", what=what, wait=2.0)
    assert result.status == "crashed", result
    assert "out of turn" in result.reason or "invalid" in result.reason, result
    box.back_to(before)


@pytest.mark.parametrize("what", ["empty", "close"])
def test_a_control_channel_closed_by_the_child_changes_nothing_but_its_own(box, what):
    result = box.job("control_speaks", what=what, wait=0.2)
    assert result.status == "ok" and result.outputs == [b"spoke:" + what.encode()], result
    result.close()
    box.innocent()


def test_control_channel_speech_beside_innocent_jobs_ends_only_itself(box):
    before = box.fds()

    async def both():
        async def innocent():
            result = await box.sb.run([b"x"], {"do": "concat", "suffix": "y"})
            assert result.status == "ok" and result.outputs == [b"xy"], result
            result.close()
            return "ok"
        return await asyncio.gather(
            box.sb.run([], {"do": "control_speaks", "what": "ready", "wait": 2.0}),
            *[innocent() for _ in range(6)])
    hostile, *innocents = box.run(both())
    assert hostile.status == "crashed" and innocents == ["ok"] * 6, hostile
    box.back_to(before)


# -- 3. the caller gives up ------------------------------------------------------------------

def test_a_cancelled_job_kills_its_child_at_once_and_frees_its_worker(box):
    before = box.fds()

    async def cancel_midway():
        task = asyncio.ensure_future(box.sb.run([], {"do": "sleep", "s": 30}))
        await asyncio.sleep(0.5)
        assert len(box.sb._jobs) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    box.run(cancel_midway())
    assert box.sb._jobs == {}
    box.only_warm_children_within(2.5, "an abandoned child lived on")  # not its wall_s
    box.back_to(before)


def test_cancellations_at_every_moment_leak_no_worker_nor_descriptor(box):
    before = box.fds()

    async def storm():
        tasks = []
        for i in range(40):
            tasks.append(asyncio.ensure_future(
                box.sb.run([b"x" * 100], {"do": "sleep", "s": 0.05 * (i % 5)})))
            await asyncio.sleep(0.003 * (i % 7))
            if i % 3 == 0:
                tasks[-1].cancel()
            if i % 4 == 1:
                tasks[i // 2].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in done:
            if not isinstance(outcome, BaseException):
                assert outcome.status in ("ok", "busy"), outcome
                outcome.close()
    box.run(storm())
    assert box.sb.in_flight == 0 and box.sb.queue_depth == 0
    box.back_to(before)                                   # settle(): the pool is whole


# -- 4. many jobs on few workers --------------------------------------------------------------

def test_many_jobs_on_one_worker_are_answered_ok_or_busy_only(fresh):
    box = fresh(workers=1, queue=2)
    before = box.fds()

    async def many():
        return await asyncio.gather(*[box.sb.run([b"%d" % i], {"do": "echo"})
                                      for i in range(12)])
    results = box.run(many())
    statuses = [r.status for r in results]
    assert statuses.count("ok") == 3 and statuses.count("busy") == 9, statuses
    for i, r in enumerate(results):
        if r.status == "ok":
            assert r.outputs == [b"%d" % i]                # each job its own answer
        r.close()
    box.back_to(before)


def test_jobs_back_to_back_with_a_canary_get_their_own_outputs(fresh):
    box = fresh(workers=2, queue=8, canary="tests.sandbox.entries:probe_canary")
    before = box.fds()

    async def waves():
        for wave in range(6):
            results = await asyncio.gather(*[
                box.sb.run([b"w%d-%d" % (wave, i)], {"do": "echo"}) for i in range(4)])
            for i, r in enumerate(results):
                assert r.status == "ok" and r.outputs == [b"w%d-%d" % (wave, i)], r
                r.close()
            hostile = await box.sb.run([], {"do": "rewrite_after_report", "s": 0.3})
            hostile.close()
            await asyncio.sleep(0.02 * wave)               # now and then a canary runs
    box.run(waves())
    box.back_to(before)


# -- 5. the fork server killed or stopped -----------------------------------------------------

def test_a_killed_fork_server_answers_its_jobs_restarting_then_serves_again(fresh):
    box = fresh(workers=2)
    before = box.fds()
    old = box.sb.fork_server_pid

    async def kill_midway():
        tasks = [asyncio.ensure_future(box.sb.run([], {"do": "sleep", "s": 5}))
                 for _ in range(4)]
        await asyncio.sleep(0.5)
        os.kill(old, signal.SIGKILL)
        return await asyncio.wait_for(asyncio.gather(*tasks), 10)
    results = box.run(kill_midway())
    assert {r.status for r in results} == {"restarting"}, results
    box.settle()
    assert box.sb.fork_server_pid != old and box.sb.restarts == 1
    box.back_to(before)


def test_a_child_killed_after_its_lend_gives_its_job_to_another(fresh):
    box = fresh(workers=2)
    for child in box.children():                          # the two idle, lent children
        child.kill()
    time.sleep(0.3)                                       # dead before the loop hears
    result = box.job("concat", [b"a"], suffix="b")
    assert result.status == "ok" and result.outputs == [b"ab"], result
    result.close()
    box.settle()


# (Was a bug in the working tree this wave attacked: Pool.take waited with no deadline;
# HEAD 98cf4a3 bounds it by runner.WORKER_WAIT_S. Kept as the regression test.)
def test_a_stopped_fork_server_never_hangs_a_job_waiting_for_a_worker(fresh):
    box = fresh(workers=1, limits=Limits(memory_mb=256, cpu_s=3, wall_s=1, output_mb=8))
    pid = box.sb.fork_server_pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # The one idle child still takes this job and answers it on its line...
        first = box.job("echo", [b"one"])
        assert first.status == "ok" and first.outputs == [b"one"], first
        first.close()
        # ...but no worker will ever come now: the next job must still end, as a job in
        # flight would when its fork server stops answering (wall_s + RESULT_GRACE_S + 10).
        bound = 1 + RESULT_GRACE_S + 10 + 5
        try:
            second = box.run(asyncio.wait_for(box.sb.run([b"two"], {"do": "echo"}), bound))
        except asyncio.TimeoutError:
            pytest.fail(f"a job waited {bound} s for a worker of a stopped fork server")
        assert second.status in ("restarting", "busy", "crashed"), second
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def _lent_then_killed(box: Box, waiter_limits: Limits | None = None,
                      params: dict | None = None) -> asyncio.Future:
    """workers=1: a caller waiting for a worker, the fork server lending it one, then
    dying before the caller's loop ran again. Returns the waiting caller's task; the loop
    is not running when this returns (its next turn reads "worker", then the death)."""
    sb = box.sb
    pid = sb.fork_server_pid
    os.kill(pid, signal.SIGSTOP)                  # no replacement lent for now
    first = box.job("echo", [b"one"])             # the idle child's job, on its line
    assert first.status == "ok", first
    first.close()
    waiter = asyncio.ensure_future(sb.run([b"w"], params or {"do": "echo"}, waiter_limits),
                                   loop=box.loop)
    box.sleep(0.05)
    assert sb._pool.wanting and not sb._pool.idle      # it waits for a worker
    os.kill(pid, signal.SIGCONT)
    assert select.select([sb._sock], [], [], 5)[0], "no worker was lent"
    time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        pass                                      # its children die moments later
    return waiter


def test_a_worker_of_a_dead_fork_server_never_takes_the_new_one_down(fresh):
    # The lent child dies moments after its fork server (PDEATHSIG, via the spawner):
    # the caller's job must reach it first, as it did 5 times in 5 on an idle machine.
    for _ in range(4):
        box = fresh(workers=1, limits=Limits(memory_mb=256, cpu_s=3, wall_s=20,
                                             output_mb=8))
        sb = box.sb
        waiter = _lent_then_killed(box, Limits(wall_s=1), {"do": "sleep", "s": 5})
        box.run(asyncio.sleep(0))                 # the turn: "worker", EOF, the death
        box.run(asyncio.sleep(0))                 # the waiter sends to the lent child
        stale = dict(sb._jobs)
        if stale and sb._sock is None:
            break                                 # a job sent to a dead fork server's child
        box.run(asyncio.wait([waiter], timeout=10))
    # (Else the lent child always died before the job reached it: what follows must
    # hold all the same.)
    deadline = time.monotonic() + 15
    while not sb.ready:
        assert time.monotonic() < deadline
        box.sleep(0.05)
    restarts = sb.restarts

    async def innocent_beside():
        innocent = asyncio.ensure_future(
            sb.run([], {"do": "sleep", "s": 17}))     # well within its wall_s of 20
        return await asyncio.gather(innocent, asyncio.wait_for(waiter, 25),
                                    return_exceptions=True)
    innocent, stale_result = box.run(innocent_beside())
    # (workers=1: the innocent job waits for the stale one's slot, then finds the new
    # fork server killed by that job's timer, "stopped answering".)
    assert sb.restarts == restarts, ("a healthy fork server was restarted", stale_result,
                                     stale)
    assert not isinstance(innocent, BaseException) and innocent.status == "ok", innocent


def test_a_cancelled_waiter_never_returns_a_dead_fork_servers_worker_to_the_pool(fresh):
    box = fresh(workers=1)
    sb = box.sb
    waiter = _lent_then_killed(box)

    class CancelWaiter(logging.Handler):
        """The waiter's client gives up in that same turn (here: as the death is logged)."""
        def emit(self, record):
            waiter.cancel()
    handler = CancelWaiter()
    logging.getLogger("sandbox").addHandler(handler)
    try:
        box.run(asyncio.wait([waiter], timeout=5))
    finally:
        logging.getLogger("sandbox").removeHandler(handler)
    assert waiter.cancelled()
    deadline = time.monotonic() + 15
    while not (sb.ready and sb._pool.idle):
        assert time.monotonic() < deadline
        box.sleep(0.05)
    box.sleep(0.5)
    ids = [w.id for w in sb._pool.idle]
    assert len(ids) == sb.workers, f"idle workers {ids} for {sb.workers} lent children"


def test_a_caller_out_of_descriptors_never_churns_children_nor_hangs_its_job(fresh):
    """The worker's fds cannot be received (the caller is at its NOFILE limit): the
    kernel drops them and the caller hands the worker back ("unlent"). The job waiting
    for a worker must end ("busy", like any job short of descriptors) or get one once
    descriptors are free, and the fork server must not fork child after child."""
    import resource
    box = fresh(workers=1)
    sb = box.sb
    pid = sb.fork_server_pid
    os.kill(pid, signal.SIGSTOP)                  # no replacement lent for now
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    try:
        first = box.job("echo", [b"one"])
        assert first.status == "ok", first
        first.close()
        count = box.fds()
        resource.setrlimit(resource.RLIMIT_NOFILE, (count + 16, hard))
        while True:                               # every descriptor taken...
            try:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        os.close(fillers.pop())                   # ...but one, for the params memfd
        waiter = asyncio.ensure_future(sb.run([], {"do": "echo"}), loop=box.loop)
        box.sleep(0.05)
        assert not waiter.done() and sb._pool.wanting
        os.kill(pid, signal.SIGCONT)
        end = time.monotonic() + 3
        while time.monotonic() < end and not waiter.done():
            box.sleep(0.02)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        os.kill(pid, signal.SIGCONT)
        for fd in fillers:
            os.close(fd)
    ended_in_window = waiter.done()
    result = box.run(asyncio.wait_for(waiter, 10))
    assert result.status in ("ok", "busy"), result
    result.close()
    box.settle()
    # Serials count the children lent: one job, one or two replacements, not hundreds.
    lent = max(w.id for w in sb._pool.idle)
    assert lent <= 6, f"{lent} children lent (forked, confined, killed) for one job"
    assert ended_in_window, "the job waited for a worker as long as descriptors were short"
