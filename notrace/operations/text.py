"""`text`: the text of each page, by PDFium (default) or pypdf. Runs in the CHILD.

Answer: {"pages": [{"page": N, "text": "..."}, ...]} in the order of `pages`, lines
separated by "\\n" with either engine. With layout=boxes (PDFium only) each page also
has "box" (the visible page box, x0, y0, x1, y1), "rotate" (its /Rotate) and "words":
[{"text", "x0", "y0", "x1", "y1"}], each word's rectangle in PDF points of the page's
own, unrotated coordinates (the space of crop's `box` and of redaction boxes): the union
of its characters' boxes as PDFium selects them (font ascent to descent, so a line's
words share a height). A word is a run of characters between whitespace; a hyphen that
PDFium recognises as breaking a word across lines ends the word, as on the page. A word
drawn off the page keeps its coordinates (outside "box"); one whose characters have no
finite box (degenerate text matrices) is left out of "words", not of "text".

Bounds: a page may have at most MAX_PAGE_CHARS characters and a document at most
MAX_TEXT_CHARS (both engines: "too_large"); PDFium's count is read before the text
is, pypdf's only after extracting. The page count is bounded by max_pages first.
"""
from __future__ import annotations

import io
import math
import re

import pypdf
import pypdfium2.raw as pdfium_c

from notrace.operations import pdfium
from notrace.operations._common import Output, json_output, open_pdf, save_pdf
from notrace.operations.pages import parse_pages
from notrace.operations.problems import Problem

__all__ = ["text", "MAX_PAGE_CHARS", "MAX_TEXT_CHARS", "Budget", "index_chars"]

#: Characters one page may have (a dense page of 8 pt text has about 10,000).
MAX_PAGE_CHARS = 200_000
#: Characters of the whole answer (5,000 dense pages fit; about 100 MB of JSON as text; with
#: boxes, some 16 bytes a character, the child's output limit comes first: a 422 either way).
MAX_TEXT_CHARS = 50_000_000
#: What PDFium puts for a hyphen that breaks a word at the end of a line, dropping the
#: line break (U+FFFE in the page's text, U+0002 as that character's code): written back
#: as the hyphen and the break.
_PDFIUM_HYPHEN = "\ufffe"
_PDFIUM_HYPHEN_CODE = 0x02
_MAX_CODE_POINT = 0x10FFFF
#: A word: characters up to whitespace (or NUL), or up to and with a line-break hyphen.
_WORD = re.compile(f"[^\\s\\x00{_PDFIUM_HYPHEN}]*{_PDFIUM_HYPHEN}|[^\\s\\x00{_PDFIUM_HYPHEN}]+")


class Budget:
    """The characters left for this answer; refuses a page over either bound."""

    def __init__(self) -> None:
        self.left = MAX_TEXT_CHARS

    def take(self, number: int, count: int) -> None:
        if count > MAX_PAGE_CHARS:
            raise Problem("too_large", f"page {number} has more than {MAX_PAGE_CHARS} "
                          "characters of text")
        self.left -= count
        if self.left < 0:
            raise Problem("too_large", f"the text exceeds {MAX_TEXT_CHARS} characters")


def text(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    if params["engine"] == "pypdf":
        pages = _pypdf_pages(inputs[0], params, max_pages)
    else:
        pages = _pdfium_pages(inputs[0], params, max_pages)
    return json_output("text.json", {"pages": pages})


def _pypdf_pages(data: memoryview, params: dict, max_pages: int) -> list[dict]:
    """pypdf's extract_text. qpdf opens the input first (password, page limit, repair)
    and pypdf reads qpdf's rewrite: decrypted (pypdf here has no AES support) and with a
    clean cross-reference table."""
    pdf = open_pdf(data, password=params.get("password"), max_pages=max_pages)
    indices = parse_pages(params["pages"]).resolve(len(pdf.pages), limit=max_pages)
    reader = pypdf.PdfReader(io.BytesIO(save_pdf(pdf)), strict=False)
    budget, pages = Budget(), []
    for i in indices:
        page_text = reader.pages[i].extract_text()
        budget.take(i + 1, len(page_text))
        pages.append({"page": i + 1, "text": page_text})
    return pages


def _pdfium_pages(data: memoryview, params: dict, max_pages: int) -> list[dict]:
    boxes = params["layout"] == "boxes"
    budget, pages = Budget(), []
    with pdfium.open_document(data, password=params.get("password"),
                              max_pages=max_pages) as document:
        indices = parse_pages(params["pages"]).resolve(len(document), limit=max_pages)
        for i in indices:
            with pdfium.page(document, i) as (pdf_page, text_page):
                count = text_page.count_chars()
                budget.take(i + 1, count)
                raw = text_page.get_text_range(0, count)
                entry = {"page": i + 1, "text": _clean(raw)}
                if boxes:
                    entry["box"] = [round(v, 2) for v in pdf_page.get_bbox()]
                    entry["rotate"] = pdf_page.get_rotation()
                    entry["words"] = _words(text_page.raw, index_chars(text_page.raw, raw, count))
            pages.append(entry)
    return pages


def _clean(raw: str) -> str:
    """PDFium's text in the engines' common form: "\\n" line breaks, real hyphens."""
    return raw.replace("\r\n", "\n").replace(_PDFIUM_HYPHEN, "-\n")


def index_chars(raw_text_page, text: str, count: int) -> str:
    """The page's characters, one per PDFium character index: its text when that has one
    character per index (as almost always), else read code by code."""
    if len(text) == count:
        return text
    codes = (pdfium_c.FPDFText_GetUnicode(raw_text_page, i) for i in range(count))
    return "".join(_PDFIUM_HYPHEN if code == _PDFIUM_HYPHEN_CODE else
                   "\ufffd" if code > _MAX_CODE_POINT or 0xD800 <= code <= 0xDFFF else
                   chr(code) for code in codes)


def _words(raw_text_page, chars: str) -> list[dict]:
    """Words and their boxes from PDFium's characters (see the module doc); `chars[i]` is
    character index i. Hot loop: one ctypes call per character of a word."""
    box_of, rect = pdfium_c.FPDFText_GetLooseCharBox, pdfium_c.FS_RECTF()
    words: list[dict] = []
    for match in _WORD.finditer(chars):
        x0 = y0 = math.inf
        x1 = y1 = -math.inf
        for i in range(*match.span()):
            if not box_of(raw_text_page, i, rect):
                continue
            left, right, bottom, top = rect.left, rect.right, rect.bottom, rect.top
            if left > right:      # PDFium normalises its rectangles; cheap to be sure
                left, right = right, left
            if bottom > top:
                bottom, top = top, bottom
            if left < x0:         # comparisons, not min()/max(): a third of the time
                x0 = left
            if right > x1:
                x1 = right
            if bottom < y0:
                y0 = bottom
            if top > y1:
                y1 = top
        if all(map(math.isfinite, (x0, y0, x1, y1))):   # no box, or a degenerate one
            words.append({"text": match.group().replace(_PDFIUM_HYPHEN, "-"),
                          "x0": round(x0, 2), "y0": round(y0, 2),
                          "x1": round(x1, 2), "y1": round(y1, 2)})
    return words
