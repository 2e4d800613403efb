"""Out of descriptors in the caller's process: that job answers "busy"; the fork server
is not taken for broken (the kernel drops the fds of a message we cannot receive)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time

import pytest

from sandbox import Sandbox
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
    while not sb._futures:
        assert time.monotonic() < deadline, "the job was never sent"
        await asyncio.sleep(0.01)


async def test_a_result_whose_memfd_cannot_be_received_is_busy():
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=2) as sb:
        pid = sb.fork_server_pid
        # Sent (its future waits for the answer) and still asleep when the descriptors
        # run out: 2 s leave a loaded machine time to fill them before the answer comes.
        job = asyncio.create_task(sb.run([], {"do": "sleep", "s": 2}))
        await wait_sent(sb)
        with no_descriptors_left():
            result = await job
            refused = await sb.run([b"x"], JOB)      # cannot even make its params memfd
        assert result.status == "busy" and "descriptors" in result.reason, result
        assert refused.status == "busy" and "EMFILE" in refused.reason, refused
        assert sb.fork_server_pid == pid and sb.restarts == 0 and not sb._futures
        assert (await sb.run([b"x"], JOB)).outputs == [b"x!"]
