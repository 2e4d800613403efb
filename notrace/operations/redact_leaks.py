"""redact's leak check: the result is read again, as a client's tools would, before it
may be answered. Runs in the CHILD, on the bytes redact is about to answer.

Both engines read the text of EVERY page of the result: PDFium (what `text` answers, and
the engine the search used) and pypdf (another parser, which reads some text PDFium
does not: glyphs under /ActualText, text drawn at zero size or zero scale). The job fails
with "redaction_incomplete" (422) when
- a term's pattern (redact_params.spans, as the search matched) still matches a page's
  text in either engine;
- a rebuilt page has any text at all in either engine (it should be one image);
- PDFium places a character of the result inside a box of that page (by its loose box);
- pypdf cannot read a page's text at all (a damaged content stream PDFium reads): the
  check fails closed, and the detail suggests all_pages=true, which rebuilds that page.
The detail names the page and the engine, never the term or the text found.
"""
from __future__ import annotations

import io
import re

import pypdf
import pypdfium2.raw as pdfium_c

from notrace.operations import pdfium
from notrace.operations._common import OUR_BUGS
from notrace.operations.problems import Problem
from notrace.operations.redact_params import RedactBox, spans
from notrace.operations.redact_search import Budget, Rect, char_box, page_chars

__all__ = ["check_result"]


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _leak(page: int, engine: str, what: str) -> Problem:
    return Problem("redaction_incomplete", f"page {page}: {what} in {engine}'s text of the "
                   "result; nothing was answered")


def _check_text(text: str, page: int, engine: str, patterns: list[re.Pattern],
                rebuilt: bool) -> None:
    if rebuilt and text.strip():
        raise _leak(page, engine, "a rebuilt page still has text")
    if any(spans(pattern, text) for pattern in patterns):
        raise _leak(page, engine, "a term still matches")


def check_result(data: bytes, *, patterns: list[re.Pattern], boxes: list[RedactBox],
                 rebuilt: set[int], max_pages: int) -> None:
    """Raise Problem("redaction_incomplete") when the result `data` leaks (module doc).
    `rebuilt` holds the 0-based indexes of the pages made images."""
    boxes_of: dict[int, list[Rect]] = {}
    for number, *box in boxes:
        boxes_of.setdefault(number - 1, []).append(tuple(box))
    budget, rect = Budget(), pdfium_c.FS_RECTF()
    with pdfium.open_document(memoryview(data), password=None,
                              max_pages=max_pages) as document:
        for index in range(len(document)):
            with pdfium.page(document, index) as (_page, text_page):
                chars = page_chars(text_page, index + 1, budget)
                _check_text(chars, index + 1, "PDFium", patterns, index in rebuilt)
                for i in range(len(chars)) if index in boxes_of else ():
                    box = char_box(text_page.raw, i, rect)
                    if box is not None and any(_overlaps(box, b) for b in boxes_of[index]):
                        raise _leak(index + 1, "PDFium", "a character inside a box")
    reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
    budget = Budget()
    for index, page in enumerate(reader.pages):
        if not patterns and index not in rebuilt:
            continue  # boxes only: nothing to match on a page left as it was
        try:
            text = page.extract_text()
        except (MemoryError, *OUR_BUGS):
            raise
        except Exception:  # noqa: BLE001  a damaged content stream PDFium got through
            raise Problem("redaction_incomplete", f"page {index + 1}: pypdf cannot read "
                          "its text, so nothing confirms it is clean; all_pages=true "
                          "rebuilds it too") from None
        budget.take(index + 1, len(text))
        _check_text(text, index + 1, "pypdf", patterns, index in rebuilt)
