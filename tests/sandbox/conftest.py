"""A real Sandbox shared by the sandbox tests (no mocks: real fork server, real layers)."""
from __future__ import annotations

import pytest

from sandbox import Limits, Sandbox

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
