"""Jobs: what the sandbox is asked to do for one request, and what its Result means.

Runs in the server loop (and in the CLI, through Sandbox.run_sync): the HTTP handler and
`notrace run` share this module, so both answer the same bytes and the same problems.
The child builds the final body itself (operations/body.py) and answers
`[manifest, body]`; everything it hands back is untrusted until checked here: the
manifest must be a small JSON object (its bound grows with max_pages, never a fixed cap a
legitimate job can reach) naming a media type the operation declares. The body is never
read here: it stays in the job's output memfd and is streamed from there in chunks
(Body.chunks), so a big answer costs the server neither its size in memory nor a zip.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Iterator

from notrace.operations.raster import PIXEL_OPERATIONS, PixelLimits
from notrace.operations.registry import OPERATIONS
from notrace.operations.spec import OUTPUT_MEDIA_TYPES, SAFE_FILENAME, Operation
from notrace.problems import for_child_code, for_sandbox_status
from notrace.settings import Settings
from sandbox import Limits, Result

__all__ = ["ENTRY", "CHUNK_BYTES", "Answer", "Body", "BadManifest", "job_params", "pixel_limits",
           "manifest_limit", "sandbox_limits", "interpret", "report_header", "report_text"]

#: The one in-child entry that runs every operation.
ENTRY = "notrace.operations.child:run"
#: Bytes of one read of a body from its memfd (and one write to the socket or file).
CHUNK_BYTES = 256 * 1024
_MANIFEST_BASE_BYTES = 64 * 1024
# The largest report grows with the pages: split's lists each page of each part once,
# and the parts together hold at most max_pages pages (a number and a comma: < 16 bytes).
_MANIFEST_BYTES_PER_PAGE = 16
_MANIFEST_KEYS = {"media_type", "filename", "report", "files"}
_FILENAME = re.compile(SAFE_FILENAME)
_MAX_STEPS = 64  # more than a pipeline has (notrace.pipeline.MAX_STEPS): a bound only


class BadManifest(Exception):
    """The child answered "ok" with outputs that do not fit the contract: a child gone
    wrong (a bug, or attacker code); answered as a crashed job, never from its bytes."""


class Body:
    """A result's body where the child left it: a span of the job's output memfd.

    Owns the Result: close() releases the memfd (idempotent). Read it with chunks(),
    never whole."""

    def __init__(self, result: Result, index: int) -> None:
        self._result = result
        self._fd = result.outputs.fileno()
        self._offset, self.size = result.outputs.span(index)

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        offset, end = self._offset, self._offset + self.size
        while offset < end:
            chunk = os.pread(self._fd, min(size, end - offset), offset)
            if not chunk:  # the span was checked against the memfd size: cannot happen
                raise OSError("the output memfd ended before its span")
            offset += len(chunk)
            yield chunk

    def read(self) -> bytes:
        """The whole body (tests and small JSON only)."""
        return b"".join(self.chunks())

    def close(self) -> None:
        self._result.close()


@dataclasses.dataclass(frozen=True)
class Answer:
    """A successful result, ready to send: body (in the memfd), its media type, a
    download name, the operation's report (a small JSON object, e.g. what sanitize
    removed) and how many files the child made (zip members, or 1)."""

    body: Body
    media_type: str
    filename: str | None
    report: dict
    files: int

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> "Answer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sandbox_limits(settings: Settings) -> Limits:
    return Limits(memory_mb=settings.child_memory_mb, cpu_s=settings.child_cpu_s,
                  wall_s=settings.child_wall_s, output_mb=settings.child_output_mb)


def pixel_limits(settings: Settings) -> PixelLimits:
    return PixelLimits(page_pixels=settings.max_page_pixels, pages=settings.max_pixel_pages)


def job_params(op: Operation, validated: dict, settings: Settings) -> dict:
    """The params dict the child entry receives (the operations that draw pages also get
    the pixel limits: child.run hands them over as `pixel_limits`)."""
    params = {"operation": op.name, "params": validated, "max_pages": settings.max_pages}
    if op.name in PIXEL_OPERATIONS:
        params["pixel_limits"] = pixel_limits(settings).to_dict()
    return params


def manifest_limit(max_pages: int) -> int:
    """Largest manifest accepted from a child (bytes), for jobs under `max_pages`."""
    return _MANIFEST_BASE_BYTES + _MANIFEST_BYTES_PER_PAGE * max_pages


def interpret(op: Operation, result: Result, *, max_pages: int) -> Answer:
    """The Answer for an ok Result (it then owns the Result: close the Answer when sent),
    else close the Result and raise the HttpProblem it means.

    Raises BadManifest when a child answered ok with outputs that do not fit.
    """
    try:
        if result.status != "ok":
            raise for_sandbox_status(result.status)
        manifest = _manifest(result, manifest_limit(max_pages))
        if "problem" in manifest:
            problem = for_child_code(manifest.get("problem"), manifest.get("detail"))
            problem.extra.update(_failed_step(manifest))
            raise problem
        return _answer(op, manifest, result)
    except BaseException:
        result.close()
        raise


def _manifest(result: Result, limit: int) -> dict:
    outputs = result.outputs
    if not 1 <= len(outputs) <= 2 or outputs.span(0)[1] > limit:
        raise BadManifest("not one manifest and at most one body, or a manifest too large")
    try:
        manifest = json.loads(outputs[0])
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadManifest("the manifest is not JSON (or nested too deep)") from None
    if not isinstance(manifest, dict):
        raise BadManifest("the manifest is not a JSON object")
    return manifest


def _failed_step(manifest: dict) -> dict:
    """A pipeline's failing step, as the problem's `step` (index) and `operation`
    members: kept only when they are what a step can be (untrusted child bytes)."""
    step, name = manifest.get("step"), manifest.get("operation")
    if type(step) is int and 0 <= step < _MAX_STEPS and isinstance(name, str) \
            and name in OPERATIONS:
        return {"step": step, "operation": name}
    return {}


def _answer(op: Operation, manifest: dict, result: Result) -> Answer:
    media_type, filename = manifest.get("media_type"), manifest.get("filename")
    report, files = manifest.get("report"), manifest.get("files")
    if set(manifest) != _MANIFEST_KEYS or len(result.outputs) != 2:
        raise BadManifest("the manifest does not have exactly its four keys and a body")
    if media_type not in OUTPUT_MEDIA_TYPES[op.output]:
        raise BadManifest(f"media type not declared by {op.name}")
    if media_type == "application/json":
        if filename is not None:
            raise BadManifest("a JSON answer with a download name")
    elif not (isinstance(filename, str) and _FILENAME.fullmatch(filename)):
        raise BadManifest("a download name that is not one of ours")
    if not isinstance(report, dict) or type(files) is not int or files < 0:
        raise BadManifest("the report is not an object, or the file count not a count")
    return Answer(Body(result, 1), media_type, filename, report, files)


def report_text(report) -> str:
    """A report (or part of one) as the header writes it: compact ASCII JSON."""
    return json.dumps(report, ensure_ascii=True, separators=(",", ":"))


def report_header(report: dict, limit: int = 4096) -> str | None:
    """The report as one header value (ASCII JSON: no CR/LF possible), None if too big."""
    text = report_text(report)
    return text if len(text) <= limit else None
