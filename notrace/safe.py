"""`safe` (issue 9): Dangerzone's two-phase conversion as a series of sandbox jobs. Runs in
the SERVER loop (routes.py) and in the CLI (cli.py): both drive the one generator `jobs`,
the route with `await sandbox.run`, the CLI with `sandbox.run_sync`.

Per batch of pages (operations/safe.py has the children's side):
1. phase 1: a child opens the document and draws pages from `first` on into a pixel
   stream (operations/pixelstream.py), as many as fit half the output limit;
2. here, between the phases: the stream is checked by its headers only (pread, never the
   pixels), every count and size bounded before anything is allocated for it; any
   violation is that child's crash (a 422 processing-crashed, never a 5xx);
3. phase 2: a fresh child that never saw the document gets the SAME memfd as its input
   (passed on, never copied) and the geometry checked in 2 as its params, never the
   stream's own headers, and builds that batch's PDF from the pixels alone.
Each batch's PDF (small: Flate images) is copied into a memfd of its own size and the
batches' PDFs are joined by a merge child (at most MAX_JOB_FDS - 1 at once, folded when
there are more), which never sees the document either. It joins even one batch: phase 2
maps the memfd phase 1 wrote whole, so a phase-2 child may be the exploit's too, and
the merge makes every page anew from its box and its image's data (and OCR's words):
no action, annotation, catalog entry, font program, filter or drawing of a phase-2
child reaches the answer (red team: one batch was answered as phase 2 made it): no byte a child made is parsed outside a child, and the server
holds one batch's pixels at a time. Memory therefore does not grow with the page count
anywhere: each child holds one batch; the server holds a batch's pixels plus the small
PDFs made so far.

The memfd handed on is the job's output memfd: the fork server sealed its size (grow,
shrink) and its seals, so it cannot be sealed against writes like an upload. That is
enough here: its size cannot change, so the checked geometry stays inside it, and phase 2
reads nothing but pixels at those places; a late write by a dying phase-1 child could
only change pixels.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import time
import weakref
from typing import Callable, Generator

from notrace.jobs import manifest_limit, pixel_limits, sandbox_limits
from notrace.operations import pixelstream
from notrace.operations.raster import PixelLimits
from notrace.operations.safe import batch_bytes, batch_full, batch_pages, report
from notrace.settings import Settings
from sandbox import Limits, MemFile, Result
from sandbox.layers.rlimits import MAX_JOB_FDS
from sandbox.result import Stats

__all__ = ["NAME", "Job", "jobs", "run", "run_sync", "drive", "HandedOn", "MAX_MERGE_INPUTS"]

NAME = "safe"
#: PDFs one merge job joins (a job takes at most MAX_JOB_FDS inputs).
MAX_MERGE_INPUTS = MAX_JOB_FDS - 1
_SIZE_SEALS = fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK

#: One job to run: (inputs, params, limits or None for the sandbox's own).
Job = tuple[list, dict, Limits | None]


class HandedOn(MemFile):
    """A job's output memfd as the next job's input (a dup of its descriptor: the Result
    keeps its own). Sealing it against writes is not possible (see the module doc);
    seal() requires what matters instead: a size nobody can change."""

    def seal(self) -> None:
        seals = fcntl.fcntl(self.fileno(), fcntl.F_GET_SEALS)
        if not seals & fcntl.F_SEAL_SEAL:
            super().seal()
        elif seals & _SIZE_SEALS != _SIZE_SEALS:
            raise PermissionError("a memfd whose size is not sealed")


@dataclasses.dataclass
class _Costs:
    """The children's usage summed over the job (its Result's stats)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0

    def add(self, result: Result) -> None:
        self.wall_s += result.stats.wall_s
        self.cpu_s += result.stats.cpu_s
        self.max_rss_mb = max(self.max_rss_mb, result.stats.max_rss_mb)

    def onto(self, result: Result) -> Result:
        return dataclasses.replace(result, stats=Stats(self.wall_s, self.cpu_s,
                                                       self.max_rss_mb))


def _answered(result: Result) -> bool:
    """A phase that produced its data ([manifest, data]); anything else (a problem, a
    limit, a crash) is the whole job's answer, which jobs.interpret maps."""
    return result.status == "ok" and len(result.outputs) == 2


def jobs(document: MemFile, validated: dict,
         settings: Settings) -> Generator[Job, Result, Result]:
    """The jobs of one safe conversion: yields each Job, is sent its Result, and returns
    the final Result (a PDF answer for jobs.interpret, or why not). Every Result it was
    sent is closed or returned."""
    limits = pixel_limits(settings)
    budget, most = batch_bytes(settings.child_output_mb, settings.child_memory_mb)
    base = {"params": validated, "max_pages": settings.max_pages}
    # Phase 2 and the merge never open the document: they are not told its password (one
    # reached through its pixels could write it into the answer the user trusts).
    blind = {**base, "params": {k: v for k, v in validated.items() if k != "password"}}
    costs, pdfs = _Costs(), []
    first, document_pages, batches, previous = 0, None, 0, None
    clock = _Deadline(settings)
    try:
        while True:
            if clock.passed():
                return costs.onto(clock.result())
            drawn = yield ([document], {**base, "operation": "safe-pixels", "first": first,
                                        "budget": budget, "most": most,
                                        "pixel_limits": limits.to_dict()}, clock.limits())
            costs.add(drawn)
            if not _answered(drawn):
                return costs.onto(drawn)
            with drawn:
                try:
                    batch = _check(drawn, first, document_pages, validated["dpi"], limits,
                                   settings.max_pages)
                    _check_full(previous, batch, budget, batch_pages(validated))
                except pixelstream.StreamError as exc:
                    return costs.onto(Result("crashed", reason=f"phase 1 sent an invalid "
                                             f"pixel stream: {exc}"))
                batches += 1
                last = batch.end == batch.document_pages
                answer = report(validated, batch.document_pages, batches) if last else None
                start, length = drawn.outputs.span(1)
                previous = (length, len(batch.pages))
                if clock.passed():
                    return costs.onto(clock.result())
                with HandedOn(fd=os.dup(drawn.outputs.fileno())) as pixels:
                    built = yield ([pixels], {**blind, "operation": "safe-build",
                                              "pages": [p.to_list(start) for p in batch.pages],
                                              "report": None}, clock.limits())
            costs.add(built)
            if not _answered(built):
                return costs.onto(built)
            pdfs.append(_body_copy(built))
            if _held(pdfs) > settings.child_output_mb << 20:
                return costs.onto(Result("output_too_large", reason="the batches' PDFs "
                                         "already exceed what the answer may hold"))
            if len(pdfs) == MAX_MERGE_INPUTS or last:
                if clock.passed():
                    return costs.onto(clock.result())
                merged = yield (pdfs, {**blind, "operation": "safe-merge",
                                       "report": answer}, clock.limits())
                costs.add(merged)
                _close(pdfs)
                if not _answered(merged):
                    return costs.onto(merged)
                if last:
                    return costs.onto(_reporting(merged, answer, settings.max_pages))
                pdfs.append(_body_copy(merged))
            first, document_pages = batch.end, batch.document_pages
    finally:
        _close(pdfs)


class _Deadline:
    """NOTRACE_SAFE_WALL_S for the whole conversion: each job gets the child's wall limit
    or what is left of the conversion's, whichever is less (a phase-1 child that sleeps
    to its limit in every batch would otherwise hold a conversion slot for
    batches x phases x NOTRACE_CHILD_WALL_S)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._end = time.monotonic() + settings.safe_wall_s

    def passed(self) -> bool:
        return time.monotonic() >= self._end

    def limits(self) -> Limits | None:
        left = self._end - time.monotonic()
        if left >= self._settings.child_wall_s:
            return None                        # the sandbox's own limits
        return dataclasses.replace(sandbox_limits(self._settings), wall_s=max(left, 0.001))

    @staticmethod
    def result() -> Result:
        return Result("timeout", reason="the conversion took longer than NOTRACE_SAFE_WALL_S")


def _check_full(previous: tuple[int, int] | None, batch: pixelstream.Batch, budget: int,
                most_pages: int) -> None:
    """StreamError unless the batch before (previous: its stream's bytes and pages) was
    full by the rule phase 1 packs by (operations/safe.batch_full). Otherwise a lying
    phase 1 could send a page a batch, and one request would cost two children a page
    (each allowed its whole wall limit)."""
    if previous is None:
        return
    length, pages = previous
    if not batch_full(length, pages, pixelstream.PAGE_HEADER.size + batch.pages[0].size,
                      budget, most_pages):
        raise pixelstream.StreamError("a batch before this one stopped short of the budget")


#: Bytes a part's own catalog, page tree, information and trailer take, which the merge
#: writes once for all: what the batches' PDFs may exceed the output limit by.
_PART_OVERHEAD = 4096


def _held(pdfs: list[MemFile]) -> int:
    """What the merge of these PDFs would answer at least: each part's pages are copied
    as they are (images not recompressed). Checked as each one comes, so the server holds
    at most the output limit's worth of them, not 62 batches' (pixels that do not
    compress, or a phase 2 gone wrong, make a batch's PDF as big as the output limit)."""
    return sum(f.size for f in pdfs) - _PART_OVERHEAD * len(pdfs)


def _reporting(result: Result, expected: dict, max_pages: int) -> Result:
    """The final Result if its child's manifest carries exactly the report the server
    gave it (the report is the server's to make: what a merge child reached through a
    phase-2 PDF would say is not), else that job crashed."""
    try:
        if result.outputs.span(0)[1] > manifest_limit(max_pages):
            raise ValueError("a manifest too large")
        manifest = json.loads(result.outputs[0])
        if not isinstance(manifest, dict) or manifest.get("report") != expected:
            raise ValueError("not the server's report")
    except (ValueError, RecursionError):
        result.close()
        return Result("crashed", reason="the merge did not answer the server's report")
    return result


def _check(result: Result, first: int, document_pages: int | None, dpi: int,
           limits: PixelLimits, max_pages: int) -> pixelstream.Batch:
    """The stream of phase 1's data output (its span was checked against the memfd by
    the sandbox), checked by its headers."""
    fd = result.outputs.fileno()
    start, length = result.outputs.span(1)
    return pixelstream.check(lambda size, at: os.pread(fd, size, start + at), length,
                             first=first, document_pages=document_pages, dpi=dpi,
                             limits=limits, max_pages=max_pages)


def _body_copy(result: Result) -> MemFile:
    """A phase's PDF copied (in the kernel) into a memfd of its own size, the Result
    closed: a merge child maps each input whole, and an output memfd is sized for the
    largest output a job may make."""
    with result:
        start, length = result.outputs.span(1)
        copy = MemFile("safe-batch")
        try:
            copy.truncate(length)
            done = 0
            while done < length:
                moved = os.copy_file_range(result.outputs.fileno(), copy.fileno(),
                                           length - done, start + done, done)
                if moved <= 0:
                    raise OSError("the output memfd ended before its span")
                done += moved
            copy.seal()
        except BaseException:
            copy.close()
            raise
        return copy


def _close(files: list[MemFile]) -> None:
    while files:
        files.pop().close()


async def run(sandbox, files: list[MemFile], validated: dict, settings: Settings) -> Result:
    """The final Result of safe on files[0], its jobs run by `sandbox` (the server loop).

    At most sandbox.workers conversions run at once, the others wait here holding only
    their upload (counted by admission control): a conversion holds a batch's pixels
    (up to half the output limit) between its phases, and a phase 2 may wait in the
    sandbox's queue, so without this bound a burst of requests would hold a batch each.
    A request cancelled meanwhile closes the flow: its memfds go at once."""
    async with _conversions(sandbox):
        with contextlib.closing(jobs(files[0], validated, settings)) as flow:
            step = _advance(flow, None)
            while not isinstance(step, Result):
                step = _advance(flow, await sandbox.run(*step))
            return step


#: sandbox -> the semaphore of its conversions (run()); made in the loop that uses it.
_CONVERSIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _conversions(sandbox) -> asyncio.Semaphore:
    slots = _CONVERSIONS.get(sandbox)
    if slots is None:
        slots = _CONVERSIONS[sandbox] = asyncio.Semaphore(sandbox.workers)
    return slots


def run_sync(sandbox, files: list[MemFile], validated: dict, settings: Settings) -> Result:
    """run()'s blocking twin for the CLI (Sandbox.run_sync)."""
    return drive(jobs(files[0], validated, settings), sandbox.run_sync)


def drive(flow: Generator[Job, Result, Result], run_job: Callable[..., Result]) -> Result:
    """Run a flow's jobs one by one with a blocking `run_job(inputs, params, limits)`."""
    with contextlib.closing(flow):
        step = _advance(flow, None)
        while not isinstance(step, Result):
            step = _advance(flow, run_job(*step))
        return step


def _advance(flow: Generator[Job, Result, Result], result: Result | None) -> Job | Result:
    """The flow's next Job, given the last one's Result; or its final Result."""
    try:
        return flow.send(result)
    except StopIteration as done:
        return done.value
