"""The closed set of document problems a child reports.

Defined here once; the CHILD raises `Problem` (or library exceptions that child.run maps
to "malformed"), child.run turns it into the manifest `{"problem": CODE, "detail": ...}`,
and the SERVER maps CODE to its problem type (notrace/problems.py, the one table of HTTP
statuses; a test keeps every code mapped). Detail texts are our own fixed wording, never
a library message, path or user filename.

Not in this set, on purpose:
- running out of memory: the child re-raises MemoryError so the sandbox ends the job and
  classifies it by its own resource accounting (Result status "memory"), the same way as
  an RLIMIT_AS abort inside C++ code that never reaches Python;
- our own bugs (NameError, ImportError after confinement, PermissionError from Landlock):
  they propagate, so they show as a crash (5xx), not as a user's bad document.
"""
from __future__ import annotations

import dataclasses

__all__ = ["ProblemKind", "PROBLEMS", "Problem"]


@dataclasses.dataclass(frozen=True)
class ProblemKind:
    code: str
    title: str


PROBLEMS: dict[str, ProblemKind] = {k.code: k for k in (
    ProblemKind("malformed", "The document cannot be read or processed"),
    ProblemKind("not_a_pdf", "The file is not a PDF"),
    ProblemKind("password_required", "The document is encrypted: give its password"),
    ProblemKind("password_wrong", "The password does not open the document"),
    ProblemKind("not_encrypted", "The document is not encrypted"),
    ProblemKind("too_many_pages", "The document has more pages than allowed"),
    ProblemKind("too_large", "An image or page is larger than allowed"),
    ProblemKind("page_out_of_range", "A page selection names a page the document lacks"),
    ProblemKind("bad_parameter", "A parameter does not fit this document"),
    ProblemKind("unsupported_image", "The image is not a JPEG or PNG this service reads"),
    ProblemKind("redaction_incomplete", "Text to redact survived in the result"),
)}


class Problem(Exception):
    """Raised in the child for a document problem; `code` is a key of PROBLEMS and
    `detail` our own safe text (it may name a parameter and page numbers)."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        if code not in PROBLEMS:
            raise ValueError(f"unknown problem code {code!r}")
        self.code = code
        self.detail = detail or PROBLEMS[code].title
        super().__init__(f"{code}: {self.detail}")
