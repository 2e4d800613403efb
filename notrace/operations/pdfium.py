"""PDFium (pypdfium2) for the operations: open a document bounded, close it for sure.
Runs in the CHILD; imported (and configured) once in the FORK SERVER by child.py.

PDFium is a C++ parser of hostile input. What bounds it here:
- it is loaded and initialised before confinement: importing pypdfium2 dlopens
  libpdfium.so and calls FPDF_InitLibraryWithConfig (pypdfium2._library_scope), so a
  child never opens a file for it;
- `configure()` removes PDFium's system font lookup (FPDF_SetSystemFontInfo(NULL)): by
  default PDFium would list /usr/share/fonts the first time a document names a font it
  does not embed, in whichever process got there first, and then open font files by
  path. Without it PDFium uses only its built-in fonts (the base 14 and its generic
  serif/sans fallbacks), the same in the fork server and in every child, and never
  touches the filesystem;
- `open_document` checks the page count against max_pages before any page is loaded,
  and `page` closes each page and its text page as soon as the caller is done, so a job
  holds one page's parsed content at a time; the document is closed on every path;
- memory is bounded by the child's RLIMIT_AS: an allocation PDFium cannot make aborts
  the child (SIGABRT) at its limit, which the sandbox classifies as "memory" (a 422
  memory-limit; a 78 kB page of a million text operators holds ~290 MB in PDFium);
  CPU and time by the sandbox.

When PDFium cannot open a file, qpdf gets it (open_pdf: the same problem codes as every
other operation, and its repair), and PDFium reads qpdf's rewrite: decrypted, with a
clean cross-reference table. On the corpus that rescues two files: an AES-256 document
qpdf opens with the empty user password and PDFium does not, and a damaged one.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import pypdfium2
import pypdfium2.raw as pdfium_c

from notrace.operations._common import PDF, check_page_count, open_pdf, save_pdf
from notrace.operations.formats import SNIFF_BYTES, sniff
from notrace.operations.problems import Problem

__all__ = ["configure", "open_document", "page"]


def configure() -> None:
    """Fork server, once, before any child: PDFium's built-in fonts only (see above)."""
    pdfium_c.FPDF_SetSystemFontInfo(None)


def _load(data: bytes, password: str | None):
    """A PdfDocument for `data`, or None when PDFium cannot open it (or sees no page)."""
    secret = None if not password else password.encode("utf-8") + b"\x00"
    raw = pdfium_c.FPDF_LoadMemDocument64(data, len(data), secret)
    if not raw:
        return None
    if pdfium_c.FPDF_GetPageCount(raw) < 1:
        pdfium_c.FPDF_CloseDocument(raw)
        return None
    return pypdfium2.PdfDocument(raw)


@contextlib.contextmanager
def open_document(data: memoryview, *, password: str | None,
                  max_pages: int) -> Iterator[pypdfium2.PdfDocument]:
    """The document, open while the `with` lasts; Problem for what every operation
    refuses (another format, a missing or wrong password, too many pages, no page)."""
    if sniff(bytes(data[:SNIFF_BYTES])) not in (None, PDF):  # as open_pdf does
        raise Problem("not_a_pdf", "the document is another kind of file, not a PDF")
    # PDFium reads the buffer lazily while the document is open: `buffer` keeps it alive.
    # A copy: ctypes cannot point into the job's read-only input mapping.
    buffer = bytes(data)
    document = _load(buffer, password)
    if document is None:
        with open_pdf(data, password=password, max_pages=max_pages) as pdf:
            buffer = save_pdf(pdf)
        document = _load(buffer, None)
        if document is None:
            raise Problem("malformed", "the document cannot be read as a PDF")
    try:
        check_page_count(len(document), max_pages)
        yield document
    finally:
        document.close()
        del buffer


@contextlib.contextmanager
def page(document: pypdfium2.PdfDocument, index: int) -> Iterator[tuple]:
    """(page, text page) of 0-based `index`, both closed when the `with` ends. A page
    PDFium cannot load raises PdfiumError (a library error: "malformed")."""
    pdf_page = document.get_page(index)
    try:
        text_page = pdf_page.get_textpage()
        try:
            yield pdf_page, text_page
        finally:
            text_page.close()
    finally:
        pdf_page.close()

