"""The fork server's heap in huge pages (sandbox.hugepages): which regions are chosen,
and that a real fork server's spawner (the process every child is a copy of) holds them."""
from __future__ import annotations

import asyncio
import ctypes
import mmap
import os

import psutil
import pytest

from sandbox import Sandbox, hugepages
from tests.sandbox.conftest import ENTRY, TEST_LIMITS
from tests.sandbox.test_ends import JOB, busy_child

pytestmark = pytest.mark.timeout(60)

MB = 1 << 20


def smaps(*regions: tuple[int, int, str, str, int]) -> str:
    """A /proc/self/smaps text: (start, end, perms, name, anonymous bytes) per region."""
    lines = []
    for start, end, perms, name, anonymous in regions:
        inode = "00:00 0" if not name.startswith("/") else "fd:01 1234"
        lines += [f"{start:x}-{end:x} {perms} 00000000 {inode}    {name}".rstrip(),
                  f"Size:           {(end - start) // 1024} kB",
                  f"Anonymous:      {anonymous // 1024} kB",
                  "VmFlags: rd wr mr mw me ac"]
    return "\n".join(lines) + "\n"


def test_only_full_private_anonymous_regions_are_chosen_whole_huge_pages_only():
    text = smaps(
        (0x55_0000_0000 + MB, 0x55_0000_0000 + 9 * MB, "rw-p", "[heap]", 8 * MB),   # full heap
        (0x7f_0000_0000, 0x7f_0000_0000 + 8 * MB, "rw-p", "", 8 * MB),               # full
        (0x7f_1000_0000, 0x7f_1000_0000 + 8 * MB, "rw-p", "", 1 * MB),               # sparse
        (0x7f_2000_0000, 0x7f_2000_0000 + 4 * MB, "rw-p", "/usr/lib/libx.so", 4 * MB),
        (0x7f_3000_0000, 0x7f_3000_0000 + 4 * MB, "r--p", "", 4 * MB),               # read-only
        (0x7f_4000_0000, 0x7f_4000_0000 + 4 * MB, "rw-p", "[stack]", 4 * MB),
        (0x7f_5000_0000 + 4096, 0x7f_5000_0000 + 3 * MB, "rw-p", "", 3 * MB - 4096),  # < 2 MiB whole
    )
    assert hugepages.anonymous_regions(text, 2 * MB) == [
        (0x55_0000_0000 + 2 * MB, 0x55_0000_0000 + 8 * MB),     # aligned inward
        (0x7f_0000_0000, 0x7f_0000_0000 + 8 * MB),
    ]


def thp_enabled() -> bool:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        return "[never]" not in f.read()


def host_collapses() -> bool:
    """Whether this host collapses a private anonymous region into a huge page right now
    (Linux 6.1+, THP not "never", a free 2 MiB block): what the fork server's collapse,
    which is best effort, needs. Probed in this process just before the fork server's."""
    huge = hugepages.huge_page_bytes()
    region = mmap.mmap(-1, 2 * huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        region.write(b"\x01" * (2 * huge))                 # every page in memory
        anchor = ctypes.c_char.from_buffer(region)
        start = -(-ctypes.addressof(anchor) // huge) * huge
        collapsed = hugepages._libc.madvise(start, huge, hugepages.MADV_COLLAPSE) == 0
        del anchor
        return collapsed
    finally:
        region.close()


def anon_huge_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))


async def test_a_real_spawner_holds_the_heap_in_huge_pages_and_children_stay_apart():
    """Where the host offers transparent huge pages (this project's machines: madvise),
    the spawner every child is forked from maps the fork server's heap with them (where it
    does not, with none, and the sandbox works the same). A child writing over that heap
    writes its own copies: the next child reads it as the warm-up left it."""
    # THP on is not enough: an older kernel, or a host with no free 2 MiB block (a long
    # loaded one), refuses the collapse, and the spawner holds none (best effort).
    collapsible = thp_enabled() and host_collapses()
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=2,
                       warmup="tests.sandbox.entries:big_heap_warm_up") as sb:
        result = await sb.run([], {"do": "scribble_heap"})
        assert result.status == "ok" and result.outputs == [b"scribbled"], result
        result.close()
        for _ in range(2):
            result = await sb.run([], {"do": "check_heap"})
            assert result.status == "ok" and result.outputs == [b"intact"], result
            result.close()
        spawner = psutil.Process(sb.fork_server_pid).children()
        assert len(spawner) == 1
        held = anon_huge_kb(spawner[0].pid)
    if collapsible:
        assert held >= 16 * 1024, held        # most of the 32 MB heap
    elif not thp_enabled():
        assert held == 0


async def test_a_jobs_big_buffer_faults_in_huge_pages():
    """The fork server starts with glibc's malloc asking for huge pages (ENVIRONMENT),
    and its children inherit that: a job's 64 MB buffer is mapped with 2 MiB pages where
    the host has them (madvise or always), and the fork server's environment holds
    nothing else (what it was started with is in /proc/PID/environ)."""
    async with Sandbox(ENTRY, limits=TEST_LIMITS, workers=1, queue=2) as sb:
        with open(f"/proc/{sb.fork_server_pid}/environ", "rb") as f:
            environment = f.read().split(b"\0")[:-1]
        assert environment == [b"GLIBC_TUNABLES=glibc.malloc.hugetlb=1"]
        job = asyncio.create_task(sb.run([], {"do": "kill_me_at", "mb": 64, "s": 30}))
        child = await asyncio.to_thread(busy_child, sb, 64)
        # A child is undumpable, so its /proc files are root's: the unprivileged rerun of
        # this suite (test_unprivileged) cannot read its mappings, and checks the rest.
        held = anon_huge_kb(child.pid) if os.geteuid() == 0 else None
        child.kill()
        (await job).close()
        assert (await sb.run([b"x"], JOB)).outputs == [b"x!"]     # the next job runs
    if held is None:
        return
    if thp_enabled() and host_collapses():
        assert held >= 32 * 1024, held        # most of the 64 MB
    elif not thp_enabled():
        assert held == 0


def test_collapse_keeps_memory_and_contents(tmp_path):
    """In a process of its own: a collapse grows its memory by little (only full regions)
    and every byte reads back unchanged."""
    import subprocess
    import sys
    code = (
        "import sys; sys.path.insert(0, '.')\n"
        "from sandbox import hugepages\n"
        "data = [bytes([i % 251]) * 1000 for i in range(20000)]\n"
        "before = hugepages_rss = int(next(l.split()[1] for l in open('/proc/self/smaps_rollup') if l.startswith('Rss:')))\n"
        "done = hugepages.collapse()\n"
        "after = int(next(l.split()[1] for l in open('/proc/self/smaps_rollup') if l.startswith('Rss:')))\n"
        "assert all(d == bytes([i % 251]) * 1000 for i, d in enumerate(data))\n"
        "print(done, before, after)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=50, check=True).stdout.split()
    collapsed, before_kb, after_kb = map(int, out)
    assert (collapsed > 0) == thp_enabled()
    assert after_kb - before_kb < max(before_kb // 10, 4096)
