"""Servers for the service tests: real `notrace serve` subprocesses with the real sandbox.

One default server for the whole session; servers with special settings are started by
the modules that need them (`start_server`), and all are stopped at the end.
"""
from __future__ import annotations

import pytest

from tests.service.server import Server


@pytest.fixture(scope="session")
def start_server():
    """start_server(**NOTRACE_settings, wrapper=[...]) -> a started Server."""
    started: list[Server] = []

    def start(wrapper=None, cwd=None, **settings) -> Server:
        env = {f"NOTRACE_{k.upper()}": str(v) for k, v in settings.items()}
        server = Server(env, wrapper=wrapper, cwd=cwd).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server) -> Server:
    """Default settings (workers = CPU count, queue 16)."""
    return start_server()


@pytest.fixture(scope="session")
def tight(start_server) -> Server:
    """Small limits: 1 MiB uploads, 2 s upload deadline, 5 pages, 128 MiB, 1 CPU second."""
    return start_server(max_upload_mb=1, upload_timeout_s=2, max_pages=5,
                        child_memory_mb=128, child_cpu_s=1, child_wall_s=20)


@pytest.fixture(scope="session")
def single(start_server) -> Server:
    """One worker, no queue, 1 s wall limit: any overlap is a 503."""
    return start_server(workers=1, queue=0, child_wall_s=1, child_cpu_s=20)


@pytest.fixture(scope="session")
def small_memory(start_server) -> Server:
    """48 MiB per job: a 108 MB image decode ends as "memory"."""
    return start_server(child_memory_mb=48)
