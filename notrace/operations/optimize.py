"""Rewrites of a whole document: compress, linearize, repair. Runs in the CHILD."""
from __future__ import annotations

import io

import pikepdf
from PIL import Image

from notrace.operations._common import Output, open_pdf, page_box, pdf_output, save_pdf

#: Images larger than this (pixels) are left as they are by downsampling: decoding them
#: would cost more memory than a job should (a 60000x60000 "image bomb" is 3.6 G pixels).
DOWNSAMPLE_MAX_PIXELS = 40_000_000
#: Colour spaces we re-encode as JPEG; anything else (Indexed, Lab, Separation, masks,
#: soft masks, 16-bit) is left untouched rather than risk changing how it looks.
_JPEG_SPACES = {"/DeviceRGB": "RGB", "/DeviceGray": "L"}


#: Resource categories whose dictionaries, when shared, may list what a page never uses.
_SHARED_KINDS = ("/Font", "/XObject")


def compress(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Lossless: generated object streams, every Flate stream recompressed at level 9,
    unreferenced resources dropped where resources are shared (see _shares_resources;
    qpdf writes only reachable objects). With `image_dpi`: images downsampled, see
    _downsample_images."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    report = {"images_downsampled": 0}
    if params.get("image_dpi"):
        report["images_downsampled"] = _downsample_images(pdf, params["image_dpi"],
                                                          params["image_quality"])
    if _shares_resources(pdf):
        pdf.remove_unreferenced_resources()
    # Process-wide setting, and pikepdf cannot read it back: restore zlib's default (-1),
    # which is what every other operation uses.
    pikepdf.settings.set_flate_compression_level(9)
    try:
        data = save_pdf(pdf, object_stream_mode=pikepdf.ObjectStreamMode.generate,
                        compress_streams=True, recompress_flate=True)
    finally:
        pikepdf.settings.set_flate_compression_level(-1)
    report["input_bytes"] = len(inputs[0])  # always bytes: compress is not in TAKES_OPEN
    report["output_bytes"] = len(data)
    return pdf_output(data, report)


def _shares_resources(pdf: pikepdf.Pdf) -> bool:
    """Whether two pages (or form XObjects drawn on them) share a resource dictionary or
    its /Font or /XObject dictionary: only then can a page's resources name what its
    content never uses, in numbers worth finding (after a split, or a whole document's
    fonts on every page). Finding them parses every content stream: on 10 MB of page
    content that tripled compress's time (0.23 of 0.34 s) for nothing. qpdf's own
    --remove-unreferenced-resources=auto decides the same way."""
    seen: set[tuple[int, int]] = set()
    stack = [page.obj.get("/Resources") for page in pdf.pages]
    visited = 0
    while stack and visited < _WALK_LIMIT:
        resources = stack.pop()
        visited += 1
        if not isinstance(resources, pikepdf.Dictionary):
            continue
        for holder in (resources, *(resources.get(k) for k in _SHARED_KINDS if k in resources)):
            if not isinstance(holder, pikepdf.Dictionary) or not holder.is_indirect:
                continue
            if holder.objgen in seen:
                return True
            seen.add(holder.objgen)
        xobjects = resources.get("/XObject") if "/XObject" in resources else None
        if isinstance(xobjects, pikepdf.Dictionary):
            for name in xobjects.keys():
                form = xobjects.get(name)
                if isinstance(form, pikepdf.Stream) and form.get("/Subtype") == "/Form" \
                        and form.objgen not in seen:
                    seen.add(form.objgen)
                    stack.append(form.get("/Resources"))
    return visited >= _WALK_LIMIT  # a structure too large to look through: remove anyway


#: Resource dictionaries looked at by _shares_resources before it gives up looking.
_WALK_LIMIT = 100_000


def _downsample_images(pdf: pikepdf.Pdf, dpi: int, quality: int) -> int:
    """Re-encode as JPEG (at `quality`) every plain RGB/gray 8-bit image with more pixels
    than the page needs at `dpi`. The page size bounds how large an image is drawn, so an
    image is never downsampled below what `dpi` needs even when drawn full page; images
    drawn smaller keep more pixels than strictly needed (we do not interpret content
    streams to learn their placement). Returns how many images were replaced."""
    done: set[tuple[int, int]] = set()
    replaced = 0
    for page in pdf.pages:
        x0, y0, x1, y1 = page_box(page)
        max_w, max_h = (x1 - x0) / 72 * dpi, (y1 - y0) / 72 * dpi
        for raw in page.get_images().values():
            if raw.objgen in done:
                continue
            done.add(raw.objgen)
            if _downsample_one(raw, max(max_w, max_h), quality):
                replaced += 1
    return replaced


def _downsample_one(raw: pikepdf.Stream, max_side: float, quality: int) -> bool:
    if any(k in raw for k in ("/SMask", "/Mask", "/Decode", "/SMaskInData")) \
            or raw.get("/ImageMask", False) or raw.get("/BitsPerComponent") != 8:
        return False
    mode = _JPEG_SPACES.get(str(raw.get("/ColorSpace")))
    width, height = int(raw.get("/Width", 0)), int(raw.get("/Height", 0))
    if mode is None or not 0 < width * height <= DOWNSAMPLE_MAX_PIXELS:
        return False
    scale = max_side / max(width, height)
    if scale >= 1:
        return False
    image = pikepdf.PdfImage(raw).as_pil_image().convert(mode)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = image.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=quality, optimize=True)
    data = out.getvalue()
    if len(data) >= len(raw.read_raw_bytes()):
        return False
    raw.write(data, filter=pikepdf.Name.DCTDecode)
    raw.Width, raw.Height = size
    if "/DecodeParms" in raw:
        del raw["/DecodeParms"]
    return True


def linearize(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Linearized ("fast web view") copy."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    return pdf_output(save_pdf(pdf, linearize=True))


def repair(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Read (qpdf reconstructs broken xref tables, stream lengths and object numbering)
    and write again; the report counts qpdf's warnings (what it had to fix or skip)."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    data = save_pdf(pdf)
    return pdf_output(data, {"warnings": len(pdf.get_warnings())})
