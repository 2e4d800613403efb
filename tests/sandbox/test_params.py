"""Params travel to the child in a sealed memfd: any size, never decoded by the fork
server; run() answers a Result for every job it accepts and leaves no future behind."""
from __future__ import annotations

import asyncio
import os

import psutil
import pytest

from sandbox import Sandbox
from sandbox.layers.rlimits import MAX_JOB_FDS
from tests.sandbox.conftest import ENTRY, TEST_LIMITS, run

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("size", [210 * 1024, 300 * 1024, 1 << 20])
def test_big_params_travel(sb, size):
    # Over ~210 KB, params in the job message raised EMSGSIZE/ValueError out of run().
    result = run(sb, "params_size", blob="p" * size)
    assert result.status == "ok" and result.outputs == [str(size).encode()], result
    assert not sb._jobs


def test_params_that_are_not_json_are_an_error_result(sb):
    result = sb.run_sync([], {"do": "nothing", "x": object()})
    assert result.status == "error" and "TypeError" in result.error, result
    assert not sb._jobs


def test_too_many_inputs_is_the_one_exception_and_nothing_is_sent(sb):
    sent_before = next(sb._ids)
    with pytest.raises(ValueError, match=f"at most {MAX_JOB_FDS} inputs"):
        sb.run_sync([b"x"] * (MAX_JOB_FDS + 1), {"do": "nothing"})
    assert next(sb._ids) == sent_before + 1         # no job id was even taken
    assert run(sb, "echo", inputs=[b"x"] * MAX_JOB_FDS).outputs == [b"x"] * MAX_JOB_FDS


def test_inputs_that_are_not_bytes_are_an_error_result(sb):
    result = sb.run_sync([42], {"do": "nothing"})
    assert result.status == "error" and not sb._jobs, result


async def test_no_future_is_left_behind_whatever_happens():
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=2, queue=4) as sb:
        jobs = [sb.run([b"a"], {"do": "concat", "suffix": "!"}),
                sb.run([], {"do": "segfault"}), sb.run([], {"do": "raises"}),
                sb.run([], {"do": "params_size", "blob": "q" * (1 << 20)}),
                sb.run([], {"do": "sleep", "s": 10}, limits=None)]
        tasks = [asyncio.ensure_future(job) for job in jobs]
        await asyncio.sleep(0.5)
        tasks[-1].cancel()                          # a caller that gives up
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [getattr(r, "status", "cancelled") for r in results] == \
            ["ok", "crashed", "error", "ok", "cancelled"], results
        assert not sb._jobs


def _holds(pid: int, marker: bytes) -> bool:
    """Whether the marker is anywhere in the process's readable memory (needs root).
    A process that is gone by now (a child that just ended) holds nothing."""
    try:
        maps, mem = open(f"/proc/{pid}/maps"), open(f"/proc/{pid}/mem", "rb", 0)
    except (FileNotFoundError, ProcessLookupError):
        return False
    with maps, mem:
        for line in maps:
            addresses, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(a, 16) for a in addresses.split("-"))
            try:
                mem.seek(start)
                if marker in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue                       # [vvar] and the like
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root")
async def test_the_fork_server_never_holds_a_jobs_params():
    marker = "NTRC" + os.urandom(8).hex()        # made here: in no process before this job
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=2) as sb:
        fork_server = psutil.Process(sb.fork_server_pid)
        spawner = fork_server.children()
        job = asyncio.create_task(sb.run([], {"do": "sleep", "s": 1, "password": marker}))
        await asyncio.sleep(0.5)                  # running: the fork server holds the job
        for process in [fork_server, *spawner]:
            assert not _holds(process.pid, marker.encode()), process
        assert (await job).status == "ok"
        for process in [fork_server, *fork_server.children(recursive=True)]:
            assert not _holds(process.pid, marker.encode()), process
