"""A child that takes every pid its cgroup allows (threads: the policy must let it start
threads) must not take the fork server down with it: the spawner's fork() then fails
with EAGAIN, and that must cost a moment of waiting, not the spawner, the fork server
and every job in flight. Compose runs the service with `pids_limit: 128`; here the fork
server and its descendants go into a pids cgroup of their own (cgroup v1, as root)."""
from __future__ import annotations

import concurrent.futures
import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.attack.conftest import Loop, order, server_pids
from tests.pdfs import make_pdf
from tests.service.server import Server

pytestmark = pytest.mark.timeout(60)

PIDS_ROOT = Path("/sys/fs/cgroup/pids")
HEADROOM = 12          # pids left to the fork server's tree besides what it runs now


@pytest.fixture
def cgroup():
    path = PIDS_ROOT / f"notrace-attack-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                (PIDS_ROOT / "cgroup.procs").write_text(pid)
            except OSError:
                pass                               # it ended meanwhile
        path.rmdir()


def confine_tree(cgroup: Path, root_pid: int) -> None:
    """Move a process and its descendants into the cgroup and cap it near its size."""
    for proc in [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]:
        try:
            (cgroup / "cgroup.procs").write_text(str(proc.pid))
        except OSError:
            pass                                   # a child that ended meanwhile
    current = int((cgroup / "pids.current").read_text())
    (cgroup / "pids.max").write_text(str(current + HEADROOM))


def test_a_child_that_takes_every_pid_costs_its_neighbours_a_wait_not_a_restart(cgroup):
    box = Loop()
    try:
        box.settle()
        pid = box.sb.fork_server_pid
        confine_tree(cgroup, pid)

        async def neighbours():
            # While the flood holds the pids: each innocent job needs a fresh child.
            return [await box.innocent(0.3) for _ in range(4)]

        flood, innocents = box.run(
            box.job({"do": "thread_flood", "hold_s": 1.5}), neighbours())
        assert int((cgroup / "pids.events").read_text().split()[1]) > 0, \
            "the flood never reached the cgroup's limit: the test proves nothing"
        assert flood.status == "ok", flood
        assert innocents == ["ok"] * 4
        assert box.sb.fork_server_pid == pid and box.sb.restarts == 0
        box.loop.run_until_complete(box.innocent())
    finally:
        box.close()


def test_over_http_the_flood_costs_innocent_clients_nothing(cgroup):
    """As in compose (the whole service in one pids cgroup): a child floods the pids
    while six innocent clients post; they all get 200 and the fork server stays."""
    server = Server({"NOTRACE_WORKERS": "2"},
                    wrapper=[sys.executable, "-m", "tests.attack.hostile_server"]).start()
    try:
        pids = server_pids(server)
        confine_tree(cgroup, pids[0])
        pdf = make_pdf(3)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            flood = pool.submit(server.post, "compress",
                                [order({"do": "thread_flood", "hold_s": 2.0})])
            time.sleep(0.3)
            innocents = [pool.submit(server.post, "compress", [pdf]) for _ in range(6)]
            assert [f.result().status for f in innocents] == [200] * 6
            assert flood.result().status == 422          # its answer is no manifest
        assert int((cgroup / "pids.events").read_text().split()[1]) > 0
        assert server_pids(server) == pids
    finally:
        server.stop()
