"""Out of descriptors in the caller's process: a job not yet sent answers "busy", one
already sent still answers (it needs no descriptor more); a child lent
while none are left is given back; the fork server is not taken for broken (the kernel
drops the fds of a message we cannot receive)."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import time

import psutil
import pytest

from sandbox import Sandbox
from sandbox.runner import _unsent
from tests.sandbox.conftest import ENTRY, TEST_LIMITS

pytestmark = pytest.mark.timeout(60)

JOB = {"do": "concat", "suffix": "!"}


@contextlib.contextmanager
def no_descriptors_left():
    """Every descriptor number below the soft limit in use, until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    held = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16, hard))
    try:
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def wait_sent(sb: Sandbox, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not sb._jobs:
        assert time.monotonic() < deadline, "the job was never sent"
        await asyncio.sleep(0.01)


async def test_a_job_sent_before_descriptors_run_out_answers_and_the_next_is_busy():
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=2) as sb:
        pid = sb.fork_server_pid
        # Sent (its future waits for the answer) and still asleep when the descriptors
        # run out: 2 s leave a loaded machine time to fill them before the answer comes.
        job = asyncio.create_task(sb.run([], {"do": "sleep", "s": 2}))
        await wait_sent(sb)
        with no_descriptors_left():
            # Its answer needs no descriptor: the caller got the child's output memfd
            # with the child.
            result = await job
            # The next ones take what the first one's end freed, each ok result holding
            # its memfd, until one cannot make its memfds (EMFILE) or receive its child.
            later = []
            while len(later) < 6 and (not later or later[-1].ok):
                later.append(await sb.run([b"x"], JOB))
        assert result.status == "ok" and result.outputs == [b"slept"], result
        *served, refused = later
        assert all(r.outputs == [b"x!"] for r in served), served
        assert refused.status == "busy" and ("EMFILE" in refused.reason
                                             or "descriptors" in refused.reason), refused
        for r in (result, *served):
            r.close()
        assert sb.fork_server_pid == pid and sb.restarts == 0 and not sb._jobs
        assert (await sb.run([b"x"], JOB)).outputs == [b"x!"]


async def test_a_child_whose_descriptors_were_dropped_is_given_back():
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=2) as sb:
        pid = sb.fork_server_pid
        assert (await sb.run([b"x"], JOB)).ok
        deadline = time.monotonic() + 10
        while not sb._pool.idle:
            assert time.monotonic() < deadline, "no child was lent"
            await asyncio.sleep(0.01)
        # As when the kernel dropped its fds (EMFILE): the message alone arrives. (Its
        # line is held meanwhile: a child whose line closes exits by itself.)
        lost = sb._pool.idle.popleft()
        [child] = psutil.Process(pid).children()[0].children()
        try:
            sb._on_worker({"type": "worker", "id": lost.id}, None)
            psutil.wait_procs([child], timeout=10)
            assert not child.is_running()                            # given back: killed
        finally:
            lost.close()
        assert (await sb.run([b"x"], JOB)).outputs == [b"x!"]        # its successor serves
        assert sb.fork_server_pid == pid and sb.restarts == 0


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ETOOMANYREFS])
def test_a_job_that_cannot_be_sent_for_want_of_descriptors_is_busy(code):
    # ETOOMANYREFS: as an unprivileged user, children of the same uid holding hundreds
    # of descriptors in flight for a moment; not the chosen child's fault, so not one to
    # kill and retry on the next (that would cost up to HANDOVER_ATTEMPTS children).
    result = _unsent(OSError(code, os.strerror(code)))
    assert result.status == "busy" and errno.errorcode[code] in result.reason, result
