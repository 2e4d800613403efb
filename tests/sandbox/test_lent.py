"""Lent children: the caller speaks to each child directly on its job line. What a child
hands over with its report is checked (only its own output memfd is taken), a caller
that gives up on a job stops its child, and the pool of idle children never loses one."""
from __future__ import annotations

import asyncio

import psutil
import pytest

from sandbox import Sandbox, protocol
from sandbox.workers import Pool, Worker
from tests.sandbox.conftest import ENTRY, TEST_LIMITS, memfds_held, on_own_loop

pytestmark = pytest.mark.timeout(60)

INNOCENT = {"do": "concat", "suffix": "!"}


@pytest.fixture(scope="module")
def pair():
    yield from on_own_loop()


@pytest.mark.parametrize("fds, status", [
    ([], "ok"),                          # the control: a real report carries none
    (["output"], "crashed"),             # even its own output memfd
    (["input"], "crashed"),
    (["stderr"], "crashed"),
    (["line"], "crashed"),               # the job line itself
    (["output", "output"], "crashed"),
    (["input", "output"], "crashed"),
])
def test_a_report_carrying_any_descriptor_is_refused(pair, fds, status):
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
    assert memfds_held() <= before            # nothing handed over was kept
    assert sb.fork_server_pid == pid and not sb._jobs


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
        worker = Worker(1, ours, None)
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


def test_a_neighbour_with_descriptors_in_flight_costs_an_innocent_job_nothing():
    """Every child is the same user, and Linux refuses a descriptor-carrying send once
    that user has more in flight than the sender's RLIMIT_NOFILE (ETOOMANYREFS): a
    hostile child that queues hundreds of them on its line, before the caller reads the
    first, must not make an innocent neighbour's report fail (it did, 6 times in 150,
    when an ok report carried its output memfd). So no child ever sends one."""
    flood = {"do": "speak", "then": "hang",
             "messages": [{"pieces": ["7b7d"], "fds": 200, "times": 3}]}

    async def main():
        async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=4) as sb:
            for _ in range(30):
                hostile, *innocents = await asyncio.gather(
                    sb.run([], flood), *[sb.run([b"innocent"], INNOCENT) for _ in range(3)])
                assert hostile.status == "crashed", hostile
                for innocent in innocents:
                    assert innocent.ok and innocent.outputs == [b"innocent!"], innocent

    asyncio.run(main())
