"""Lent children: the caller speaks to each child directly on its job line. What a child
hands over with its report is checked (only its own output memfd is taken), a caller
that gives up on a job stops its child, and the pool of idle children never loses one."""
from __future__ import annotations

import asyncio

import psutil
import pytest

from sandbox import Sandbox, protocol, trailer
from sandbox.workers import Pool, Worker
from tests.sandbox.conftest import ENTRY, TEST_LIMITS, memfds_held, on_own_loop

pytestmark = pytest.mark.timeout(60)

INNOCENT = {"do": "concat", "suffix": "!"}


@pytest.fixture(scope="module")
def pair():
    yield from on_own_loop()


@pytest.mark.parametrize("fds, status", [
    (["output"], "ok"),                  # the control: its own memfd is taken
    ([], "crashed"),                     # an ok report without it
    (["input"], "crashed"),              # its input's memfd: a file, but not its output
    (["stderr"], "crashed"),
    (["line"], "crashed"),               # the job line itself
    (["output", "output"], "crashed"),   # more than one (the kernel drops the second)
    (["input", "output"], "crashed"),
])
def test_only_its_own_output_memfd_passes_with_an_ok_report(pair, fds, status):
    loop, sb = pair
    pid, before = sb.fork_server_pid, memfds_held()

    async def both():
        return await asyncio.gather(
            sb.run([b"the job's input"], {"do": "report_with", "fds": fds}),
            sb.run([b"innocent"], INNOCENT))

    hostile, innocent = loop.run_until_complete(both())
    assert innocent.ok and innocent.outputs == [b"innocent!"], innocent
    assert hostile.status == status, hostile
    if status == "ok":
        assert hostile.outputs == [b"mine"]
    else:
        assert hostile.reason == "sent an invalid report", hostile
    hostile.close()
    innocent.close()
    assert memfds_held() <= before              # nothing handed over was kept
    assert sb.fork_server_pid == pid and not sb._jobs


def test_a_file_of_the_outputs_very_size_is_not_taken_for_it(pair):
    # Its input, made exactly as large as the output memfd: a regular file of the right
    # size, so only its identity (device, inode) tells it from the output.
    loop, sb = pair
    size = trailer.memfd_size(TEST_LIMITS.output_mb)
    result = loop.run_until_complete(sb.run([bytes(size)], {"do": "report_with",
                                                            "fds": ["input"]}))
    assert result.status == "crashed" and result.reason == "sent an invalid report", result


def test_a_caller_that_gives_up_stops_the_child(pair):
    loop, sb = pair

    async def give_up():
        while len(sb._pool.idle) < sb.workers:   # every child lent and idle
            await asyncio.sleep(0.01)
        idle = psutil.Process(sb.fork_server_pid).children()[0].children()
        task = asyncio.create_task(sb.run([], {"do": "sleep", "s": 30}))
        while not sb._jobs:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The one that took the job is killed at once (not left to its 30 s, nor to the
        # 2 s of grace a child gets after its job is done); the others live.
        deadline = loop.time() + 1.5
        while all(map(alive, idle)):
            assert loop.time() < deadline, "the abandoned job's child still runs"
            await asyncio.sleep(0.05)
        assert sum(map(alive, idle)) == len(idle) - 1
        assert not sb._jobs
        return await sb.run([b"next"], INNOCENT)

    assert loop.run_until_complete(give_up()).outputs == [b"next!"]


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _pool_hands_back_a_worker_its_cancelled_taker_got():
    pool = Pool(asyncio.get_running_loop())
    ours, theirs = protocol.socketpair()
    with theirs:
        worker = Worker(1, ours, (0, 0), 0)
        taker = asyncio.create_task(pool.take(5.0))
        await asyncio.sleep(0)                   # it waits for a worker now
        assert pool.offer(worker) is True        # handed to the taker...
        taker.cancel()                           # ...which is cancelled before it resumes
        with pytest.raises(asyncio.CancelledError):
            await taker
        assert list(pool.idle) == [worker]       # not lost: idle again
        assert (await pool.take(5.0)) is worker
        worker.close()


def test_a_worker_handed_to_a_cancelled_caller_goes_back_to_the_pool():
    asyncio.run(_pool_hands_back_a_worker_its_cancelled_taker_got())


async def _pool_answers_busy_when_no_worker_comes():
    pool = Pool(asyncio.get_running_loop())
    result = await pool.take(0.05)
    assert result.status == "busy" and "ready in time" in result.reason
    assert not pool.wanting or all(f.done() for f in pool.wanting)


def test_a_caller_that_finds_no_child_ready_in_time_is_busy():
    asyncio.run(_pool_answers_busy_when_no_worker_comes())


def test_a_sandbox_without_children_answers_busy_not_forever():
    """workers=1 and a child that cannot be lent (its fds dropped each time) would leave
    the caller waiting; WORKER_WAIT_S bounds it (here shortened) with busy."""
    import sandbox.runner as runner

    async def main():
        async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=2) as sb:
            await sb.run([b"x"], INNOCENT)
            while not sb._pool.idle:
                await asyncio.sleep(0.01)
            held = sb._pool.idle.popleft()       # as if never lent: nobody else comes
            saved, runner.WORKER_WAIT_S = runner.WORKER_WAIT_S, 0.3
            try:
                # The fork server counts the held child as warm: no other is made.
                result = await sb.run([b"y"], INNOCENT)
            finally:
                runner.WORKER_WAIT_S = saved
                held.close()
            assert result.status == "busy" and "ready in time" in result.reason, result
            assert (await sb.run([b"z"], INNOCENT)).outputs == [b"z!"]   # and it recovers

    asyncio.run(main())
