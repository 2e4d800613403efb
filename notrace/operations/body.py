"""The final answer of a job, built in the CHILD: its body and the small manifest.

The child already holds every part, so it builds what the client receives (one PDF, a
zip of the parts, a JSON document) and the server only checks the manifest and streams
the body: no zip and no copy of a big body in the server loop. Every PDF about to be
answered (each zip member too) is reopened first: one nobody can open is a "malformed"
problem, never a 2xx.

Manifest: {"media_type", "filename" (None for JSON), "report", "files": N}.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
import zlib

import pikepdf

from notrace.operations._common import JSON, OUR_BUGS, PDF, Output, OutputFile
from notrace.operations.problems import Problem
from notrace.operations.spec import Operation

__all__ = ["ZIP", "check_pdfs", "final_answer", "safe_filename"]

ZIP = "application/zip"
# Fixed timestamp for zip entries: results carry no trace of when they were made.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: Parts already compressed: stored as they are (deflating them again costs CPU, saves 0).
_STORED = ("image/jpeg", "image/png")
#: Parts over _SAMPLE_FROM bytes are deflated only if samples of them compress.
_SAMPLE_FROM = 1 << 20
#: Three samples of this size. 4 KB tell compressible from not as 16 and 64 KB did (ratios
#: at level 1 on 3 samples: JPEG-image PDF 0.985, its whole 0.997; uncompressed text
#: streams 0.062, whole 0.074), and deflate's cost is not linear in the sample: 3 x 4 KB
#: of JPEG take 0.09 ms against 0.81 for 3 x 16 KB (and 9.6 ms a part for 3 x 64 KB): a
#: 10-part split of the 10 MB image document spent 17 of its 139 ms sampling (cProfile in
#: a child forked like the sandbox's, 2026-12-01).
_SAMPLE = 4 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
UNREADABLE_DETAIL = "the result could not be written as a readable PDF"


def check_pdfs(output: Output, password: str | None) -> None:
    """Reopen every PDF of `output` (with the job's password: encrypt's result needs it)
    and count its pages; raise Problem("malformed") for one that does not open or has no
    page. (qpdf may still warn on reopening, e.g. a page without a MediaBox copied as it
    was: what it repairs there, readers repair too.)"""
    for part in output.files:
        if part.media_type == PDF:
            _check_pdf(part.data, password)


def _check_pdf(data: bytes, password: str | None) -> None:
    try:
        with pikepdf.open(io.BytesIO(data), password=password or "") as pdf:
            pages = len(pdf.pages)
    except (MemoryError, *OUR_BUGS):
        raise
    except Exception:  # noqa: BLE001  our own output does not open: not a 2xx
        raise Problem("malformed", UNREADABLE_DETAIL) from None
    if pages == 0:
        raise Problem("malformed", UNREADABLE_DETAIL)


def final_answer(op: Operation, output: Output) -> tuple[dict, bytes | memoryview]:
    """(manifest, body) for a finished operation. Consumes output.files (each part is
    released as soon as it is in the zip). Raises ValueError for an operation that
    answered no document: our bug, so the job ends as an error."""
    report = output.report or {}
    files = output.files
    count = len(files)
    as_zip = op.output == "archive" or output.archive or count > 1
    if op.output == "json" or op.output == "json_or_archive" and not as_zip:
        body = files[0].data if files else json.dumps(report, ensure_ascii=True).encode()
        return _manifest(JSON, None, report, count), body
    if not files and not as_zip:  # an archive may be empty (no images found)
        raise ValueError(f"{op.name} answered no document")
    if as_zip:
        return _manifest(ZIP, f"{op.name}.zip", report, count), _zip(files)
    part = files.pop()
    return _manifest(part.media_type, safe_filename(part.name), report, 1), part.data


def _manifest(media_type: str, filename: str | None, report: dict, files: int) -> dict:
    return {"media_type": media_type, "filename": filename, "report": report, "files": files}


def safe_filename(name: str) -> str:
    """ASCII letters, digits, dot, dash and underscore only; never a path (spec's
    SAFE_FILENAME, which the server checks)."""
    cleaned = _UNSAFE.sub("_", name.rsplit("/", 1)[-1]).strip("._-")[:100]
    return cleaned or "result"


def _compressible(data: bytes) -> bool:
    """Whether deflating `data` is worth it, judged on samples of a big part: a PDF that is
    mostly one compressed image would cost a second per 40 MB to deflate for nothing."""
    if len(data) <= _SAMPLE_FROM:
        return True
    view = memoryview(data)
    sample = b"".join(view[at:at + _SAMPLE] for at in
                      (len(data) // 4, len(data) // 2, len(data) * 3 // 4))
    return len(zlib.compress(sample, 1)) < 0.95 * len(sample)


def _zip(files: list[OutputFile]) -> memoryview:
    """A deterministic zip built in memory (fixed timestamps, names in order, duplicate
    names suffixed -2, -3...): images and incompressible parts stored, the rest deflated
    at level 1."""
    buffer = io.BytesIO()
    seen: set[str] = set()
    files.reverse()
    with zipfile.ZipFile(buffer, "w") as zf:
        while files:
            part = files.pop()  # the zip holds its bytes now: let the part go
            name = safe_filename(part.name)
            unique, n = name, 1
            while unique in seen:
                n += 1
                stem, dot, ext = name.rpartition(".")
                unique = f"{stem}-{n}.{ext}" if dot else f"{name}-{n}"
            seen.add(unique)
            info = zipfile.ZipInfo(unique, date_time=_ZIP_TIME)
            stored = part.media_type in _STORED or not _compressible(part.data)
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            zf.writestr(info, part.data, compresslevel=None if stored else 1)
    return buffer.getbuffer()
