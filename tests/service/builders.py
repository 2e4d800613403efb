"""Inputs only the service tests need (runs in the test process): documents and images
that drive the sandbox's limits, and an image type no operation takes. Ordinary PDFs and
images come from the shared builders in tests/pdfs.py.
"""
from __future__ import annotations

import io

import pikepdf
from PIL import Image


#: Params that make `text` slow on slow_text_pdf: pypdf's extraction (PDFium, the
#: default engine, reads 100,000 operators in 0.1 s).
SLOW_TEXT = {"engine": "pypdf"}


def slow_text_pdf(operators: int = 100_000) -> bytes:
    """One page whose (8 KB compressed) content takes seconds of CPU to extract text from
    with pypdf (post it with SLOW_TEXT)."""
    doc = pikepdf.new()
    doc.add_blank_page(page_size=(200, 200))
    font = pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1,
                              BaseFont=pikepdf.Name.Helvetica)
    page = doc.pages[0]
    page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
    page.Contents = doc.make_stream(b"BT /F1 12 Tf 10 10 Td (x) Tj ET\n" * operators)
    out = io.BytesIO()
    doc.save(out, compress_streams=True)
    return out.getvalue()


def big_png(side: int = 6000) -> bytes:
    """A black RGB PNG of side x side pixels: ~0.5 MB that decodes to 3*side^2 bytes
    (108 MB at 6000), under the operations' pixel cap, over a small memory limit."""
    out = io.BytesIO()
    Image.new("RGB", (side, side)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (4, 4)).save(out, "GIF")
    return out.getvalue()
