"""Uploads: stream a request body straight into MemFiles, checking as the bytes arrive.

Runs in the server loop. Never `request.post()` (it spools big files to disk) and never
the whole body in one `bytes`: each `file` part goes chunk by chunk into its own memfd.
The size limit is enforced while streaming (413 as soon as it is crossed), the whole
body has one deadline (408: a trickling client cannot hold a slot), and each file's kind
is decided from its first bytes (415), not from anything the client claims. Filenames
are never read.
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Awaitable, Callable, Mapping

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from notrace.operations.spec import Operation
from notrace.problems import HttpProblem
from sandbox import MemFile
from sandbox.layers.rlimits import MAX_JOB_FDS

__all__ = ["Upload", "read_upload", "sniff", "check_kind", "wrong_count", "takes_raw_pdf",
           "SNIFF_BYTES"]

#: `%PDF-` must appear within this many leading bytes (as PDF readers accept).
SNIFF_BYTES = 1024
_CHUNK = 256 * 1024
_MAX_FIELD_BYTES = 16 * 1024   # a text part (parameter value); Param.max_length is smaller
_MAX_FIELDS = 64

# Leading bytes of the image types an operation may declare in Inputs.media_types.
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def sniff(head: bytes) -> str | None:
    """The media type of a file from its first SNIFF_BYTES bytes, or None if unknown."""
    for magic, media_type in _IMAGE_MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:12].startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if b"%PDF-" in head[:SNIFF_BYTES]:
        return "application/pdf"
    return None


@dataclasses.dataclass
class Upload:
    """What a request brought: files in the order sent, raw parameter texts, byte count.

    The caller owns the MemFiles and must close() the Upload when the job is over.
    """

    files: list[MemFile] = dataclasses.field(default_factory=list)
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    size: int = 0

    def close(self) -> None:
        for mem in self.files:
            mem.close()
        self.files.clear()

    def __enter__(self) -> "Upload":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Reader:
    """Reads one request into an Upload for one operation, under one byte budget."""

    def __init__(self, op: Operation, max_bytes: int) -> None:
        self.op = op
        self.max_bytes = max_bytes
        self.upload = Upload()

    def count(self, n: int) -> None:
        self.upload.size += n
        if self.upload.size > self.max_bytes:
            raise HttpProblem("upload-too-large",
                              f"The request body exceeds {self.max_bytes // (1 << 20)} MiB.")

    async def multipart(self, request: web.Request) -> None:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                return
            if isinstance(part, MultipartReader):
                raise HttpProblem("bad-request", "Nested multipart bodies are not accepted.")
            if part.name == "file":
                await self.file_part(part)
            elif part.name:
                await self.field_part(part)
            else:
                raise HttpProblem("bad-request", "Every part needs a name.")

    async def file_part(self, part: BodyPartReader) -> None:
        if len(self.upload.files) >= max_files(self.op):
            raise wrong_count(self.op)
        await self.add_file(lambda: part.read_chunk(_CHUNK))

    async def add_file(self, read: Callable[[], Awaitable[bytes]]) -> None:
        """Stream `read()`'s chunks (b"" at the end) into a new MemFile of the upload,
        counting every byte and checking the file's kind as soon as SNIFF_BYTES are in
        (or at its end, if shorter)."""
        mem = MemFile("upload")
        self.upload.files.append(mem)  # appended first, so close() always releases it
        checked = False
        while chunk := await read():
            self.count(len(chunk))
            mem.write(chunk)
            if not checked and mem.size >= SNIFF_BYTES:
                self.check_kind(mem)
                checked = True
        if not checked:
            self.check_kind(mem)

    async def field_part(self, part: BodyPartReader) -> None:
        name = part.name or ""
        data = bytearray()
        while chunk := await part.read_chunk(_CHUNK):
            self.count(len(chunk))
            data += chunk
            if len(data) > _MAX_FIELD_BYTES:
                raise HttpProblem("bad-request", "A text part is too long.",
                                  extra={"param": _safe_name(name)})
        try:
            self.add_param(name, data.decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpProblem("bad-request", "A text part is not UTF-8.",
                              extra={"param": _safe_name(name)}) from None

    def add_param(self, name: str, value: str) -> None:
        if name in self.upload.params:
            raise HttpProblem("bad-request", "A parameter is given twice.",
                              extra={"param": _safe_name(name)})
        if len(self.upload.params) >= _MAX_FIELDS:
            raise HttpProblem("bad-request", f"More than {_MAX_FIELDS} parameters.")
        self.upload.params[name] = value

    async def raw_pdf(self, request: web.Request) -> None:
        declared = request.content_length
        if declared is not None and declared > self.max_bytes:
            self.count(declared)  # refused before reading a byte
        await self.add_file(request.content.readany)

    def set_params(self, query: Mapping[str, str]) -> None:
        for name, value in query.items():
            self.add_param(name, value)

    def check_kind(self, mem: MemFile) -> None:
        check_kind(self.op, mem.read(0, min(mem.size, SNIFF_BYTES)))


def check_kind(op: Operation, head: bytes) -> None:
    """Raise the 415 problem unless `head` (a file's first bytes) is a type `op` takes."""
    kind = sniff(head)
    accepted = op.inputs.media_types
    if kind in accepted:
        return
    if accepted == ("application/pdf",):
        raise HttpProblem("not-a-pdf", "A file does not start like a PDF "
                          "(no %PDF- in its first 1024 bytes).")
    raise HttpProblem("unsupported-image", "A file is not of a type this operation "
                      f"takes ({', '.join(accepted)}).")


def max_files(op: Operation) -> int:
    """The most files one job may take: the declaration's, within what the sandbox can
    hand a child (descriptors per job)."""
    return min(op.inputs.max, MAX_JOB_FDS)


def wrong_count(op: Operation) -> HttpProblem:
    inputs = op.inputs
    wanted = (f"exactly {inputs.min}" if inputs.min == max_files(op)
              else f"{inputs.min} to {max_files(op)}")
    return HttpProblem("wrong-file-count", f"This operation takes {wanted} parts named 'file'.")


def _safe_name(name: str) -> str:
    """A parameter name the client sent, fit to echo (names are not secrets; values are)."""
    name = "".join(c for c in name if c.isprintable())
    return name if len(name) <= 64 else name[:61] + "..."


def takes_raw_pdf(op: Operation) -> bool:
    """Single-input PDF operations also take a raw application/pdf body."""
    return op.inputs.max == 1 and "application/pdf" in op.inputs.media_types


async def read_upload(request: web.Request, op: Operation, *, max_bytes: int,
                      timeout_s: float) -> Upload:
    """The files and parameters of `request` for `op`, or an HttpProblem.

    On any failure every MemFile made so far is closed before raising.
    """
    content_type = request.content_type
    if content_type == "multipart/form-data":
        pass
    elif content_type == "application/pdf" and takes_raw_pdf(op):
        pass
    else:
        forms = "multipart/form-data" + (" or application/pdf" if takes_raw_pdf(op) else "")
        raise HttpProblem("unsupported-media-type", f"This operation takes {forms}.")
    reader = _Reader(op, max_bytes)
    # Parameters may come in the query string (the raw form's only way) or as text parts
    # (multipart); a name given in both is refused as given twice.
    reader.set_params(request.query)
    try:
        async with asyncio.timeout(timeout_s):
            if content_type == "multipart/form-data":
                await reader.multipart(request)
            else:
                await reader.raw_pdf(request)
    except TimeoutError:
        reader.upload.close()
        raise HttpProblem("upload-timeout", "The request body did not arrive within "
                          f"{timeout_s:g} seconds.") from None
    except (ValueError, AssertionError, HttpProcessingError, ConnectionError,
            asyncio.IncompleteReadError):
        reader.upload.close()
        # aiohttp's parsing errors and a client that went away: no message of theirs
        # is echoed (it may quote the body).
        raise HttpProblem("bad-request", "The request body is malformed or ended early.") \
            from None
    except BaseException:
        reader.upload.close()
        raise
    if len(reader.upload.files) < op.inputs.min:
        reader.upload.close()
        raise wrong_count(op)
    return reader.upload
