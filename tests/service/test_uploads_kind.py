"""What is a PDF is the parser's call: only clearly other formats (and nothing) get 415.

Runs in the test process against the shared real server (real sandbox): a document whose
`%PDF-` header comes after 1024 bytes, or that has none, is processed when qpdf recovers
it; images and ZIP archives are refused from their magic numbers before any job runs.
"""
from __future__ import annotations

import io
import zipfile

import pytest

from notrace.operations import OPERATIONS
from notrace.problems import HttpProblem
from notrace.uploads import check_kind, sniff
from tests.pdfs import make_image_jpeg, make_image_png, make_pdf
from tests.service import builders as b

PDF = make_pdf(2)
# Headers the old "%PDF- within the first 1024 bytes" check refused; qpdf recovers both.
LATE_HEADER = b"%junk before the header\n" * 60 + PDF          # 1440 bytes of junk first
NO_HEADER = PDF.replace(b"%PDF-", b"%XXXX", 1)


def _zip_holding(data: bytes) -> bytes:
    """A stored (uncompressed) ZIP whose first member is `data`: a PDF inside a ZIP shows
    `%PDF-` within its first bytes, and a scanning parser might even recover it."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("a.pdf", data)
    return out.getvalue()


def _webp() -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "WEBP")
    return out.getvalue()


def _tiff() -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "TIFF")
    return out.getvalue()


OTHER_FORMATS = {
    "a PNG image": make_image_png(),
    "a JPEG image": make_image_jpeg(),
    "a GIF image": b.gif(),
    "a TIFF image": _tiff(),
    "a WebP image": _webp(),
    "a ZIP archive": _zip_holding(PDF),
}


@pytest.mark.parametrize("data", [LATE_HEADER, NO_HEADER], ids=["header-after-1024", "no-header"])
def test_pdfs_qpdf_recovers_are_processed(server, data):
    assert b"%PDF-" not in data[:1024]
    reply = server.post("info", [data])
    assert reply.status == 200, reply.body[:300]
    assert reply.json()["pages"] == 2
    raw = server.request("POST", "/api/v1/rotate?angle=90", data,
                         {"Content-Type": "application/pdf"})
    assert raw.status == 200, raw.body[:300]
    assert raw.body.startswith(b"%PDF-")


@pytest.mark.parametrize("name", sorted(OTHER_FORMATS))
def test_other_formats_are_refused_by_their_magic(server, name):
    for reply in (server.post("info", [OTHER_FORMATS[name]]),
                  server.request("POST", "/api/v1/info", OTHER_FORMATS[name],
                                 {"Content-Type": "application/pdf"})):
        assert reply.status == 415, reply.body[:300]
        doc = reply.json()
        assert doc["type"] == "/problems/not-a-pdf"
        assert doc["detail"] == f"A file is {name}, not a PDF."


def test_an_empty_file_is_not_a_pdf(server):
    reply = server.post("info", [b""])
    assert (reply.status, reply.json()["detail"]) == (415, "A file is empty.")


def test_anything_else_goes_to_the_parser(server):
    """Unknown bytes are not refused from their look: the child answers, 422 malformed-pdf
    or (when it finds nothing of a PDF) 415 not-a-pdf, in its own words."""
    reply = server.post("info", [b" " * 1024 + b"%PDF-1.4 and nothing else"])
    assert reply.status in (415, 422), reply.body[:300]
    assert reply.json()["type"] in ("/problems/malformed-pdf", "/problems/not-a-pdf")
    assert "first 1024 bytes" not in reply.json()["detail"]


def test_sniff_and_check_kind():
    assert sniff(b"%PDF-1.7\n") == "application/pdf"
    assert sniff(b"PK\x05\x06" + bytes(18)) == "application/zip"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"garbage") is None
    info, from_images = OPERATIONS["info"], OPERATIONS["from-images"]
    check_kind(info, b"garbage")            # the parser decides
    check_kind(from_images, make_image_png()[:16])
    for head, op, slug in ((b"", info, "not-a-pdf"), (make_image_png()[:16], info, "not-a-pdf"),
                           (PDF[:16], from_images, "unsupported-image"),
                           (b.gif()[:16], from_images, "unsupported-image")):
        with pytest.raises(HttpProblem) as caught:
            check_kind(op, head)
        assert caught.value.type.slug == slug
