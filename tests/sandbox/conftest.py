"""A real Sandbox shared by the sandbox tests (no mocks: real fork server, real layers)."""
from __future__ import annotations

import asyncio
import time

import pytest

from sandbox import Limits, Sandbox
from tests.held import memfds

ENTRY = "tests.sandbox.entries:dispatch"
TEST_LIMITS = Limits(memory_mb=256, cpu_s=3, wall_s=6, output_mb=8)


@pytest.fixture(scope="module")
def sb():
    sandbox = Sandbox(ENTRY, limits=TEST_LIMITS, workers=2, queue=8)
    with sandbox:
        sandbox.run_sync([], {"do": "nothing"})     # started and warm
        yield sandbox


def run(sandbox, do, inputs=(), limits=None, **params):
    return sandbox.run_sync(list(inputs), {"do": do, **params}, limits)


def on_own_loop(**options):
    """(loop, Sandbox) on a loop of their own, so that one test can run jobs side by
    side; a generator for module fixtures (yield from it)."""
    loop = asyncio.new_event_loop()
    sandbox = Sandbox(ENTRY, limits=TEST_LIMITS, workers=2, queue=8, **options)
    loop.run_until_complete(sandbox.start())
    try:
        yield loop, sandbox
    finally:
        loop.run_until_complete(sandbox.close())
        loop.close()


async def wait_ready(sb: Sandbox, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not sb.ready:
        assert time.monotonic() < deadline, "sandbox did not become ready"
        await asyncio.sleep(0.05)


def memfds_held(pid: int | str = "self") -> int:
    """How many memfds with data `pid` holds (tests.held)."""
    return len(memfds(pid))
