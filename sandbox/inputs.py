"""A job's inputs as its entry sees them: read-only mappings, and each one's descriptor.

Runs in a child (sandbox.child maps its job's inputs here). The entry gets each input as
a memoryview of a read-only mapping of its sealed memfd. Some libraries read a file
fastest by mapping it themselves, from a descriptor (pikepdf's AccessMode.mmap: qpdf
then reads memory directly, instead of calling back into Python for every read of a
stream object: a 500-page text PDF's info took 3.1 ms of CPU that way against 6.7 from
an io.BytesIO copy, measured in-process): fileno(view) gives that descriptor, the one
the child was handed. Its open mode is read-write (memfds are made so), but the memfd is
sealed against writing, growing, shrinking and new seals, and the child may grow no file
(RLIMIT_FSIZE 0) nor truncate one (seccomp): nobody can change its bytes. It stays open
until the child exits, so each input holds two descriptors (its own and its mapping's
dup), plus one more for each mapping a library makes (sandbox.layers.rlimits' NOFILE
counts three).
"""
from __future__ import annotations

import mmap
import os

_FILES: dict[int, tuple[mmap.mmap, int]] = {}   # id(an input's mapping) -> (it, its fd)


def map_input(fd: int) -> memoryview:
    """The input in `fd` as a read-only memoryview; its fd is kept for fileno(). An empty
    input has nothing to map: its fd is closed and it gets an empty view."""
    size = os.fstat(fd).st_size
    if size == 0:
        os.close(fd)
        return memoryview(b"")
    mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    _FILES[id(mapping)] = (mapping, fd)          # the mapping held: its id stays unique
    return memoryview(mapping)


def fileno(view: memoryview) -> int | None:
    """The descriptor of the job input `view` shows WHOLE (a slice of one has none: the
    file holds more than the view), or None for anything else."""
    if not isinstance(view, memoryview):
        return None
    entry = _FILES.get(id(view.obj))      # the mapping is held: its id is its own
    if entry is None or view.nbytes != len(entry[0]) or not view.contiguous:
        return None
    return entry[1]


def release() -> None:
    """Close every input descriptor and forget them (after the canary: its inputs must not
    be taken for the job's). The mappings stay valid while something refers to them."""
    for _, fd in _FILES.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _FILES.clear()
