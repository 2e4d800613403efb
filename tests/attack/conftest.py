"""Shared pieces of the attack tests: a real Sandbox on its own loop running the attack
entries, and counts of what the trusted processes hold (fds, children, zombies)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time

import psutil
import pytest

from sandbox import Limits, Sandbox
from tests.attack.entries import ATTACK_MAGIC
from tests.sandbox.conftest import wait_ready
from tests.service.server import Server
from tests.steady import steady

ENTRY = "tests.attack.entries:dispatch"
LIMITS = Limits(memory_mb=256, cpu_s=3, wall_s=4, output_mb=8)
INNOCENT = {"do": "concat", "suffix": "!"}


class Loop:
    """A Sandbox and the event loop it lives on (tests run jobs side by side on it)."""

    def __init__(self, **kwargs) -> None:
        self.loop = asyncio.new_event_loop()
        self.sb = Sandbox(ENTRY, **{"limits": LIMITS, "workers": 2, "queue": 8, **kwargs})
        self.loop.run_until_complete(self.sb.start())

    def run(self, *coroutines):
        async def together():
            return await asyncio.gather(*coroutines)
        return self.loop.run_until_complete(together())

    def job(self, params, inputs=(), limits=None):
        return self.sb.run(list(inputs), params, limits)

    async def innocent(self, delay_s: float = 0.0):
        await asyncio.sleep(delay_s)
        result = await self.sb.run([b"innocent"], INNOCENT)
        assert result.status == "ok" and result.outputs == [b"innocent!"], result
        result.close()
        return result.status

    def settle(self, timeout_s: float = 15.0) -> None:
        """Until the fork server is ready and its children are just the warm ones, each
        lent to the caller (its job line here, not in the fork server nor in transit):
        every attacker child killed and reaped."""
        self.loop.run_until_complete(wait_ready(self.sb))
        self.loop.run_until_complete(self.sb.run([], {"do": "nothing"}))
        deadline = time.monotonic() + timeout_s
        while (len(children(self.sb.fork_server_pid)) != self.sb.workers
               or len(self.sb._pool.idle) != self.sb.workers):
            assert time.monotonic() < deadline, "the fork server kept extra children"
            self.loop.run_until_complete(asyncio.sleep(0.05))

    def steady_fd_counts(self, samples: int = 4, timeout_s: float = 5.0) -> tuple[int, int]:
        """(server, fork server) descriptor counts once they hold still. A child that has
        just exited is reaped by the spawner before the fork server reads its pidfd and
        closes its four descriptors: a count taken in that gap is four too high (a CI
        run's 'leak' of 18 -> 14), so equal counts over a few sampled ticks are taken
        (sampled from a thread: the loop goes on serving the Sandbox meanwhile)."""
        self.settle()
        pids = os.getpid(), self.sb.fork_server_pid
        return self.loop.run_until_complete(asyncio.to_thread(
            steady, lambda: (fd_count(pids[0]), fd_count(pids[1])), samples=samples,
            interval_s=0.05, timeout_s=timeout_s))

    def close(self) -> None:
        self.loop.run_until_complete(self.sb.close())
        self.loop.close()


@pytest.fixture(scope="module")
def box():
    box = Loop()
    box.settle()
    try:
        yield box
    finally:
        box.close()


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(fork_server_pid: int) -> list[psutil.Process]:
    """The children of the fork server's spawner (warm, busy or dying)."""
    procs = psutil.Process(fork_server_pid).children()
    return [c for p in procs for c in p.children()]


def zombies(pid: int) -> list[int]:
    found = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                found.append(p.pid)
        except psutil.NoSuchProcess:   # reaped between the listing and the look
            pass
    return found


@contextlib.contextmanager
def hostile_serving(env: dict[str, str]):
    """A real `notrace serve` (real sandbox, real HTTP on loopback) with these settings,
    whose children obey attack orders (tests.attack.child_entry)."""
    server = Server(env, wrapper=[sys.executable, "-m", "tests.attack.hostile_server"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def hostile_server():
    """A hostile server with small bounds, so attacks reach them fast."""
    with hostile_serving({"NOTRACE_WORKERS": "2", "NOTRACE_QUEUE": "4",
                          "NOTRACE_UPLOAD_TIMEOUT_S": "2", "NOTRACE_MAX_UPLOAD_MB": "8",
                          "NOTRACE_MAX_INFLIGHT_MB": "16", "NOTRACE_CHILD_WALL_S": "10",
                          "NOTRACE_ANSWER_STALL_S": "3"}) as server:
        yield server


def order(attack: dict) -> bytes:
    """An upload that makes the hostile server's child run `attack`."""
    return ATTACK_MAGIC + json.dumps(attack).encode()


def server_pids(server: Server) -> tuple[int, int]:
    """(server, fork server) pids of a running test server."""
    proc = psutil.Process(server.proc.pid)
    fork_servers = [c for c in proc.children() if "sandbox.forkserver" in " ".join(c.cmdline())]
    assert len(fork_servers) == 1, fork_servers
    return proc.pid, fork_servers[0].pid
