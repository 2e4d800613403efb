"""The Sandbox's life: start, queue, busy, concurrency, fork-server death, close, leaks."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import psutil
import pytest

from sandbox import Limits, Policy, Sandbox, SandboxError
from tests.sandbox.conftest import ENTRY, TEST_LIMITS, memfds_held, run, wait_ready
from tests.steady import back_to, reached, steady

JOB = {"do": "concat", "suffix": "!"}


def fork_server(sb: Sandbox) -> psutil.Process:
    return psutil.Process(sb.fork_server_pid)


def job_children(server: psutil.Process) -> list[psutil.Process]:
    """The children that run jobs: forked by the fork server's spawner, so grandchildren."""
    spawners = server.children()
    assert len(spawners) == 1, spawners
    return spawners[0].children()


def warm_children(server: psutil.Process) -> tuple[int, int]:
    """(job children, zombies among them): (2, 0) once a 2-worker Sandbox is at rest."""
    children = job_children(server)
    zombies = 0
    for child in children:
        try:
            zombies += child.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:   # reaped between the listing and the look
            pass
    return len(children), zombies


def test_layers_are_reported(sb):
    layers = {status.name: status for status in sb.layers()}
    assert set(layers) == {"privileges", "namespaces", "rlimits", "landlock", "seccomp"}
    for name in ("privileges", "rlimits", "landlock", "seccomp"):
        assert layers[name].available, layers[name]
        assert layers[name].detail
    assert layers["namespaces"].detail    # active, or the reason it is not


def test_per_call_limits_only_tighten(sb):
    result = run(sb, "allocate", mb=400, limits=Limits(memory_mb=100_000))
    assert result.status == "memory"
    assert run(sb, "allocate", mb=100, limits=Limits(memory_mb=50)).status == "memory"
    assert run(sb, "allocate", mb=100).status == "ok"


def test_unknown_entry_fails_start():
    with pytest.raises(SandboxError, match="cannot load the entry"):
        with Sandbox("tests.sandbox.entries:no_such_function", workers=1) as bad:
            bad.run_sync([], {})


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="entry"):
        Sandbox("no_colon_here")
    with pytest.raises(ValueError, match="queue"):
        Sandbox(ENTRY, queue=-1)
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=0)
    with pytest.raises(ValueError, match="unknown layers"):
        Policy(allow_missing_layers={"firewall"})


async def test_busy_when_queue_is_full():
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=0) as sb:
        slow = asyncio.create_task(sb.run([], {"do": "sleep", "s": 1}))
        await asyncio.sleep(0.2)
        refused = await sb.run([], JOB)
        assert refused.status == "busy" and "queue is full" in refused.reason
        assert (await slow).status == "ok"
        assert (await sb.run([b"a"], JOB)).outputs == [b"a!"]


async def test_two_workers_run_in_parallel():
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=2, queue=4) as sb:
        await sb.run([], JOB)
        start = time.monotonic()
        # One after the other they take at least 3 s; side by side 1.5 s plus forks and
        # round trips, which a loaded 2-core machine may stretch by a second.
        results = await asyncio.gather(*(sb.run([], {"do": "sleep", "s": 1.5}) for _ in range(2)))
        assert [r.status for r in results] == ["ok", "ok"]
        assert time.monotonic() - start < 3.0


@pytest.mark.parametrize("busy", [1, 2])
async def test_a_busy_childs_replacement_comes_while_its_job_runs(busy):
    """A busy child's replacement is forked while its job runs, with another child
    idle or none: a long job never holds the pool short for its whole run."""
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=2, queue=4) as sb:
        await sb.run([], JOB)
        jobs = [asyncio.ensure_future(sb.run([], {"do": "sleep", "s": 2.5}))
                for _ in range(busy)]
        replaced = await asyncio.to_thread(
            reached, lambda: warm_children(fork_server(sb))[0], 2 + busy, timeout_s=1.5)
        assert replaced == 2 + busy, "the busy children were not replaced during their jobs"
        assert [r.outputs for r in await asyncio.gather(*jobs)] == [[b"slept"]] * busy


async def test_queued_jobs_all_run_in_order_of_submission():
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=2, queue=16) as sb:
        results = await asyncio.gather(*(sb.run([str(i).encode()], JOB) for i in range(18)))
        assert [r.outputs for r in results] == [[f"{i}!".encode()] for i in range(18)]


async def test_fork_server_death_fails_fast_and_restarts():
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=2) as sb:
        first_pid = sb.fork_server_pid
        in_flight = asyncio.create_task(sb.run([], {"do": "sleep", "s": 5}))
        await asyncio.sleep(0.3)
        os.kill(first_pid, signal.SIGKILL)
        started = time.monotonic()
        result = await in_flight
        assert result.status == "restarting" and "fork server died" in result.reason
        # At the death, not when the job would have ended (5 s in): slack for a slow machine.
        assert time.monotonic() - started < 4.0
        refused = await sb.run([], JOB)
        assert refused.status == "restarting"
        await wait_ready(sb)
        assert sb.fork_server_pid != first_pid and sb.restarts == 1
        assert (await sb.run([b"x"], JOB)).outputs == [b"x!"]


async def test_close_cancels_queued_jobs_and_kills_children():
    sb = Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=4)
    await sb.start()
    server = fork_server(sb)
    jobs = [asyncio.create_task(sb.run([], {"do": "sleep", "s": 5})) for _ in range(3)]
    await asyncio.sleep(0.3)
    children = [*server.children(recursive=True)]
    assert len(children) >= 2               # the spawner and job children
    started = time.monotonic()
    await sb.close()
    results = await asyncio.gather(*jobs)
    assert time.monotonic() - started < 4.0
    assert all(r.status in ("crashed", "busy") for r in results), results
    gone, alive = psutil.wait_procs([server, *children], timeout=3)
    assert not alive
    assert (await sb.run([], JOB)).status == "busy"


async def test_children_are_reaped_no_zombies():
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=2, queue=8) as sb:
        await asyncio.gather(*(sb.run([], {"do": d}) for d in
                               ["exit3", "segfault", "fork", "nothing", "raises"] * 2))
        # The last children exit as their results arrive and are replaced by warm ones:
        # wait (bounded) for the spawner to reap them and fork the replacements.
        at_rest = await asyncio.to_thread(reached, lambda: warm_children(fork_server(sb)),
                                          (2, 0))
        assert at_rest == (2, 0), "(children, zombies): exactly the warm ones, no zombie"


@pytest.mark.timeout(420)
async def test_ten_thousand_jobs_leak_nothing():
    me = psutil.Process()
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=2, queue=48) as sb:
        server = fork_server(sb)

        async def batch(n: int) -> None:
            for start in range(0, n, 50):
                results = await asyncio.gather(*(sb.run([b"in", b"put"], JOB)
                                                 for _ in range(min(50, n - start))))
                assert all(r.outputs == [b"input!"] for r in results), results[0]

        def counts() -> tuple[int, int, int, int]:
            return me.num_fds(), server.num_fds(), memfds_held(os.getpid()), memfds_held(server.pid)

        # Counts taken once they hold still (tests.steady): the last children of a batch
        # are still being reaped and replaced when its results are in.
        await batch(100)
        assert await asyncio.to_thread(reached, lambda: warm_children(server), (2, 0)) == (2, 0)
        base = await asyncio.to_thread(steady, counts)
        rss = me.memory_info().rss
        await batch(9_900)
        at_rest = await asyncio.to_thread(reached, lambda: warm_children(server), (2, 0))
        assert at_rest == (2, 0), "(children, zombies): exactly the warm ones, no zombie"
        await asyncio.to_thread(back_to, counts, base)     # fds and memfds of both sides
        assert me.memory_info().rss <= rss * 1.10, (me.memory_info().rss, rss)


async def test_library_cached_random_fd_survives_into_children():
    # qpdf caches /dev/urandom after its first key: children keep that fd, so a job's
    # encryption reads real randomness, never the job's own input that would reuse the number.
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=2,
                       warmup="tests.sandbox.entries:encrypt_warm_up") as sb:
        zeros = b"\0" * 4096
        result = await sb.run([zeros, zeros, zeros], {"do": "encrypt"})
        assert result.status == "ok", result
        first, second = result.outputs
        assert first != second               # fresh random keys each time


async def test_warm_up_leaking_a_file_fd_is_refused():
    with pytest.raises(SandboxError, match="left descriptors open"):
        async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1,
                           warmup="tests.sandbox.entries:open_fd_warm_up"):
            pass


def test_children_forked_without_pythons_hooks_have_their_own_process_state(sb):
    # sandbox.spawner forks with fork_without_python_hooks: no os.register_at_fork hook
    # runs, so it reseeds `random` itself and relies on being single-threaded.
    seen = [json.loads(run(sb, "fork_facts").outputs[0]) for _ in range(4)]
    assert len({facts["pid"] for facts in seen}) == 4
    assert len({facts["random"] for facts in seen}) == 4, seen   # no shared sequence
    for facts in seen:
        assert facts["main"] and facts["ident"] and facts["thread_ran"], facts
        assert facts["threads_after"] == 1, facts


def test_close_right_after_jobs_lets_the_fork_server_exit_by_itself():
    # Children the spawner forked before it heard of the shutdown used to be adopted
    # during the fork server's stop() and never killed: it waited for them until the
    # caller's grace ran out and SIGKILLed it (3 closes in 4, each 3 s).
    for _ in range(6):
        sandbox = Sandbox(ENTRY, limits=TEST_LIMITS, workers=3, queue=8)
        with sandbox:
            assert run(sandbox, "echo", [b"x"]).ok
            assert run(sandbox, "echo", [b"y"]).ok
            proc = sandbox._proc
        assert proc.returncode == 0, proc.returncode       # not -9: not killed at the end
