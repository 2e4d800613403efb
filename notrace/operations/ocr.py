"""`ocr`: an invisible, searchable text layer on scanned pages, the original pages kept
(what ocrmypdf does). Runs in the CHILD; declared only when OCR is installed
(ocr_engine.languages(), registry.py).

Each selected page is drawn by PDFium at `dpi` (render.py's drawing, the same pixel
sizes and PixelLimits: every page's pixel count, and the number of pages to draw, are
checked before the first is drawn),
recognised by Tesseract (ocr_engine.recognize) and given the words as a text layer
(ocr_engine.add_text_layer) in the document qpdf opened, which is then saved whole:
nothing of the page's own content changes. One page's pixels are held at a time.
With skip_text, a page on which PDFium finds any text already is left as it is.
"""
from __future__ import annotations

from notrace.operations import ocr_engine, pdfium
from notrace.operations._common import Output, open_pdf, pdf_output
from notrace.operations.pages import parse_pages
from notrace.operations.problems import Problem
from notrace.operations.raster import PixelLimits, pixel_size
from notrace.operations.render import check_sizes, draw_page

__all__ = ["ocr"]

_POINTS_PER_INCH = 72.0


def ocr(inputs: list[memoryview], params: dict, *, max_pages: int,
        pixel_limits: PixelLimits = PixelLimits()) -> Output:
    dpi, language = params["dpi"], params["language"]
    scale = dpi / _POINTS_PER_INCH
    password = params.get("password")
    pdf = open_pdf(inputs[0], password=password, max_pages=max_pages)
    processed = skipped = words = 0
    with pdfium.open_document(inputs[0], password=password,
                              max_pages=max_pages) as document:
        if len(document) != len(pdf.pages):  # the two parsers must see the same pages
            raise Problem("malformed", "the document's pages cannot be read consistently")
        chosen = sorted(parse_pages(params["pages"]).resolve_set(len(document)))
        pixel_limits.check_pages(len(chosen))
        check_sizes(document, chosen, lambda _w, _h: scale, pixel_limits)
        pages = list(pdf.pages)  # list once: pdf.pages[i] copies every page (see pagework)
        for index in chosen:
            pdf_page = document.get_page(index)
            try:
                if params["skip_text"] and _has_text(pdf_page):
                    skipped += 1
                    continue
                width, height = pdf_page.get_size()
                size = pixel_size(width, height, scale, index + 1, pixel_limits)
                image = draw_page(pdf_page, *size)
            finally:
                pdf_page.close()
            try:
                found = ocr_engine.recognize(image, language=language, dpi=dpi)
            finally:
                image.close()
            ocr_engine.add_text_layer(pdf, pages[index], found, image_width=size[0],
                                      image_height=size[1])
            processed += 1
            words += len(found)
    return pdf_output(pdf, {"pages": processed, "skipped": skipped,
                                      "words": words, "language": language, "dpi": dpi})


def _has_text(pdf_page) -> bool:
    """Whether PDFium finds a character other than whitespace on the page."""
    text_page = pdf_page.get_textpage()
    try:
        return bool(text_page.get_text_range(0, text_page.count_chars()).strip())
    finally:
        text_page.close()
