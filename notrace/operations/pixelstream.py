"""The pixel stream between the two phases of `safe`: its one format definition, written
by the CHILD of phase 1 (operations/safe.py) and checked by the SERVER (notrace/safe.py)
before a child of phase 2 gets it. Pure arithmetic and struct: no PDF library.

Layout, little-endian, nothing before or after:

    stream header  MAGIC (8 bytes) | document pages u32 | first page u32 (0-based) | count u32
    count times    page header: width u32 | height u32 | width_pt f64 | height_pt f64
                   then exactly width * height * 3 bytes: RGB, rows top to bottom

The stream comes from a child that parsed the document, so it is hostile until checked.
`check` reads only the headers (a few bytes each, never the pixels) and
bounds everything before it would need memory for it: the page count against the
limits before any page header is read, each page's pixels against the pixel limit and
its size in points (they must be exactly raster.pixel_size's answer for the job's dpi),
every length against the span, and nothing may follow the last page. What it returns,
the geometry, is what phase 2 is told: phase 2 never reads a header.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import Callable

from notrace.operations.problems import Problem
from notrace.operations.raster import PixelLimits, pixel_size

__all__ = ["MAGIC", "STREAM_HEADER", "PAGE_HEADER", "BYTES_PER_PIXEL", "Page", "Batch",
           "StreamError", "stream_size", "pack_stream_header", "pack_page_header", "check"]

MAGIC = b"NTPIXEL1"
STREAM_HEADER = struct.Struct("<8sIII")
PAGE_HEADER = struct.Struct("<IIdd")
BYTES_PER_PIXEL = 3
_POINTS_PER_INCH = 72.0


class StreamError(Exception):
    """The pixel stream is not what the format and the limits allow: the child that wrote
    it went wrong (a bug, or the document's exploit), so its job crashed."""


@dataclasses.dataclass(frozen=True)
class Page:
    """One checked page: where its pixels start (from the stream's start), its pixel and
    point size."""

    offset: int
    width: int
    height: int
    width_pt: float
    height_pt: float

    @property
    def size(self) -> int:
        return self.width * self.height * BYTES_PER_PIXEL

    def to_list(self, base: int = 0) -> list:
        """The form phase 2's params carry it in (JSON), its pixels at base + offset."""
        return [base + self.offset, self.width, self.height, self.width_pt, self.height_pt]


@dataclasses.dataclass(frozen=True)
class Batch:
    """A checked stream: the document's page count, the first page (0-based), its pages."""

    document_pages: int
    first: int
    pages: tuple[Page, ...]

    @property
    def end(self) -> int:
        """The page after this batch's last (0-based): the next batch's first."""
        return self.first + len(self.pages)


def stream_size(pixel_sizes: list[tuple[int, int]]) -> int:
    """Bytes of a stream of pages of these (width, height)."""
    return STREAM_HEADER.size + sum(PAGE_HEADER.size + w * h * BYTES_PER_PIXEL
                                    for w, h in pixel_sizes)


def pack_stream_header(document_pages: int, first: int, count: int) -> bytes:
    return STREAM_HEADER.pack(MAGIC, document_pages, first, count)


def pack_page_header(width: int, height: int, width_pt: float, height_pt: float) -> bytes:
    return PAGE_HEADER.pack(width, height, width_pt, height_pt)


def check(read: Callable[[int, int], bytes], length: int, *, first: int,
          document_pages: int | None, dpi: int, limits: PixelLimits,
          max_pages: int) -> Batch:
    """The Batch of a stream of `length` bytes, read with read(size, offset) (the server:
    os.pread from the memfd; Page.offset is from the stream's start), which must start at
    page `first` of a document of `document_pages` pages (None: the first batch says);
    StreamError for anything else. Reads the headers only."""
    if length < STREAM_HEADER.size:
        raise StreamError("shorter than its header")
    magic, pages, start, count = STREAM_HEADER.unpack(_read(read, STREAM_HEADER.size, 0))
    if magic != MAGIC:
        raise StreamError("not a pixel stream")
    if not 1 <= pages <= min(limits.pages, max_pages):
        raise StreamError("a page count beyond the limits")
    if document_pages is not None and pages != document_pages:
        raise StreamError("a page count different from the batch before")
    if start != first or not 1 <= count <= pages - first:
        raise StreamError("not the pages asked for")
    # Before the first page header is read: even pages of one pixel each must fit.
    if STREAM_HEADER.size + count * (PAGE_HEADER.size + BYTES_PER_PIXEL) > length:
        raise StreamError("too short for its page count")
    scale = dpi / _POINTS_PER_INCH
    at, end = STREAM_HEADER.size, length
    checked = []
    for index in range(first, first + count):
        if at + PAGE_HEADER.size > end:
            raise StreamError("truncated in a page header")
        width, height, width_pt, height_pt = PAGE_HEADER.unpack(
            _read(read, PAGE_HEADER.size, at))
        try:
            expected = pixel_size(width_pt, height_pt, scale, index + 1, limits)
        except Problem:
            raise StreamError("a page beyond the pixel limit, or of no size") from None
        if (width, height) != expected:
            raise StreamError("pixels that do not match the page's size at the dpi")
        page = Page(at + PAGE_HEADER.size, width, height, width_pt, height_pt)
        if page.offset + page.size > end:
            raise StreamError("truncated in a page's pixels")
        checked.append(page)
        at = page.offset + page.size
    if at != end:
        raise StreamError("bytes after the last page")
    return Batch(pages, first, tuple(checked))


def _read(read: Callable[[int, int], bytes], size: int, offset: int) -> bytes:
    data = read(size, offset)
    if len(data) != size:
        raise StreamError("ends inside a header")
    return data
