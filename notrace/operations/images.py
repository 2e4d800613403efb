"""Images out of and into PDFs: images, from_images. Runs in the CHILD.

Uploaded images are opened with `formats=` naming JPEG or PNG only (after checking the
signature), so no other Pillow decoder ever sees user image bytes.
"""
from __future__ import annotations

import io
import zlib

import pikepdf
from PIL import Image, JpegImagePlugin, PngImagePlugin  # noqa: F401  (registered formats)
from pikepdf import Name

from notrace.operations._common import (OUR_BUGS, Output, OutputFile, check_page_count,
                                        open_pdf, pdf_output)
from notrace.operations.pages import parse_pages
from notrace.operations.problems import Problem

#: Largest image (pixels) we decode: an image header may claim 60000x60000 for 100 bytes.
MAX_PIXELS = 40_000_000
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
#: Page sizes in points; the largest page PDF readers accept is 14400 points a side.
PAGE_SIZES = {"a4": (595.276, 841.89), "letter": (612.0, 792.0)}
MAX_PAGE_SIDE = 14400.0


def images(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Every image XObject of the selected pages, once each (the first page that uses it
    names it): page-<p>-image-<i>.jpg for JPEG data copied as is, .png for the rest
    (decoded by pikepdf, written by Pillow). Images that cannot be decoded, or are over
    MAX_PIXELS, are counted in the report as skipped."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    chosen = sorted(parse_pages(params["pages"]).resolve_set(len(pdf.pages)))
    files, seen, skipped = [], set(), 0
    pages = list(pdf.pages)  # list once: pdf.pages[i] copies every page (see pagework)
    for i in chosen:
        for k, raw in enumerate(pages[i].get_images().values(), start=1):
            if raw.objgen in seen:
                continue
            seen.add(raw.objgen)
            extracted = _extract(raw)
            if extracted is None:
                skipped += 1
                continue
            data, suffix, media_type = extracted
            files.append(OutputFile(f"page-{i + 1}-image-{k}.{suffix}", media_type, data))
    return Output(files, {"images": len(files), "skipped": skipped})


def _extract(raw: pikepdf.Stream) -> tuple[bytes, str, str] | None:
    try:
        image = pikepdf.PdfImage(raw)
        if image.width * image.height > MAX_PIXELS:
            return None
        if image.filters == ["/DCTDecode"] and image.colorspace in ("/DeviceRGB",
                                                                    "/DeviceGray"):
            return raw.read_raw_bytes(), "jpg", "image/jpeg"
        out = io.BytesIO()
        image.as_pil_image().save(out, format="PNG")
        return out.getvalue(), "png", "image/png"
    except (MemoryError, *OUR_BUGS):
        raise
    except Exception:  # noqa: BLE001  one broken image must not lose the others
        return None


def from_images(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """One page per image, in input order. JPEG data is embedded as is (no re-encoding);
    PNG is decoded and stored Flate-compressed, its alpha as a soft mask."""
    check_page_count(len(inputs), max_pages, "the request")
    pdf = pikepdf.new()
    for which, data in enumerate(inputs, start=1):
        xobject, image = image_xobject(pdf, data, which)
        _add_image_page(pdf, xobject, image, params["page_size"])
    return pdf_output(pdf)


def image_xobject(pdf: pikepdf.Pdf, data: memoryview,
                  which: int) -> tuple[pikepdf.Stream, Image.Image]:
    """An image XObject in `pdf` for the JPEG or PNG `data` (input `which`), and the
    opened image (size, dpi). Raises Problem for anything else."""
    image, kind = _open_image(data, which)
    xobject = _jpeg_xobject(pdf, data, image) if kind == "JPEG" else _png_xobject(pdf, image)
    return xobject, image


def _open_image(data: memoryview, which: int) -> tuple[Image.Image, str]:
    head = bytes(data[:8])
    kind = next((k for sig, k in _SIGNATURES.items() if head.startswith(sig)), None)
    if kind is None:
        raise Problem("unsupported_image", f"input {which} is not a JPEG or PNG image")
    try:
        image = Image.open(io.BytesIO(data), formats=[kind])
    except Image.DecompressionBombError:
        raise Problem("too_large", f"input {which} has more pixels than allowed") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise Problem("malformed", f"input {which} cannot be read as a {kind} image") from exc
    if image.width * image.height > MAX_PIXELS:
        raise Problem("too_large", f"input {which} has more than {MAX_PIXELS} pixels")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise Problem("malformed", f"input {which} cannot be read as a {kind} image") from exc
    return image, kind


def _jpeg_xobject(pdf: pikepdf.Pdf, data: memoryview, image: Image.Image) -> pikepdf.Stream:
    spaces = {"L": Name.DeviceGray, "RGB": Name.DeviceRGB, "CMYK": Name.DeviceCMYK}
    if image.mode not in spaces:  # e.g. YCCK or 16-bit: re-encode as RGB
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=95)
        return _jpeg_xobject(pdf, memoryview(out.getvalue()), Image.open(out, formats=["JPEG"]))
    stream = pikepdf.Stream(pdf, bytes(data))
    stream.Type, stream.Subtype = Name.XObject, Name.Image
    stream.Width, stream.Height = image.size
    stream.ColorSpace, stream.BitsPerComponent = spaces[image.mode], 8
    stream.Filter = Name.DCTDecode
    if image.mode == "CMYK" and "adobe" in image.info:
        # Adobe writes CMYK JPEGs inverted; viewers expect the inverted Decode for them.
        stream.Decode = pikepdf.Array([1, 0] * 4)
    return stream


def _png_xobject(pdf: pikepdf.Pdf, image: Image.Image) -> pikepdf.Stream:
    if image.mode.startswith("I"):  # 16-bit grey: scale to 8 bits
        image = image.point(lambda v: v / 256).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    base = image.convert("RGBA" if has_alpha else ("L" if image.mode in ("1", "L") else "RGB"))
    color = base.convert("RGB") if has_alpha else base
    stream = _raw_image(pdf, color)
    if has_alpha:
        stream.SMask = _raw_image(pdf, base.getchannel("A"))
    return stream


def _raw_image(pdf: pikepdf.Pdf, image: Image.Image) -> pikepdf.Stream:
    stream = pikepdf.Stream(pdf, zlib.compress(image.tobytes(), 6))
    stream.Type, stream.Subtype = Name.XObject, Name.Image
    stream.Width, stream.Height = image.size
    stream.ColorSpace = Name.DeviceGray if image.mode == "L" else Name.DeviceRGB
    stream.BitsPerComponent = 8
    stream.Filter = Name.FlateDecode
    return stream


def _add_image_page(pdf: pikepdf.Pdf, xobject: pikepdf.Stream, image: Image.Image,
                    page_size: str) -> None:
    width, height = image.size
    if page_size == "image":
        dpi = image.info.get("dpi", (72, 72))
        try:
            dx, dy = (float(d) if 1 <= float(d) <= 10000 else 72.0 for d in dpi[:2])
        except (TypeError, ValueError):
            dx = dy = 72.0
        page_w, page_h = width * 72 / dx, height * 72 / dy
        shrink = min(1.0, MAX_PAGE_SIDE / max(page_w, page_h))
        page_w, page_h = page_w * shrink, page_h * shrink
        draw_w, draw_h, x, y = page_w, page_h, 0.0, 0.0
    else:
        page_w, page_h = PAGE_SIZES[page_size]
        if width > height:  # landscape image: landscape page
            page_w, page_h = page_h, page_w
        scale = min(page_w / width, page_h / height)
        draw_w, draw_h = width * scale, height * scale
        x, y = (page_w - draw_w) / 2, (page_h - draw_h) / 2
    content = pikepdf.unparse_content_stream([
        ([], pikepdf.Operator("q")),
        ([draw_w, 0, 0, draw_h, x, y], pikepdf.Operator("cm")),
        ([Name.Im0], pikepdf.Operator("Do")), ([], pikepdf.Operator("Q"))])
    page = pikepdf.Dictionary(
        Type=Name.Page, MediaBox=[0, 0, page_w, page_h],
        Resources=pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=xobject)),
        Contents=pikepdf.Stream(pdf, content))
    pdf.pages.append(pikepdf.Page(page))
