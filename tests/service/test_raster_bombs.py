"""Hostile rasters over HTTP (issue 9): a page that draws an image bomb, for every
operation that draws pages, at its largest resolution. Each answers 2xx or a 422 within
its limits (never a 5xx, never past its deadline) and the server goes on serving. (Here
all five answer 200 in 1-3 s: PDFium draws the image at the size it is shown, never
decoding its 1.2 GB whole.)"""
from __future__ import annotations

import io
import time
import zlib

import pikepdf
import pytest

from tests.pdfs import make_pdf

pytestmark = pytest.mark.timeout(240)

BOMB_SIDE = 20_000   # a 20,000 x 20,000 RGB image: 1.2 GB of pixels in 1.2 MB of Flate


def zeros_flate(total: int) -> bytes:
    """zlib data of `total` zero bytes, made in milliseconds: once the compressor's window
    is all zeros, every further MiB compresses to the same bytes (flushed to a byte
    boundary), so they are repeated, and the Adler-32 of zeros written by hand."""
    chunk = 1 << 20
    count, rest = divmod(total, chunk)
    assert count >= 2
    deflate = zlib.compressobj(9)
    first = deflate.compress(bytes(chunk)) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(bytes(chunk)) + deflate.flush(zlib.Z_FULL_FLUSH)
    body = first + again * (count - 1) + deflate.compress(bytes(rest)) + deflate.flush()
    return body[:-4] + ((total % 65521) << 16 | 1).to_bytes(4, "big")


def image_bomb_pdf() -> bytes:
    """One A4 page of text that draws a BOMB_SIDE-square Flate image over itself."""
    pdf = pikepdf.open(io.BytesIO(make_pdf(1, size=(595, 842))))
    image = pdf.make_stream(b"", Type=pikepdf.Name.XObject, Subtype=pikepdf.Name.Image,
                            Width=BOMB_SIDE, Height=BOMB_SIDE, BitsPerComponent=8,
                            ColorSpace=pikepdf.Name.DeviceRGB)
    image.write(zeros_flate(BOMB_SIDE * BOMB_SIDE * 3), filter=pikepdf.Name.FlateDecode)
    page = pdf.pages[0]
    page.add_resource(image, pikepdf.Name.XObject, pikepdf.Name.Bomb)
    page.contents_add(pdf.make_stream(b"q 595 0 0 842 0 0 cm /Bomb Do Q"))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def test_zeros_flate_is_exactly_that_many_zeros():
    total = 3 * (1 << 20) + 12345
    assert zlib.decompress(zeros_flate(total)) == bytes(total)


@pytest.mark.parametrize("operation, params", [
    ("render", {"dpi": "600"}),
    ("thumbnail", {"width": "2048"}),
    ("safe", {"dpi": "600"}),
    ("redact", {"terms": '["page"]', "all_pages": "true", "dpi": "300"}),
    ("ocr", {"dpi": "600"}),
])
def test_an_image_bomb_page_at_the_highest_resolution(server, operation, params):
    document = image_bomb_pdf()
    started = time.monotonic()
    reply = server.post(operation, [document], params, timeout=200)
    elapsed = time.monotonic() - started
    assert reply.status in (200, 422), (operation, reply.status, reply.body[:300])
    # within the job's own wall limit (30 s), safe's few jobs, and a loaded machine
    assert elapsed < 150, (operation, elapsed)
    assert server.get("/health").status == 200
    assert server.post("info", [make_pdf(1)]).status == 200   # the sandbox still serves
