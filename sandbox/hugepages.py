"""Huge pages for the fork server's heap: fewer page-table entries for every child to copy
at its fork and tear down at its exit.

Each child is a fork of the spawner, itself a fork of the fork server, so it starts with
a copy of the fork server's page tables: one entry per 4 KiB page of anonymous memory
(the Python heap of an entry that imported a PDF stack: 59 MB for notrace, 15,000
entries), which the spawner copies at each fork and the child's exit takes down again.
Measured on the project's 2-core machine (loaded) with notrace's entry: the fork cost the
spawner 3.1 ms of CPU and the child's exit 4.3 ms; once the fork server's anonymous
regions were collapsed into 2 MiB pages (MADV_COLLAPSE, Linux 6.1+: 36 MB in 129 ms,
once) the fork cost 1.5 ms and the exit 2.3 ms. The child still copies on write what it
touches (the kernel splits a shared huge page and copies the one 4 KiB page written), so
nothing a child writes is ever seen by another: only the page-table layout changes.

Not a confinement layer, and best effort: a kernel before 6.1, a host with transparent
huge pages off, or no free 2 MiB blocks refuse, and children are just slower to make.
"""
from __future__ import annotations

import ctypes
import re

MADV_COLLAPSE = 25                                # <asm-generic/mman-common.h>, Linux 6.1
_DEFAULT_PMD_BYTES = 2 << 20
# Private, writable, anonymous: "start-end rw-p 00000000 00:00 0" then nothing or [heap].
# File-backed private mappings (a library's data) cannot be collapsed into anonymous
# huge pages; the stack is left alone (it grows down, page by page).
_ANONYMOUS = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) rw-p 00000000 00:00 0\s*(\[heap\])?\s*$")
_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
# A collapse fills every 4 KiB page of its 2 MiB with memory: only regions already this
# full are collapsed, so the fork server's memory does not grow by the holes of a
# reserved but unused region (a thread's stack, an allocator's reserve).
_MIN_FULL = 0.9

#: The fork server's whole environment (sandbox.runner starts it with nothing else):
#: glibc's malloc then asks for huge pages (MADV_HUGEPAGE) on the memory it takes from the
#: kernel, so that a child's big buffers (a 24 MB saved document, a page's pixels) fault in
#: 2 MiB at a time instead of 4 KiB (glibc 2.35+ reads it at start-up; an older one, or a
#: host without THP, ignores it). Children inherit malloc's setting, not the variable:
#: the fork server clears its environment.
ENVIRONMENT = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int


def huge_page_bytes() -> int:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return _DEFAULT_PMD_BYTES


def anonymous_regions(smaps: str, huge: int) -> list[tuple[int, int]]:
    """The private anonymous regions of /proc/self/smaps' text that are nearly all in
    memory, each shrunk to whole huge pages (aligned start and end); regions holding no
    whole huge page are left out."""
    regions, current = [], None
    for line in smaps.splitlines():
        if _HEADER.match(line):
            match = _ANONYMOUS.match(line)
            current = (int(match[1], 16), int(match[2], 16)) if match else None
        elif current is not None and line.startswith("Anonymous:"):
            low, high = current
            current = None
            if int(line.split()[1]) * 1024 < _MIN_FULL * (high - low):
                continue
            start = -(-low // huge) * huge
            end = high // huge * huge
            if end > start:
                regions.append((start, end))
    return regions


def collapse() -> int:
    """In the fork server, once, before the spawner is forked: collapse its anonymous
    regions into huge pages. Returns the bytes collapsed (0 where the host refuses)."""
    huge = huge_page_bytes()
    try:
        with open("/proc/self/smaps") as f:
            smaps = f.read()
    except OSError:
        return 0
    collapsed = 0
    for start, end in anonymous_regions(smaps, huge):
        # A region may be refused whole (EINVAL: no THP here) or in part (EAGAIN, ENOMEM:
        # no free 2 MiB block); each is tried on its own and nothing depends on the answer.
        if _libc.madvise(start, end - start, MADV_COLLAPSE) == 0:
            collapsed += end - start
    return collapsed
