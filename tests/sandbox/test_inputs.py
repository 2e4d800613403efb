"""sandbox.inputs: a job's entry can have each whole input's read-only descriptor (for
libraries that map a file themselves), and nothing else: not a slice's, not a copy's,
not the canary's."""
from __future__ import annotations

import json
import time

import pytest

from sandbox import Sandbox
from sandbox.layers.rlimits import MAX_JOB_FDS
from tests.sandbox.conftest import ENTRY, TEST_LIMITS, run

pytestmark = pytest.mark.timeout(60)


def test_each_whole_input_has_its_read_only_descriptor(sb):
    data = [b"%PDF-1.7 first input", b"second", b""]
    result = run(sb, "input_files", data)
    assert result.ok, result
    seen = json.loads(result.outputs[0])
    first, second, empty = seen["inputs"]
    for entry in (first, second):
        # The same bytes as the view; sealed against writing, whoever holds it (and the
        # child may grow no file: RLIMIT_FSIZE 0 answers first).
        assert entry == {"fd": True, "slice_fd": False, "reads_the_same": True,
                         "sealed": True, "write": "EFBIG"}, seen
    assert empty == {"fd": False, "slice_fd": False}     # nothing to map, nothing kept
    assert seen["known"] == 2 and seen["copy_fd"] is None


def test_every_input_keeps_its_descriptor_at_the_most_inputs(sb):
    result = run(sb, "input_files", [b"x%d" % i for i in range(MAX_JOB_FDS)])
    assert result.ok, result
    seen = json.loads(result.outputs[0])
    assert seen["known"] == MAX_JOB_FDS
    assert all(entry["fd"] and entry["reads_the_same"] for entry in seen["inputs"])


def test_the_canarys_inputs_are_gone_before_the_job():
    with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=4,
                 canary="tests.sandbox.entries:probe_canary") as sandbox:
        sandbox.run_sync([], {"do": "nothing"})
        after_canary = 0
        for _ in range(40):         # a child runs the canary when it is idle: let it be
            time.sleep(0.05)
            result = run(sandbox, "input_files", [b"the job's own input"])
            assert result.ok, result
            seen = json.loads(result.outputs[0])
            assert seen["known"] == 1 and seen["inputs"][0]["reads_the_same"], seen
            after_canary += seen["after_canary"]
            if after_canary >= 3:
                break
        assert after_canary >= 3
