"""Small PDF and image builders for the service tests (runs in the test process).

Kept minimal on purpose: the operations' own tests own the thorough builders.
"""
from __future__ import annotations

import io

import pikepdf
from PIL import Image


def _save(pdf: pikepdf.Pdf, **kw) -> bytes:
    out = io.BytesIO()
    pdf.save(out, **kw)
    return out.getvalue()


def pdf(pages: int = 1, *, width: float = 200, text: str | None = None,
        password: str | None = None) -> bytes:
    """`pages` pages of `width` x 200 pt; with `text`, each page shows it (Helvetica)."""
    doc = pikepdf.new()
    font = pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1,
                              BaseFont=pikepdf.Name.Helvetica)
    for _ in range(pages):
        doc.add_blank_page(page_size=(width, 200))
        if text is not None:
            page = doc.pages[-1]
            page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
            page.Contents = doc.make_stream(f"BT /F1 12 Tf 10 100 Td ({text}) Tj ET".encode())
    kw = {}
    if password is not None:
        kw["encryption"] = pikepdf.Encryption(owner=password, user=password, R=6)
    return _save(doc, **kw)


def slow_text_pdf(operators: int = 100_000) -> bytes:
    """One page whose (8 KB compressed) content takes seconds of CPU to extract text from."""
    doc = pikepdf.new()
    doc.add_blank_page(page_size=(200, 200))
    font = pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1,
                              BaseFont=pikepdf.Name.Helvetica)
    page = doc.pages[0]
    page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
    page.Contents = doc.make_stream(b"BT /F1 12 Tf 10 10 Td (x) Tj ET\n" * operators)
    return _save(doc, compress_streams=True)


def big_png(side: int = 6000) -> bytes:
    """A black RGB PNG of side x side pixels: ~0.5 MB that decodes to 3*side^2 bytes
    (108 MB at 6000), under the operations' pixel cap, over a small memory limit."""
    out = io.BytesIO()
    Image.new("RGB", (side, side)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def png(width: int = 20, height: int = 10) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int = 10, height: int = 20) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 30, 200)).save(out, "JPEG")
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (4, 4)).save(out, "GIF")
    return out.getvalue()
