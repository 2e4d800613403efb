"""MemFile: failures to create one stay plain OSErrors, with nothing raised later."""
from __future__ import annotations

import gc
import resource
import sys

import pytest

from sandbox import MemFile

pytestmark = pytest.mark.timeout(30)


def test_a_memfile_that_failed_to_open_has_nothing_to_close():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unraisable = []
    old_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    held = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        with pytest.raises(OSError) as caught:
            while True:                                  # exhaust the descriptors
                held.append(MemFile("exhaust"))
        assert caught.value.errno == 24                  # EMFILE
    finally:
        for mem in held:
            mem.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        del caught
        gc.collect()
        sys.unraisablehook = old_hook
    assert not unraisable, [u.exc_value for u in unraisable]


def test_close_is_idempotent_and_closed_fileno_raises():
    mem = MemFile.from_bytes(b"abc")
    mem.close()
    mem.close()
    assert mem.closed
    with pytest.raises(ValueError, match="closed"):
        mem.fileno()
