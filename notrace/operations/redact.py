"""redact: true redaction. Runs in the CHILD, with pikepdf, PDFium and Pillow.

1. qpdf opens the document and flattens its annotations into the pages
   (flatten.flatten_document: form values and comments become page content, where the
   search finds their text); then redact_strip removes everything but the pages'
   content and how they are shown (metadata, XMP, bookmarks, named destinations,
   attachments, JavaScript, forms, the structure tree, page labels, every remaining
   annotation, thumbnails, unused resources).
2. PDFium reads that document: on each page the terms' rectangles (redact_search) and
   the boxes given for it. A page with either (every page with all_pages) is REBUILT:
   drawn at `dpi` (render's drawing, annotations included, on white), the rectangles
   painted over in `color` (Pillow), and the page object emptied in place and given one
   image: the same visible box, /Rotate and size, nothing else (same object, so nothing
   still pointing at the page keeps its old content reachable). Other pages keep their
   content. Pixel sizes are checked against the job's pixel limits before the first
   page is drawn; one page's pixels are held at a time, each image Flate-compressed as
   soon as it is painted (as gray pixels when no pixel has a colour).
3. redact_leaks.check_result reads the result again with PDFium and pypdf; any term or
   character in a box still there is "redaction_incomplete" (422) and nothing is answered.

Report: {"pages": [{"page", "matches", "boxes"}] for each rebuilt page (the first
MAX_REPORTED_PAGES; "listed_all" says whether that is all of them), "rebuilt",
"dpi", "removed" (kinds of content dropped), "annotations" (how many went), "checked":
{"pages", "engines"}}. Never a term, never text of the document.
"""
from __future__ import annotations

import ctypes
import zlib

import pikepdf
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageDraw

from notrace.operations import pdfium
from notrace.operations._common import Output, open_pdf, pdf_output, save_pdf
from notrace.operations.flatten import flatten_document
from notrace.operations.problems import Problem
from notrace.operations.raster import PixelLimits, pixel_size
from notrace.operations.redact_leaks import check_result
from notrace.operations.redact_params import (parse_boxes, parse_color, parse_terms,
                                              patterns as compile_patterns)
from notrace.operations.redact_search import Budget, Rect, page_chars, term_rects
from notrace.operations.redact_strip import strip_document
from notrace.operations.render import draw_page, is_gray

__all__ = ["redact"]

_POINTS_PER_INCH = 72.0
#: Rebuilt pages the report lists, each about 40 bytes: within the manifest's 64 KiB base
#: whatever the pages-per-job setting (jobs.manifest_limit).
MAX_REPORTED_PAGES = 1000
#: Pixels added around each painted rectangle (device rounding, antialiased edges).
_PAINT_PAD_PX = 1


def redact(inputs: list[memoryview], params: dict, *, max_pages: int,
           pixel_limits: PixelLimits = PixelLimits()) -> Output:
    boxes = parse_boxes(params["boxes"])
    patterns = compile_patterns(parse_terms(params["terms"]), regex=params["regex"],
                                case_sensitive=params["case_sensitive"])
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    flatten_document(pdf)
    stripped = strip_document(pdf)
    # For PDFium only: streams copied as they are, none compressed (qpdf would compress
    # every uncompressed one, which the final save does anyway: 3 s for fuzz's slow_filter).
    prepared = save_pdf(pdf, compress_streams=False,
                        stream_decode_level=pikepdf.StreamDecodeLevel.none)
    scale = params["dpi"] / _POINTS_PER_INCH
    with pdfium.open_document(memoryview(prepared), password=None,
                              max_pages=max_pages) as document:
        if len(document) != len(pdf.pages):
            raise Problem("malformed", "the document's pages cannot be counted reliably")
        for number, *_box in boxes:
            if number > len(document):
                raise Problem("page_out_of_range", f"boxes: page {number} does not exist "
                              f"(the document has {len(document)} pages)")
        if params["all_pages"]:  # known before any page is read
            pixel_limits.check_pages(len(document))
        found = _search(document, patterns, boxes, params["all_pages"])
        pixel_limits.check_pages(len(found))
        for index in found:
            width, height = document.get_page_size(index)
            pixel_size(width, height, scale, index + 1, pixel_limits)
        color = parse_color(params["color"])
        pages = list(pdf.pages)  # list once: pdf.pages[i] copies every page (see pagework)
        for index, (_matches, rects) in found.items():
            _rebuild(pdf, pages[index], document, index, rects, scale, color,
                     pixel_limits)
    data = save_pdf(pdf)
    del prepared
    check_result(data, patterns=patterns, boxes=boxes, rebuilt=set(found),
                 max_pages=max_pages)
    pages = [{"page": index + 1, "matches": matches,
              "boxes": sum(1 for b in boxes if b[0] == index + 1)}
             for index, (matches, _rects) in sorted(found.items())[:MAX_REPORTED_PAGES]]
    return pdf_output(data, {"pages": pages, "listed_all": len(pages) == len(found),
                             "rebuilt": len(found), "dpi": params["dpi"],
                             **stripped, "checked": {"pages": len(pdf.pages),
                                                     "engines": ["pdfium", "pypdf"]}})


def _search(document, patterns, boxes, all_pages: bool) -> dict[int, tuple[int, list[Rect]]]:
    """0-based index -> (term matches, rectangles to paint) of every page to rebuild."""
    given: dict[int, list[Rect]] = {}
    for number, *box in boxes:
        given.setdefault(number - 1, []).append(tuple(box))
    found: dict[int, tuple[int, list[Rect]]] = {}
    budget = Budget()
    for index in range(len(document)):
        matches, rects = 0, []
        if patterns:
            with pdfium.page(document, index) as (_page, text_page):
                chars = page_chars(text_page, index + 1, budget)
                matches, rects = term_rects(text_page, chars, patterns)
        rects += given.get(index, [])
        if rects or matches or all_pages:
            found[index] = (matches, rects)
    return found


def _device_rect(pdf_page, width: int, height: int, rect: Rect) -> tuple[int, int, int, int]:
    """`rect` (page points) in pixels of the page drawn width x height as shown, padded,
    within the image (PDFium's own mapping: /Rotate and the visible box included)."""
    x0, y0, x1, y1 = rect
    xs, ys = [], []
    device_x, device_y = ctypes.c_int(), ctypes.c_int()
    for x, y in ((x0, y0), (x0, y1), (x1, y0), (x1, y1)):
        pdfium_c.FPDF_PageToDevice(pdf_page, 0, 0, width, height, 0, x, y,
                                   device_x, device_y)
        xs.append(device_x.value)
        ys.append(device_y.value)
    return (max(0, min(xs) - _PAINT_PAD_PX), max(0, min(ys) - _PAINT_PAD_PX),
            min(width - 1, max(xs) + _PAINT_PAD_PX), min(height - 1, max(ys) + _PAINT_PAD_PX))


def _painted(document, index: int, rects: list[Rect], scale: float, color,
             limits: PixelLimits) -> tuple[Image.Image, tuple, int]:
    """(the page drawn and painted over, its visible box, its /Rotate)."""
    pdf_page = document.get_page(index)
    try:
        width, height = pdf_page.get_size()
        size = pixel_size(width, height, scale, index + 1, limits)
        image = draw_page(pdf_page, *size)
        paint = ImageDraw.Draw(image)
        for rect in rects:
            x0, y0, x1, y1 = _device_rect(pdf_page.raw, *size, rect)
            if x0 <= x1 and y0 <= y1:  # a box wholly off the page paints nothing
                paint.rectangle((x0, y0, x1, y1), fill=color)
        return image, tuple(pdf_page.get_bbox()), pdf_page.get_rotation()
    finally:
        pdf_page.close()


def _placement(box: tuple, rotation: int) -> bytes:
    """The `cm` that puts the image (drawn as the page is shown) over the unrotated
    visible `box`, so that the page's /Rotate shows it upright again."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    matrix = {0: (w, 0, 0, h, x0, y0), 90: (0, h, -w, 0, x1, y0),
              180: (-w, 0, 0, -h, x1, y1), 270: (0, -h, w, 0, x0, y1)}[rotation % 360]
    return " ".join(f"{v:.4f}" for v in matrix).encode()


def _rebuild(pdf: pikepdf.Pdf, page: pikepdf.Page, document, index: int, rects: list[Rect],
             scale: float, color, limits: PixelLimits) -> None:
    """Empty the page object in place and give it the painted image only."""
    image, box, rotation = _painted(document, index, rects, scale, color, limits)
    width, height = image.size
    space = pikepdf.Name.DeviceRGB
    if is_gray(image):  # most pages of text: a third of the pixels to compress and keep
        image, rgb = image.convert("L"), image
        rgb.close()
        space = pikepdf.Name.DeviceGray
    pixels = zlib.compress(image.tobytes(), 1)  # level 1: a third of level 6's time, +20%
    image.close()
    stream = pikepdf.Stream(pdf, b"")
    stream.write(pixels, filter=pikepdf.Name.FlateDecode)
    stream.Type, stream.Subtype = pikepdf.Name.XObject, pikepdf.Name.Image
    stream.Width, stream.Height, stream.BitsPerComponent = width, height, 8
    stream.ColorSpace = space
    obj = page.obj
    for key in list(obj.keys()):
        if key not in ("/Type", "/Parent"):
            del obj[key]
    obj.MediaBox = pikepdf.Array(box)
    obj.Rotate = rotation
    obj.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=stream))
    obj.Contents = pdf.make_stream(b"q " + _placement(box, rotation) + b" cm /Im0 Do Q")
