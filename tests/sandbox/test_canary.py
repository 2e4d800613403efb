"""The canary: a job of dummy data each warm child runs before it is ready, and the
output memfd each child gets with its fork. Neither may carry anything from one job (or
from the canary) into another, nor run with more than a job may do."""
from __future__ import annotations

import json
import os
import time

import pytest

from sandbox import Limits, Sandbox, SandboxError
from tests.sandbox.conftest import ENTRY, TEST_LIMITS, run
from tests.sandbox.entries import CANARY_MARK

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def canaried():
    sandbox = Sandbox(ENTRY, limits=TEST_LIMITS, workers=2, queue=8,
                      canary="tests.sandbox.entries:probe_canary")
    with sandbox:
        sandbox.run_sync([], {"do": "nothing"})
        time.sleep(0.3)             # the next children are ready and have run the canary
        yield sandbox


def memfd_bytes(result) -> bytes:
    """The whole output memfd of a result: what lies beyond its outputs too."""
    fd = result.outputs.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0)


def test_the_canary_ran_confined_in_the_jobs_own_child(canaried):
    result = run(canaried, "canary_report")
    assert result.ok, result
    seen = json.loads(result.outputs[0])
    assert seen == {"confined": "refused: PermissionError", "same_process": True,
                    "inputs": [(CANARY_MARK + b"input").decode()]}


def test_no_canary_output_in_a_jobs_memfd(canaried):
    result = run(canaried, "concat", [b"user data"])
    assert result.ok and result.outputs == [b"user data"]
    whole = memfd_bytes(result)
    assert CANARY_MARK not in whole
    assert whole.count(b"user data") == 1


def test_each_job_gets_a_fresh_output_memfd(sb):
    first = run(sb, "concat", [b"first job's secret"])
    second = run(sb, "echo", [b"x"])
    assert first.ok and second.ok
    assert os.fstat(first.outputs.fileno()).st_ino != os.fstat(second.outputs.fileno()).st_ino
    assert b"first job's secret" not in memfd_bytes(second)


def test_a_tighter_output_cap_holds_though_the_memfd_is_larger(sb):
    # The memfd is sized for the sandbox's 8 MB; a job allowed 1 MB that claims 3 MB
    # (a forged report) is refused from outside.
    result = run(sb, "forge_trailer", limits=Limits(output_mb=1), data="", lengths=[],
                 used=3 << 20)
    assert result.status == "output_too_large", result


def test_a_canary_that_fails_fails_the_start():
    sandbox = Sandbox(ENTRY, limits=TEST_LIMITS, workers=1,
                      canary="tests.sandbox.entries:failing_canary")
    with pytest.raises(SandboxError, match="cannot load the entry"):
        sandbox.run_sync([], {"do": "nothing"})
    sandbox.close_sync()

