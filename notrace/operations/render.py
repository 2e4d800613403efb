"""Pages to pixels: render (a zip of one image per page) and thumbnail (one image).
Runs in the CHILD, with PDFium (pdfium.py) and Pillow.

Every page's pixel size is computed from its size in points before anything is drawn
(raster.pixel_size): a page over the job's PixelLimits (the setting max_page_pixels) is
a "too_large" problem, never a bitmap the child cannot hold, and more pages to draw than
the setting max_pixel_pages a "too_many_pages" one. Pages are drawn one at a time, each
bitmap released as soon as it is encoded, so memory holds one page's pixels plus the
encoded images so far (bounded by the sandbox's output limit). A page without colour is
encoded as one grey channel (PNG, JPEG). Fonts a document does not embed are drawn with
PDFium's built-in fonts (pdfium.configure: no system fonts).
"""
from __future__ import annotations

import io

import pypdfium2
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageChops
from PIL import JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401 (no lazy import)

from notrace.operations import pdfium
from notrace.operations._common import Output, OutputFile
from notrace.operations.pages import parse_pages
from notrace.operations.raster import PixelLimits, pixel_size

__all__ = ["render", "thumbnail", "paint", "check_sizes", "draw_page", "is_gray"]
#: Formats a page without colour is encoded in as one grey channel (WebP has no grey).
_GRAY_FORMATS = ("PNG", "JPEG")

#: format parameter -> (Pillow format, file suffix, media type)
FORMATS = {"png": ("PNG", "png", "image/png"), "jpeg": ("JPEG", "jpg", "image/jpeg"),
           "webp": ("WEBP", "webp", "image/webp")}
_POINTS_PER_INCH = 72.0


def render(inputs: list[memoryview], params: dict, *, max_pages: int,
           pixel_limits: PixelLimits = PixelLimits()) -> Output:
    """page-0001.png, ... for the selected pages, in page order, at params["dpi"]."""
    scale = params["dpi"] / _POINTS_PER_INCH
    with pdfium.open_document(inputs[0], password=params.get("password"),
                              max_pages=max_pages) as document:
        document.init_forms()   # before any page is loaded: fields drawn (paint)
        chosen = sorted(parse_pages(params["pages"]).resolve_set(len(document)))
        pixel_limits.check_pages(len(chosen))
        check_sizes(document, chosen, lambda _w, _h: scale, pixel_limits)
        files = []
        for index in chosen:
            data, suffix, media_type = _draw(document, index, lambda _w, _h: scale, params,
                                             pixel_limits)
            files.append(OutputFile(f"page-{index + 1:04d}.{suffix}", media_type, data))
    return Output(files, {"pages": len(files), "dpi": params["dpi"],
                          "format": params["format"]}, archive=True)


def thumbnail(inputs: list[memoryview], params: dict, *, max_pages: int,
              pixel_limits: PixelLimits = PixelLimits()) -> Output:
    """Page params["page"] as one image params["width"] pixels wide (height to scale)."""
    width = params["width"]

    def scale(page_width: float, _height: float) -> float:
        return width / page_width

    with pdfium.open_document(inputs[0], password=params.get("password"),
                              max_pages=max_pages) as document:
        document.init_forms()
        index = parse_pages(str(params["page"])).resolve(len(document))[0]
        check_sizes(document, [index], scale, pixel_limits)
        data, suffix, media_type = _draw(document, index, scale, params, pixel_limits)
    return Output([OutputFile(f"page-{index + 1}.{suffix}", media_type, data)],
                  {"page": index + 1, "format": params["format"]})


def check_sizes(document, indexes: list[int], scale, limits: PixelLimits) -> None:
    """Every page's pixel size within the limit, before the first is drawn."""
    for index in indexes:
        width, height = document.get_page_size(index)
        pixel_size(width, height, scale(width, height), index + 1, limits)


def draw_page(pdf_page, width: int, height: int) -> Image.Image:
    """The page drawn (annotations' appearances too) on white, exactly width x height
    RGB pixels (PdfPage.render rounds 1650.0000000002 up to 1651); the bitmap is closed
    once Pillow has its copy."""
    bitmap = pypdfium2.PdfBitmap.new_native(width, height, pdfium_c.FPDFBitmap_BGR,
                                           rev_byteorder=True)
    try:
        paint(bitmap, pdf_page, width, height)
        return bitmap.to_pil()
    finally:
        bitmap.close()


def paint(bitmap, pdf_page, width: int, height: int) -> None:
    """Draw the page (annotations' appearances too) on white into a width x height
    bitmap made with rev_byteorder=True: RGB bytes (safe.py draws into its own buffer).
    Form fields are drawn too when the document's form was initialised (init_forms:
    PDFium leaves widgets out of FPDF_RenderPageBitmap when a document has a form)."""
    flags = pdfium_c.FPDF_ANNOT | pdfium_c.FPDF_REVERSE_BYTE_ORDER
    bitmap.fill_rect((255, 255, 255, 255), 0, 0, width, height)
    pdfium_c.FPDF_RenderPageBitmap(bitmap, pdf_page, 0, 0, width, height, 0, flags)
    formenv = getattr(pdf_page.pdf, "formenv", None)
    if formenv:
        pdfium_c.FPDF_FFLDraw(formenv, bitmap, pdf_page, 0, 0, width, height, 0, flags)


def _draw(document, index: int, scale, params: dict,
          limits: PixelLimits) -> tuple[bytes, str, str]:
    """One page encoded in params["format"]; the bitmap is closed before returning."""
    pillow_format, suffix, media_type = FORMATS[params["format"]]
    pdf_page = document.get_page(index)  # no text page: pdfium.page would load one
    try:
        width, height = pdf_page.get_size()
        factor = scale(width, height)
        size = pixel_size(width, height, factor, index + 1, limits)  # the loaded page's
        image = draw_page(pdf_page, *size)
    finally:
        pdf_page.close()
    if pillow_format in _GRAY_FORMATS and is_gray(image):
        # Most pages are text: a third of the pixels to encode (PNG at half the time, and
        # smaller), and the same look (R = G = B everywhere).
        image, rgb = image.convert("L"), image
        rgb.close()
    out = io.BytesIO()
    options = {} if pillow_format == "PNG" else {"quality": params["quality"]}
    image.save(out, format=pillow_format, **options)
    image.close()
    return out.getvalue(), suffix, media_type


def is_gray(image: Image.Image) -> bool:
    """Whether every pixel of the RGB `image` is gray (R = G = B), compared in C (about
    9 ms for an A4 page at 150 dpi)."""
    red, green, blue = image.split()
    return (ImageChops.difference(red, green).getbbox() is None
            and ImageChops.difference(green, blue).getbbox() is None)
