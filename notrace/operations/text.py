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

import pypdf
import pypdfium2.raw as pdfium_c

from notrace.operations import pdfium
from notrace.operations._common import Output, json_output, open_pdf, save_pdf
from notrace.operations.pages import parse_pages
from notrace.operations.problems import Problem

__all__ = ["text", "MAX_PAGE_CHARS", "MAX_TEXT_CHARS"]

#: Characters one page may have (a dense page of 8 pt text has about 10,000).
MAX_PAGE_CHARS = 200_000
#: Characters of the whole answer (about 100 MB of JSON at most; 5,000 dense pages fit).
MAX_TEXT_CHARS = 50_000_000
#: What PDFium puts for a hyphen that breaks a word at the end of a line, dropping the
#: line break (U+FFFE in the page's text, U+0002 as that character's code): written back
#: as the hyphen and the break.
_PDFIUM_HYPHEN = "\ufffe"
_PDFIUM_HYPHEN_CODE = 0x02
_MAX_CODE_POINT = 0x10FFFF


class _Budget:
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
    budget, pages = _Budget(), []
    for i in indices:
        page_text = reader.pages[i].extract_text()
        budget.take(i + 1, len(page_text))
        pages.append({"page": i + 1, "text": page_text})
    return pages


def _pdfium_pages(data: memoryview, params: dict, max_pages: int) -> list[dict]:
    boxes = params["layout"] == "boxes"
    budget, pages = _Budget(), []
    with pdfium.open_document(data, password=params.get("password"),
                              max_pages=max_pages) as document:
        indices = parse_pages(params["pages"]).resolve(len(document), limit=max_pages)
        for i in indices:
            with pdfium.page(document, i) as (pdf_page, text_page):
                count = text_page.count_chars()
                budget.take(i + 1, count)
                entry = {"page": i + 1, "text": _clean(text_page.get_text_range(0, count))}
                if boxes:
                    entry["box"] = [round(v, 2) for v in pdf_page.get_bbox()]
                    entry["rotate"] = pdf_page.get_rotation()
                    entry["words"] = _words(text_page.raw, count)
            pages.append(entry)
    return pages


def _clean(raw: str) -> str:
    """PDFium's text in the engines' common form: "\\n" line breaks, real hyphens."""
    return raw.replace("\r\n", "\n").replace(_PDFIUM_HYPHEN, "-\n")


def _char(code: int) -> str:
    if code > _MAX_CODE_POINT or 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return chr(code)


def _words(raw_text_page, count: int) -> list[dict]:
    """Words and their boxes from PDFium's characters (see the module doc)."""
    unicode_of, box_of = pdfium_c.FPDFText_GetUnicode, pdfium_c.FPDFText_GetLooseCharBox
    rect = pdfium_c.FS_RECTF()
    words: list[dict] = []
    chars: list[str] = []
    edges = [math.inf, math.inf, -math.inf, -math.inf]   # x0, y0, x1, y1 of the word

    def flush() -> None:
        if chars and edges[0] <= edges[2] and edges[1] <= edges[3]:
            words.append({"text": "".join(chars), "x0": round(edges[0], 2),
                          "y0": round(edges[1], 2), "x1": round(edges[2], 2),
                          "y1": round(edges[3], 2)})
        chars.clear()
        edges[:] = [math.inf, math.inf, -math.inf, -math.inf]

    for i in range(count):
        code = unicode_of(raw_text_page, i)
        char = _char(code)
        if char.isspace() or code == 0:
            flush()
            continue
        hyphen = code == _PDFIUM_HYPHEN_CODE or char == _PDFIUM_HYPHEN
        chars.append("-" if hyphen else char)
        if box_of(raw_text_page, i, rect):
            x0, x1 = sorted((rect.left, rect.right))
            y0, y1 = sorted((rect.bottom, rect.top))
            if all(map(math.isfinite, (x0, y0, x1, y1))):
                edges[:] = [min(edges[0], x0), min(edges[1], y0),
                            max(edges[2], x1), max(edges[3], y1)]
        if hyphen:
            flush()
    flush()
    return words
