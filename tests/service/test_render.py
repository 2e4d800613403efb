"""render and thumbnail over HTTP (issue 9): a zip of images of the right size, one image
with its own media type, and a page too large to render refused before it is drawn."""
from __future__ import annotations

import io
import time
import zipfile

import pikepdf
import pytest
from PIL import Image

from tests.pdfs import make_pdf

pytestmark = pytest.mark.timeout(60)


def _huge_page() -> bytes:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    pdf.pages[0].obj.MediaBox = pikepdf.Array([0, 0, 100000, 100000])
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def test_render_thumbnail_and_a_page_too_large_over_http(server):
    doc = make_pdf(2)  # Letter
    reply = server.post("render", [doc], {"dpi": "72", "format": "jpeg", "quality": "60"})
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"] == "application/zip"
    assert 'filename="render.zip"' in reply.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(reply.body)) as zf:
        assert zf.namelist() == ["page-0001.jpg", "page-0002.jpg"]
        sizes = [Image.open(io.BytesIO(zf.read(n)), formats=["JPEG"]).size
                 for n in zf.namelist()]
    assert sizes == [(612, 792)] * 2

    reply = server.post("thumbnail", [doc], {"page": "-1"})
    assert reply.status == 400 and reply.headers["content-type"] == "application/problem+json"
    reply = server.post("thumbnail", [doc], {"page": "2", "width": "128"})
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"] == "image/png"
    assert 'filename="page-2.png"' in reply.headers["content-disposition"]
    assert Image.open(io.BytesIO(reply.body), formats=["PNG"]).size == (128, 166)

    started = time.monotonic()
    reply = server.post("render", [_huge_page()], {"dpi": "600"})
    assert time.monotonic() - started < 5
    assert reply.status == 422 and reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["type"].endswith("/problems/too-large")
    assert server.post("thumbnail", [doc]).status == 200  # still serving
