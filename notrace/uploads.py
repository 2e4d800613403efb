"""Uploads: stream a request body straight into MemFiles, checking as the bytes arrive.

Runs in the server loop. Never `request.post()` (it spools big files to disk) and never
the whole body in one `bytes`: each `file` part goes chunk by chunk into its own memfd.
Before a byte of the body is read the request takes an admission ticket (503 `busy`
beyond the server's bounds, see notrace.admission); the size limit is enforced while
streaming (413 as soon as it is crossed, or up front from Content-Length), every byte is
covered by the ticket, the whole body has one deadline (408: a trickling client cannot
hold a slot), and running out of descriptors or memory while reading is a 503, never a
500. A file is refused from its first bytes (415) only when it is clearly another format
(an image, a ZIP archive) or empty; anything else that should be a PDF goes to the
parser in the sandbox, which recovers what it can. Filenames are never read.

Secret parameters (passwords) never come in the query string (400: URLs end up in
caches and logs); they come as text parts or, for raw bodies, in `X-Notrace-<Name>`
headers. The text parts' bytes are read into one buffer of ours that is zeroed once
decoded. What cannot be zeroed: the immutable `bytes` chunks aiohttp hands out (file
data and text parts alike), header values and the decoded `str` values.
"""
from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import errno
from typing import Awaitable, Callable, Mapping

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from notrace.admission import Admission, Ticket
from notrace.operations.spec import Operation
from notrace.problems import HttpProblem
from sandbox import MemFile
from notrace.operations.formats import NAMES, SNIFF_BYTES, sniff
from sandbox.layers.rlimits import MAX_JOB_FDS

__all__ = ["Upload", "read_upload", "sniff", "check_kind", "wrong_count", "takes_raw_pdf",
           "secret_header", "SNIFF_BYTES"]

_CHUNK = 256 * 1024
_MAX_FIELD_BYTES = 16 * 1024   # a text part (parameter value); Param.max_length is smaller
_MAX_FIELDS = 64
# errno values that mean "the server is out of a resource", not "the request is bad".
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC})


@dataclasses.dataclass
class Upload:
    """What a request brought: files in the order sent, raw parameter texts, byte count.

    The caller owns the MemFiles and must close() the Upload when the job is over.
    """

    files: list[MemFile] = dataclasses.field(default_factory=list)
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    size: int = 0
    ticket: Ticket | None = None  # the admission ticket, released by close()

    def close(self) -> None:
        for mem in self.files:
            mem.close()
        self.files.clear()
        if self.ticket is not None:
            self.ticket.release()

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

    def check_declared(self, declared: int | None) -> None:
        """413 from Content-Length alone, before a byte is read."""
        if declared is not None and declared > self.max_bytes:
            self.count(declared)

    def admit(self, admission: Admission, declared: int | None) -> None:
        """Take the admission ticket (503 beyond the bounds), before a byte is read."""
        self.upload.ticket = admission.admit(declared)

    def count(self, n: int) -> None:
        self.upload.size += n
        if self.upload.size > self.max_bytes:
            raise HttpProblem("upload-too-large",
                              f"The request body exceeds {self.max_bytes // (1 << 20)} MiB.")
        if self.upload.ticket is not None:
            self.upload.ticket.need(self.upload.size)

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
        if self.upload.ticket is not None:
            self.upload.ticket.add_file()
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
        # One buffer of fixed size (never grown, so no freed copy is left behind), zeroed
        # once decoded, whatever happens.
        data = bytearray(_MAX_FIELD_BYTES)
        used = 0
        try:
            while chunk := await part.read_chunk(_CHUNK):
                self.count(len(chunk))
                if used + len(chunk) > _MAX_FIELD_BYTES:
                    raise HttpProblem("bad-request", "A text part is too long.",
                                      extra={"param": _safe_name(name)})
                data[used:used + len(chunk)] = chunk
                used += len(chunk)
            try:
                value = str(memoryview(data)[:used], "utf-8")  # no bytes copy made
            except UnicodeDecodeError:
                raise HttpProblem("bad-request", "A text part is not UTF-8.",
                                  extra={"param": _safe_name(name)}) from None
        finally:
            wipe(data)
        self.add_param(name, value)

    def add_param(self, name: str, value: str) -> None:
        if name in self.upload.params:
            raise HttpProblem("bad-request", "A parameter is given twice.",
                              extra={"param": _safe_name(name)})
        if len(self.upload.params) >= _MAX_FIELDS:
            raise HttpProblem("bad-request", f"More than {_MAX_FIELDS} parameters.")
        self.upload.params[name] = value

    async def raw_pdf(self, request: web.Request) -> None:
        await self.add_file(request.content.readany)

    def set_params(self, query: Mapping[str, str], headers: Mapping[str, str]) -> None:
        """Parameters from the query string (no secrets there) and secrets from their
        headers."""
        secrets = [p.name for p in self.op.params if p.secret]
        for name, value in query.items():
            if name in secrets:
                raise HttpProblem(
                    "bad-parameter", f"'{name}' is a secret and query strings are kept in "
                    f"caches and logs: send it in the {secret_header(name)} header (raw "
                    "body) or as a text part (multipart/form-data).", extra={"param": name})
            self.add_param(name, value)
        for name in secrets:
            value = headers.get(secret_header(name))
            if value is not None:
                self.add_param(name, value)

    def check_kind(self, mem: MemFile) -> None:
        check_kind(self.op, mem.read(0, min(mem.size, SNIFF_BYTES)))


def check_kind(op: Operation, head: bytes) -> None:
    """Raise the 415 problem unless `head` (a file's first bytes) may be a type `op`
    takes. For PDFs only clear cases are refused (another format, or nothing at all):
    a PDF with junk before its header, or none, is for the parser to judge."""
    kind = sniff(head)
    accepted = op.inputs.media_types
    if kind in accepted:
        return
    if "application/pdf" in accepted:
        if not head:
            raise HttpProblem("not-a-pdf", "A file is empty.")
        if kind is None:
            return
        if accepted == ("application/pdf",):
            raise HttpProblem("not-a-pdf", f"A file is {NAMES[kind]}, not a PDF.")
    raise HttpProblem("unsupported-image", "A file is not of a type this operation "
                      f"takes ({', '.join(accepted)}).")


def secret_header(name: str) -> str:
    """The header that carries secret parameter `name`: password -> X-Notrace-Password."""
    return "X-Notrace-" + "-".join(word.capitalize() for word in name.split("_"))


def wipe(buffer: bytearray) -> None:
    """Overwrite a buffer of ours with zeros, in place (no copy is made)."""
    if buffer:
        ctypes.memset((ctypes.c_char * len(buffer)).from_buffer(buffer), 0, len(buffer))


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
                      timeout_s: float, admission: Admission) -> Upload:
    """The files and parameters of `request` for `op`, or an HttpProblem.

    The returned Upload holds an admission ticket until it is closed. On any failure every
    MemFile made so far is closed and the ticket released before raising.
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
    # Parameters may come in the query string (the raw form's way), secret ones in headers,
    # or as text parts (multipart); a name given twice is refused.
    reader.set_params(request.query, request.headers)
    reader.check_declared(request.content_length)
    try:
        reader.admit(admission, request.content_length)
        async with asyncio.timeout(timeout_s):
            if content_type == "multipart/form-data":
                await reader.multipart(request)
            else:
                await reader.raw_pdf(request)
    except TimeoutError:
        reader.upload.close()
        raise HttpProblem("upload-timeout", "The request body did not arrive within "
                          f"{timeout_s:g} seconds.") from None
    # RequestPayloadError: a body that is not in its declared Content-Encoding (aiohttp
    # inflates gzip/deflate bodies as they arrive); a plain Exception, not a ValueError.
    except (ValueError, AssertionError, HttpProcessingError, RequestPayloadError,
            ConnectionError, asyncio.IncompleteReadError):
        reader.upload.close()
        # aiohttp's parsing errors and a client that went away: no message of theirs
        # is echoed (it may quote the body).
        raise HttpProblem("bad-request", "The request body is malformed or ended early.") \
            from None
    except OSError as exc:
        reader.upload.close()
        if exc.errno not in _OUT_OF_RESOURCES:
            raise
        # memfd_create or a write into a memfd: the server is short, the client is fine.
        raise HttpProblem("busy", "The server is out of file descriptors or memory for "
                          "uploads; retry after Retry-After seconds.") from None
    except BaseException:
        reader.upload.close()
        raise
    if len(reader.upload.files) < op.inputs.min:
        reader.upload.close()
        raise wrong_count(op)
    return reader.upload
