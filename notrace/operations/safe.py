"""`safe`, Dangerzone's two-phase conversion: the phases' code. Runs in the CHILD.

Each phase is its own job in its own fresh child (notrace/safe.py, in the server, runs
them and checks what passes between them); child.run dispatches PHASES by name:
- "safe-pixels" (phase 1, the only child that sees the document): pages from
  params["first"] on drawn by PDFium into one pixel stream (pixelstream.py), as many as
  fit params["budget"] bytes (at least one), straight into the stream's buffer: the child
  holds one batch of raw pixels and nothing else of size;
- "safe-build" (phase 2, a fresh child that never saw the document): a new PDF from the
  pixels alone, at the places and sizes params["pages"] gives (the geometry the server
  checked; the stream's own headers are never read here): each page one image, Flate
  by default (lossless: text stays sharp, and white, which most pages are, compresses to
  almost nothing) or JPEG (compression=jpeg: scans and photographs), over the whole
  page, at the original page size in points, and with `ocr` an invisible text layer
  recognised from those pixels (ocr_engine.py);
- "safe-merge": the batches' PDFs (made by phase-2 children) as one, each page made anew
  from its size, its image's encoded data and OCR's words (a phase-2 child may have been
  reached through its pixels); a merge child never sees the document either.
No metadata reaches the result but a fixed producer; nothing of the document survives
but its look (links, forms, scripts, attachments, outline, text: see NOT_KEPT).

`safe` (the registry's function) runs the same phases and the same stream check in ONE
process, for what calls an operation in-process (the operation tests, the bench's
in-process side, a pipeline step): the same code without the process boundary, which is
the point of `safe` over HTTP and the CLI.
"""
from __future__ import annotations

import contextlib
import ctypes
import decimal
import io
import math
import zlib

import pikepdf
import pypdfium2
import pypdfium2.raw as pdfium_c
from pikepdf import Dictionary, Name

from notrace.operations import ocr_engine, pdfium, pixelstream
from notrace.operations._common import PDF, Output, OutputFile
from notrace.operations.problems import Problem
from notrace.operations.raster import PixelLimits, pixel_size
from notrace.operations.render import is_gray, paint

__all__ = ["PHASES", "PRODUCER", "NOT_KEPT", "FLATE_LEVEL", "batch_bytes", "batch_full",
           "report", "draw_batch", "add_pages", "safe"]

#: The one piece of metadata a result carries.
PRODUCER = "notrace safe"
#: What no pixel-only PDF can carry: the report's `not_kept` (text too, without OCR).
NOT_KEPT = ("links", "forms", "annotations", "javascript and actions", "attachments",
            "bookmarks", "metadata", "layers")
#: zlib level of the page images: 6 (zlib's default) compresses a page of text at 150 dpi
#: to about a tenth of level 1's size for twice the time, still well under the drawing's.
FLATE_LEVEL = 6
#: Pages of one batch when ocr is on: Tesseract takes about 3.5 CPU seconds for a dense
#: A4 page at 150 dpi (measured, bench/safe_bench.py --ocr; twice that in wall time on a
#: loaded machine), and phase 2's child has the default 20 CPU seconds and 30 s; without
#: OCR only the bytes bound a batch.
OCR_BATCH_PAGES = 2
RESULT_NAME = "safe.pdf"
_POINTS_PER_INCH = 72.0
_MIB = 1 << 20
#: Room left in a job's output for the manifest and the output table.
_OUTPUT_SLACK = _MIB


def batch_pages(params: dict) -> int:
    """Most pages of one batch (besides its bytes)."""
    return OCR_BATCH_PAGES if params["ocr"] else 1 << 31


def batch_full(size: int, pages: int, next_page: int, budget: int, most_pages: int) -> bool:
    """Where a batch stops, the one rule phase 1 packs by (_choose) and the server holds
    it to (notrace.safe): a stream of `size` bytes and `pages` pages is full when it has
    `most_pages` pages (batch_pages) or the next page's `next_page` bytes (its header and
    pixels) would take it over `budget`."""
    return pages >= most_pages or size + next_page > budget


def batch_bytes(output_mb: int, memory_mb: int) -> tuple[int, int]:
    """(budget, most) bytes of one pixel stream for children of these limits: batches are
    packed to `budget` (half the output limit, and a third of the memory: the stream and
    phase 2's mapping of it must leave room for PDFium, zlib and Tesseract), and one
    page alone may take up to `most` (the output limit) before it is too large."""
    most = (output_mb << 20) - _OUTPUT_SLACK
    return max(1, min(most // 2, (memory_mb << 20) // 3)), most


def report(params: dict, pages: int, batches: int) -> dict:
    """The answer's report: what was made, and what cannot survive."""
    not_kept = list(NOT_KEPT) + ([] if params["ocr"] else ["text"])
    value = {"pages": pages, "dpi": params["dpi"], "batches": batches,
             "compression": params["compression"], "ocr": params["ocr"],
             "not_kept": not_kept}
    if params["ocr"]:
        value["language"] = params["language"]
    return value


# --- phase 1 ----------------------------------------------------------------------------

def draw_batch(data: memoryview, params: dict, *, first: int, budget: int, most: int,
               max_pages: int, limits: PixelLimits) -> bytearray:
    """The pixel stream of pages `first`.. of the document, as many as fit `budget`
    bytes (at least one; at most OCR_BATCH_PAGES with ocr). The first batch checks every
    page's pixel size before drawing any, so a document with one page too large fails
    before work is done."""
    scale = params["dpi"] / _POINTS_PER_INCH
    with pdfium.open_document(data, password=params.get("password"),
                              max_pages=max_pages) as document:
        # Before any page is loaded: its fields drawn as they look (render.paint).
        document.init_forms()
        total = len(document)
        limits.check_pages(total)
        if not 0 <= first < total:
            raise ValueError(f"batch from page {first} of a {total}-page document")
        if first == 0:
            for index in range(total):
                pixel_size(*document.get_page_size(index), scale, index + 1, limits)
        chosen, size = _choose(document, first, scale, limits, budget, most,
                               batch_pages(params))
        stream = bytearray(size)
        stream[:pixelstream.STREAM_HEADER.size] = pixelstream.pack_stream_header(
            total, first, len(chosen))
        at = pixelstream.STREAM_HEADER.size
        for index, (width, height) in chosen:
            at = _draw_page(document, index, scale, limits, (width, height), stream, at)
    return stream


def _choose(document, first: int, scale: float, limits: PixelLimits, budget: int,
            most: int, count: int) -> tuple[list, int]:
    """[(page index, (width, height))] from `first` on that fit `budget` bytes, at most
    `count`, and the stream's size; a page that alone exceeds `most` is too large."""
    chosen, size = [], pixelstream.STREAM_HEADER.size
    for index in range(first, len(document)):
        width, height = pixel_size(*document.get_page_size(index), scale, index + 1, limits)
        need = pixelstream.PAGE_HEADER.size + width * height * pixelstream.BYTES_PER_PIXEL
        if chosen and batch_full(size, len(chosen), need, budget, count):
            break
        if size + need > most:
            raise Problem("too_large", f"page {index + 1} would be {need // _MIB} MiB of "
                          f"pixels, more than a job may hand on ({most // _MIB} MiB)")
        chosen.append((index, (width, height)))
        size += need
    return chosen, size


def _draw_page(document, index: int, scale: float, limits: PixelLimits,
               size: tuple[int, int], stream: bytearray, at: int) -> int:
    """Page `index`'s header and pixels written into `stream` at `at`; the offset after."""
    width, height = size
    pdf_page = document.get_page(index)  # no text page: pdfium.page would load one
    try:
        width_pt, height_pt = pdf_page.get_size()
        if pixel_size(width_pt, height_pt, scale, index + 1, limits) != size:
            raise Problem("malformed", f"page {index + 1} changed size when loaded")
        header = pixelstream.pack_page_header(width, height, width_pt, height_pt)
        stream[at:at + len(header)] = header
        at += len(header)
        count = width * height * pixelstream.BYTES_PER_PIXEL
        # PDFium draws straight into the stream: no bitmap of its own, no copy.
        buffer = (ctypes.c_ubyte * count).from_buffer(stream, at)
        raw = pdfium_c.FPDFBitmap_CreateEx(width, height, pdfium_c.FPDFBitmap_BGR, buffer,
                                           width * pixelstream.BYTES_PER_PIXEL)
        if not raw:
            raise MemoryError("PDFium could not make a bitmap")
        bitmap = pypdfium2.PdfBitmap.from_raw(raw, rev_byteorder=True, ex_buffer=buffer)
        try:
            paint(bitmap, pdf_page, width, height)
        finally:
            bitmap.close()
            del bitmap, buffer   # the stream's buffer export: released now
    finally:
        pdf_page.close()
    return at + count


def pixels_phase(inputs: list[memoryview], job: dict) -> Output:
    """Phase 1's job: the pixel stream of one batch."""
    budget, most = job["budget"], job["most"]
    stream = draw_batch(inputs[0], job["params"], first=job["first"], budget=budget,
                        most=most, max_pages=job["max_pages"],
                        limits=PixelLimits.from_dict(job["pixel_limits"]))
    return Output([OutputFile("pixels", "application/octet-stream", stream)])


# --- phase 2 ----------------------------------------------------------------------------

def new_pdf() -> pikepdf.Pdf:
    pdf = pikepdf.new()
    pdf.trailer.Info = pdf.make_indirect(Dictionary(Producer=pikepdf.String(PRODUCER)))
    return pdf


def add_pages(pdf: pikepdf.Pdf, view: memoryview, pages: list, params: dict) -> None:
    """A page per [offset, width, height, width_pt, height_pt] (the checked geometry):
    one RGB image (_encode) of the pixels at view[offset:], drawn over the whole page; with
    params["ocr"], the words Tesseract reads in them as an invisible text layer."""
    for offset, width, height, width_pt, height_pt in pages:
        count = width * height * pixelstream.BYTES_PER_PIXEL
        pixels = view[offset:offset + count]
        if offset < 0 or len(pixels) != count:
            raise ValueError("a page's pixels lie outside the input")  # the server's bug
        data, codec, space = _encode(pixels, width, height, params)
        page = _image_page(pdf, data, codec, space, width, height, width_pt, height_pt)
        if params["ocr"]:
            _add_words(pdf, page, pixels, width, height, params)


def _image_page(pdf: pikepdf.Pdf, data: bytes, codec: Name, space: Name, width: int,
                height: int, width_pt: float, height_pt: float) -> pikepdf.Page:
    """A new last page of width_pt x height_pt points: one image of colour space `space`
    (RGB, or gray for a page without colour), `data` encoded by `codec`, width x height
    pixels, drawn over the whole page, and nothing else."""
    image = pdf.make_stream(data, Type=Name.XObject, Subtype=Name.Image, Width=width,
                            Height=height, ColorSpace=space,
                            BitsPerComponent=8, Filter=codec)
    # Made by hand: add_blank_page refuses sides over 14400 points, which PDFium
    # draws (UserUnit documents) and viewers show.
    pdf.pages.append(pikepdf.Page(Dictionary(
        Type=Name.Page, MediaBox=pikepdf.Array([0, 0, width_pt, height_pt]),
        Resources=Dictionary(XObject=Dictionary(Im0=image)),
        Contents=pdf.make_stream(b"q %s 0 0 %s 0 0 cm /Im0 Do Q"
                                 % (_number(width_pt), _number(height_pt))))))
    return pdf.pages[-1]


def _encode(pixels: memoryview, width: int, height: int,
            params: dict) -> tuple[bytes, Name, Name]:
    """A page's RGB pixels as its image's stream data, filter and colour space: one gray
    channel when no pixel has a colour (most pages: a third of the bytes to compress
    and keep, the same look), else RGB (_encoded)."""
    import PIL.Image
    with PIL.Image.frombuffer("RGB", (width, height), pixels, "raw", "RGB", 0, 1) as rgb:
        if not is_gray(rgb):
            return (*_encoded(rgb, params), Name.DeviceRGB)
        with rgb.convert("L") as gray:
            return (*_encoded(gray, params), Name.DeviceGray)


def _encoded(image, params: dict) -> tuple[bytes, Name]:
    """A Pillow image (RGB or L) as Flate (lossless) or, with compression=jpeg, a
    baseline JPEG at `quality`, several times smaller for photographs and scans."""
    if params["compression"] == "flate":
        return zlib.compress(image.tobytes(), FLATE_LEVEL), Name.FlateDecode
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=params["quality"])
    return out.getvalue(), Name.DCTDecode


def _add_words(pdf: pikepdf.Pdf, page: pikepdf.Page, pixels: memoryview, width: int,
               height: int, params: dict) -> None:
    import PIL.Image
    with PIL.Image.frombuffer("RGB", (width, height), pixels, "raw", "RGB", 0, 1) as rgb, \
            rgb.convert("L") as grey:
        words = ocr_engine.recognize(grey, language=params["language"], dpi=params["dpi"])
    ocr_engine.add_text_layer(pdf, page, words, image_width=width, image_height=height)


def _number(value: float) -> bytes:
    return (b"%.4f" % value).rstrip(b"0").rstrip(b".")


def finish(pdf: pikepdf.Pdf, report_value: dict | None) -> Output:
    """The result saved as body (deterministic /ID: no clock, no randomness) and kept in
    its buffer: getvalue() would copy it once more."""
    out = io.BytesIO()
    pdf.save(out, deterministic_id=True)
    return Output([OutputFile(RESULT_NAME, PDF, out.getbuffer())], report_value)


def build_phase(inputs: list[memoryview], job: dict) -> Output:
    """Phase 2's job: the PDF of one batch, from its pixels (inputs[0]) alone."""
    pdf = new_pdf()
    add_pages(pdf, inputs[0], job["pages"], job["params"])
    return finish(pdf, job.get("report"))


def merge_phase(inputs: list[memoryview], job: dict) -> Output:
    """The batches' PDFs (phase 2's, in order) as one, every page made anew
    (_rebuilt): nothing of a part is copied but its pages' sizes, their images' data
    (Flate checked to be exactly the pixels, JPEG encoded anew) and, with OCR, the words of their text layers, so even a phase-2 child gone
    wrong (Tesseract on hostile pixels) adds no annotation, action, catalog entry, font
    program, image filter or drawing here."""
    pdf = new_pdf()
    with contextlib.ExitStack() as parts:
        for data in inputs:
            part = parts.enter_context(pikepdf.open(_Reader(data)))
            for page in part.pages:
                _rebuilt(pdf, page, job["params"])
        return finish(pdf, job.get("report"))


#: The codecs phase 2 encodes a page's image with (_encode).
_CODECS = {"/FlateDecode": Name.FlateDecode, "/DCTDecode": Name.DCTDecode}
#: Its colour spaces, and the Pillow mode of each.
_SPACES = {Name.DeviceRGB: "/DeviceRGB", Name.DeviceGray: "/DeviceGray"}
_MODES = {"/DeviceRGB": ("RGB", 3), "/DeviceGray": ("L", 1)}
#: Of a text layer (ocr_engine.add_text_layer), the operators a merge keeps: each word's
#: size, place and codes; the layer around them (font, invisible mode) it makes itself.
_WORD_OPERATORS = {"Tf": 2, "Tm": 6, "Tj": 1}


def _rebuilt(pdf: pikepdf.Pdf, part_page: pikepdf.Page, params: dict) -> None:
    """A page like `part_page` (a phase-2 page) at the end of `pdf`, made as phase 2
    makes one (_image_page) from its MediaBox and its image's data (_image_data); with
    ocr, its words in a text layer of the merge's own. ValueError for a page that is not
    one phase 2 makes (that part is not phase 2's work: the job fails)."""
    box = part_page.obj.get("/MediaBox")
    resources = part_page.obj.get("/Resources")
    xobjects = resources.get("/XObject") if isinstance(resources, Dictionary) else None
    image = xobjects.get("/Im0") if isinstance(xobjects, Dictionary) else None
    if not (isinstance(box, pikepdf.Array) and len(box) == 4 and box[0] == box[1] == 0
            and isinstance(image, pikepdf.Stream) and image.get("/Subtype") == Name.Image
            and image.get("/ColorSpace") in _SPACES
            and image.get("/BitsPerComponent") == 8 and "/DecodeParms" not in image
            and isinstance(image.get("/Filter"), Name) and str(image.Filter) in _CODECS):
        raise ValueError("a part's page is not one image as phase 2 makes them")
    width, height = image.get("/Width"), image.get("/Height")
    width_pt, height_pt = _finite(box[2]), _finite(box[3])
    if not (type(width) is int and type(height) is int and width > 0 and height > 0
            and math.isfinite(width_pt) and math.isfinite(height_pt)):
        raise ValueError("a part's page has no size")
    codec, space = _CODECS[str(image.Filter)], _SPACES[image.ColorSpace]
    data = _image_data(image.read_raw_bytes(), codec, space, width, height, params)
    page = _image_page(pdf, data, codec, Name(space), width, height, width_pt, height_pt)
    if params["ocr"]:
        words = [(_word_operands(str(operator), operands), operator)
                 for operands, operator in pikepdf.parse_content_stream(part_page)
                 if len(operands) == _WORD_OPERATORS.get(str(operator))]
        if words:
            ocr_engine.append_layer(pdf, page, words)


def _image_data(raw: bytes, codec: Name, space: str, width: int, height: int,
                params: dict) -> bytes:
    """A part's image data as the answer may carry it, ValueError if it is not what phase
    2 makes: Flate must inflate to exactly width x height pixels of its colour space and
    end there (checked in 1 MiB pieces, never held whole); a JPEG is decoded and encoded
    anew, so none of its markers, tables or other structure reaches a client's decoder (a
    phase-2 child gone wrong could otherwise hand a viewer a hostile JPEG)."""
    mode, channels = _MODES[space]
    expected = width * height * channels
    if codec == Name.FlateDecode:
        inflate, seen, pending = zlib.decompressobj(), 0, raw
        try:
            while not inflate.eof and seen <= expected:
                piece = inflate.decompress(pending, _MIB)
                pending = inflate.unconsumed_tail
                if not piece and not pending:
                    break                      # the data ended before the stream did
                seen += len(piece)
        except zlib.error:
            raise ValueError("a part's image is not Flate data") from None
        if seen != expected or not inflate.eof or inflate.unused_data:
            raise ValueError("a part's image is not exactly its pixels")
        return raw
    import PIL.Image
    try:
        with PIL.Image.open(io.BytesIO(raw), formats=["JPEG"]) as jpeg:
            if jpeg.size != (width, height) or jpeg.mode != mode:
                raise ValueError("a part's image is not its size in its colour space")
            pixels = jpeg.tobytes()
    except (OSError, SyntaxError, PIL.Image.DecompressionBombError):
        raise ValueError("a part's image is not a JPEG") from None
    # A new image of the pixels alone: Pillow's save would copy the part's comment (its
    # info) into the JPEG it writes.
    with PIL.Image.frombytes(mode, (width, height), pixels) as fresh:
        return _encoded(fresh, {**params, "compression": "jpeg"})[0]


def _word_operands(operator: str, operands) -> list:
    """A word operation's operands, checked: Tj's codes (a string), Tf's size (its font
    is the merge's own) and Tm's matrix as finite numbers. ValueError otherwise."""
    if operator == "Tj":
        if not isinstance(operands[0], pikepdf.String):
            raise ValueError("a part's text layer shows something else than codes")
        return [pikepdf.String(bytes(operands[0]))]
    numbers = [_finite(v) for v in operands[operator == "Tf":]]
    if not all(map(math.isfinite, numbers)):
        raise ValueError("a part's text layer places words with something else than numbers")
    return [None, *numbers] if operator == "Tf" else numbers


def _finite(value) -> float:
    """A PDF number (pikepdf: int or Decimal) as a float; NaN for anything else."""
    if isinstance(value, (int, decimal.Decimal)) and not isinstance(value, bool):
        return float(value)
    return math.nan


class _Reader(io.RawIOBase):
    """A seekable reader over an input's mapping: pikepdf reads the part from it where it
    lies (io.BytesIO would copy every part first)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view, self._at = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), len(self._view) - self._at))
        buffer[:count] = self._view[self._at:self._at + count]
        self._at += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._view)}[whence]
        self._at = max(0, base + offset)
        return self._at

    def tell(self) -> int:
        return self._at


#: The phases child.run dispatches by name (never operations of their own).
PHASES = {"safe-pixels": pixels_phase, "safe-build": build_phase, "safe-merge": merge_phase}


# --- both phases in one process ---------------------------------------------------------

def safe(inputs: list[memoryview], params: dict, *, max_pages: int,
         pixel_limits: PixelLimits = PixelLimits(), output_mb: int = 200,
         memory_mb: int = 512) -> Output:
    """The whole conversion in this process (see the module doc): batch by batch, each
    stream checked by pixelstream.check as the server checks it, then built."""
    budget, most = batch_bytes(output_mb, memory_mb)
    pdf = new_pdf()
    first, document_pages, batches = 0, None, 0
    while True:
        stream = draw_batch(inputs[0], params, first=first, budget=budget, most=most,
                            max_pages=max_pages, limits=pixel_limits)
        view = memoryview(stream)
        batch = pixelstream.check(lambda size, at: bytes(view[at:at + size]), len(stream),
                                  first=first, document_pages=document_pages,
                                  dpi=params["dpi"], limits=pixel_limits,
                                  max_pages=max_pages)
        add_pages(pdf, view, [page.to_list() for page in batch.pages], params)
        batches += 1
        view.release()
        del stream
        if batch.end == batch.document_pages:
            return finish(pdf, report(params, batch.document_pages, batches))
        first, document_pages = batch.end, batch.document_pages
