"""RFC 9457 problem details: the one table of failure types the service answers.

Runs in the server loop (and the CLI, which prints the same titles). Each type is a
relative URI `/problems/<slug>`, served by the service itself as documentation
(GET /problems/<slug>) and listed in the README. A `detail` is always our own wording:
never a stack trace, path, raw library message, filename or secret parameter.
"""
from __future__ import annotations

import dataclasses
import json

from notrace.operations.problems import PROBLEMS as CHILD_PROBLEMS

__all__ = ["ProblemType", "TYPES", "HttpProblem", "for_child_code", "for_sandbox_status",
           "MEDIA_TYPE"]

MEDIA_TYPE = "application/problem+json"


@dataclasses.dataclass(frozen=True)
class ProblemType:
    """One kind of failure: its slug (the last part of its `type` URI), status, title."""

    slug: str
    status: int
    title: str
    doc: str  # when it happens and what to do (README, /problems/<slug>, /docs)

    @property
    def uri(self) -> str:
        return f"/problems/{self.slug}"


_TYPES = (
    ProblemType("bad-parameter", 400, "A parameter is missing or invalid",
                "A text part or query parameter is unknown, missing or has a value the "
                "operation does not accept; `param` names it. A secret (a password) in "
                "the query string is refused: send it as a text part or, with a raw body, "
                "in its `X-Notrace-...` header (e.g. `X-Notrace-Password`). Also a value "
                "that only the document shows wrong (crop margins wider than a page): the detail names "
                "the parameter and the page."),
    ProblemType("bad-request", 400, "The request is malformed",
                "The multipart body cannot be parsed, a part has no name, or a field is "
                "repeated or too long."),
    ProblemType("wrong-file-count", 400, "Wrong number of files",
                "The operation takes between `inputs.min` and `inputs.max` parts named "
                "`file` (see GET /api/v1/operations)."),
    ProblemType("page-out-of-range", 400, "A page selection names a page the document lacks",
                "A page or range parameter refers to pages beyond the end of the document."),
    ProblemType("unauthorized", 401, "An API key is needed",
                "The service is run with NOTRACE_API_KEYS_FILE and the request presented no "
                "key, or one it does not know. Send `Authorization: Bearer KEY` (or "
                "`X-API-Key: KEY`); the operator makes keys with `notrace keys new NAME`. "
                "`WWW-Authenticate: Bearer` says so too. /health, the page, /docs, "
                "/openapi.json and /problems/* never need one."),
    ProblemType("not-found", 404, "No such resource",
                "The path names no endpoint of this service."),
    ProblemType("unknown-operation", 404, "No such operation",
                "POST /api/v1/{operation} names an operation that does not exist; "
                "GET /api/v1/operations lists them."),
    ProblemType("method-not-allowed", 405, "Method not allowed",
                "The endpoint exists but not for this HTTP method; `Allow` lists the "
                "methods it takes."),
    ProblemType("upload-timeout", 408, "The upload was too slow",
                "The request body did not arrive within NOTRACE_UPLOAD_TIMEOUT_S seconds."),
    ProblemType("upload-too-large", 413, "The upload is too large",
                "The request body exceeds NOTRACE_MAX_UPLOAD_MB; the server stops reading "
                "as soon as it does."),
    ProblemType("unsupported-media-type", 415, "Unsupported request content type",
                "The body is neither multipart/form-data nor (for single-input operations) "
                "a raw application/pdf body."),
    ProblemType("not-a-pdf", 415, "The file is not a PDF",
                "A `file` part is clearly another format (PNG, JPEG, GIF, TIFF or WebP "
                "image, ZIP archive) or empty, or the parser finds nothing of a PDF in it. "
                "Anything else goes to the parser, which recovers what it can: a damaged "
                "file it cannot use is `malformed-pdf`."),
    ProblemType("unsupported-image", 415, "The image is not of a supported type",
                "A `file` part is not one of the image types the operation takes, or "
                "cannot be read as one."),
    ProblemType("malformed-pdf", 422, "The document cannot be processed",
                "The document is damaged or uses something the operation cannot handle."),
    ProblemType("password-required", 422, "The document is encrypted",
                "Give its password in the `password` parameter."),
    ProblemType("password-wrong", 422, "The password does not open the document",
                "The `password` parameter is not a password of this document."),
    ProblemType("not-encrypted", 422, "The document is not encrypted",
                "The operation needs an encrypted document."),
    ProblemType("too-many-pages", 422, "The document has too many pages",
                "The document has more pages than NOTRACE_MAX_PAGES."),
    ProblemType("too-large", 422, "An image or page is too large",
                "An image or page of the document exceeds the operation's size limits."),
    ProblemType("redaction-incomplete", 422, "The redaction would be incomplete",
                "redact's leak check re-read the text of every page of its result with "
                "PDFium and pypdf and still found a term (or a character inside a box): "
                "no document is answered. It happens when the two engines read a page "
                "differently (text PDFium places under other words, e.g. /ActualText, "
                "or draws at zero size, which pypdf still reads), or when pypdf cannot "
                "read a page PDFium reads (a damaged content stream). The detail names the "
                "page and the engine, never the term. Redact that page with a box (its "
                "text is then dropped whole), or give all_pages=true."),
    ProblemType("memory-limit", 422, "The document needs too much memory",
                "Processing it exceeded NOTRACE_CHILD_MEMORY_MB (e.g. a decompression bomb)."),
    ProblemType("cpu-limit", 422, "The document needs too much CPU time",
                "Processing it exceeded NOTRACE_CHILD_CPU_S seconds of CPU."),
    ProblemType("time-limit", 422, "The document takes too long",
                "Processing it exceeded NOTRACE_CHILD_WALL_S seconds."),
    ProblemType("output-too-large", 422, "The result is too large",
                "The result would exceed NOTRACE_CHILD_OUTPUT_MB."),
    ProblemType("isolation-violation", 422, "The document made its processor misbehave",
                "Processing it attempted something the isolation policy forbids."),
    ProblemType("processing-crashed", 422, "The document crashed its processor",
                "The process handling it died (a library crash on a hostile file)."),
    ProblemType("rate-limited", 429, "Too many requests",
                "This client (its API key, or its address when keys are off) sent more "
                "operation requests than NOTRACE_RATE_PER_MIN allows (with a burst of "
                "NOTRACE_RATE_BURST), or already has NOTRACE_MAX_JOBS_PER_KEY of them in "
                "progress. Retry after `Retry-After` seconds."),
    ProblemType("busy", 503, "The service is busy",
                "All children are busy and the queue is full; or the uploads in progress "
                "already use NOTRACE_MAX_INFLIGHT_MB, number NOTRACE_WORKERS + "
                "NOTRACE_QUEUE or hold as many files as the server may open (refused before "
                "the body is read); or the server ran out of file descriptors or memory "
                "while reading the upload. Retry after `Retry-After` seconds."),
    ProblemType("sandbox-restarting", 503, "The sandbox is restarting",
                "The process that starts the children stopped while the job was waiting "
                "or running, so the job did not run to its end; not the document's fault. "
                "Retry after `Retry-After` seconds."),
    ProblemType("not-ready", 503, "The service is not ready",
                "The sandbox is starting or stopping; retry after `Retry-After` seconds."),
    ProblemType("internal-error", 500, "Internal error",
                "A bug in the service; the log line with this request id tells us where."),
)
TYPES: dict[str, ProblemType] = {t.slug: t for t in _TYPES}

# Child problem codes (notrace/operations/problems.py) -> our types. The HTTP status is the
# issue's, ours: e.g. too_many_pages is a 422 here, whatever the child table suggests.
_CHILD_CODES = {
    "malformed": "malformed-pdf",
    "password_required": "password-required",
    "password_wrong": "password-wrong",
    "not_encrypted": "not-encrypted",
    "too_many_pages": "too-many-pages",
    "too_large": "too-large",
    "page_out_of_range": "page-out-of-range",
    "bad_parameter": "bad-parameter",
    "unsupported_image": "unsupported-image",
    "not_a_pdf": "not-a-pdf",
    "redaction_incomplete": "redaction-incomplete",
}
# Sandbox Result.status (other than ok) -> our types. A hostile file's fault, except busy
# and restarting (the caller should retry).
_SANDBOX_STATUSES = {
    "error": "malformed-pdf",
    "memory": "memory-limit",
    "cpu": "cpu-limit",
    "timeout": "time-limit",
    "output_too_large": "output-too-large",
    "violation": "isolation-violation",
    "crashed": "processing-crashed",
    "busy": "busy",
    "restarting": "sandbox-restarting",
}


class HttpProblem(Exception):
    """A failure to answer as problem+json. Raised anywhere in request handling.

    detail: safe text of ours for this occurrence (defaults to the type's title).
    extra: RFC 9457 extension members (e.g. {"param": "pages"}); never user content.
    headers: extra response headers (Allow, Retry-After).
    """

    def __init__(self, slug: str, detail: str | None = None, *,
                 extra: dict | None = None, headers: dict | None = None) -> None:
        self.type = TYPES[slug]
        self.detail = detail or self.type.title
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(f"{slug}: {self.detail}")

    @property
    def status(self) -> int:
        return self.type.status

    def body(self, instance: str) -> bytes:
        doc = {"type": self.type.uri, "title": self.type.title, "status": self.status,
               "detail": self.detail, "instance": instance, **self.extra}
        return json.dumps(doc, ensure_ascii=True).encode()


def for_child_code(code: object, detail: object) -> HttpProblem:
    """The answer to a child's `{"problem": CODE, "detail": ...}` (untrusted input).

    An unknown code is treated as malformed; the detail is kept only when it is short
    printable text (the child writes our own wording; a bug must not leak more).
    """
    slug = _CHILD_CODES.get(code, "malformed-pdf") if isinstance(code, str) else "malformed-pdf"
    safe = detail if (isinstance(detail, str) and len(detail) <= 300
                      and detail.isprintable()) else None
    return HttpProblem(slug, safe)


def for_sandbox_status(status: str) -> HttpProblem:
    """The answer to a job that ended without a result (any status but ok)."""
    return HttpProblem(_SANDBOX_STATUSES.get(status, "processing-crashed"))


def unmapped_child_codes() -> set[str]:
    """Child problem codes without a type here (a test keeps this empty)."""
    return set(CHILD_PROBLEMS) - set(_CHILD_CODES)
