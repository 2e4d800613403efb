"""Every operation end to end over HTTP; results reopened with pikepdf AND pypdf."""
from __future__ import annotations

import io
import json
import zipfile

import pikepdf
import pypdf
import pytest

from notrace.operations import OPERATIONS
from tests.pdfs import (make_encrypted_pdf, make_form_pdf, make_image_jpeg, make_image_png,
                        make_pdf)


def _pages_both(data: bytes, password: str | None = None) -> list[float]:
    """Page widths, read by pikepdf and by pypdf, which must agree."""
    with pikepdf.open(io.BytesIO(data), password=password or "") as doc:
        assert doc.is_encrypted == (password is not None)
        widths = [float(p.mediabox[2]) for p in doc.pages]
    if password is not None:
        # pypdf needs the `cryptography` package for AES-256, not installed here (even
        # opening raises DependencyError): pikepdf's reading is the check.
        return widths
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert [float(p.mediabox.width) for p in reader.pages] == widths
    return widths


def _zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


_THREE = make_pdf(3, text="hello")
_IMAGES_PDF = None  # built lazily from from-images' own output


def _check_pdf(pages: int, password: str | None = None):
    def check(reply):
        assert reply.headers["content-type"] == "application/pdf"
        assert reply.headers["content-disposition"].startswith("attachment;")
        assert len(_pages_both(reply.body, password)) == pages
    return check


def _check_json(key: str):
    def check(reply):
        assert reply.headers["content-type"] == "application/json"
        assert key in reply.json()
    return check


def _check_zip(count: int):
    def check(reply):
        assert reply.headers["content-type"] == "application/zip"
        members = _zip_members(reply.body)
        assert len(members) == count
        for data in members.values():
            if data.startswith(b"%PDF-"):
                _pages_both(data)
    return check


CASES = {
    "merge": ([make_pdf(1), make_pdf(2)], {}, _check_pdf(3)),
    "split": ([_THREE], {"every": "1"}, _check_zip(3)),
    "select": ([_THREE], {"pages": "3,1"}, _check_pdf(2)),
    "delete": ([_THREE], {"pages": "1"}, _check_pdf(2)),
    "rotate": ([_THREE], {"angle": "90"}, _check_pdf(3)),
    "crop": ([_THREE], {"left": "10"}, _check_pdf(3)),
    "compress": ([_THREE], {}, _check_pdf(3)),
    "linearize": ([_THREE], {}, _check_pdf(3)),
    "repair": ([_THREE], {}, _check_pdf(3)),
    "info": ([_THREE], {}, _check_json("pages")),
    "text": ([_THREE], {}, lambda r: "hello" in r.body.decode()),
    "metadata": ([_THREE], {"title": "New title"}, _check_pdf(3)),
    "sanitize": ([_THREE], {}, _check_pdf(3)),
    "encrypt": ([_THREE], {"password": "s3cret"}, _check_pdf(3, password="s3cret")),
    "decrypt": ([make_encrypted_pdf(2, user="pw")], {"password": "pw"}, _check_pdf(2)),
    "watermark": ([_THREE], {"text": "DRAFT"}, _check_pdf(3)),
    "number": ([_THREE], {}, _check_pdf(3)),
    "flatten": ([_THREE], {}, _check_pdf(3)),
    "images": ([_THREE], {}, _check_zip(0)),
    "from-images": ([make_image_png(), make_image_jpeg()], {}, _check_pdf(2)),
    "overlay": ([_THREE, make_pdf(1)], {"mode": "underlay"}, _check_pdf(3)),
    "scale": ([_THREE], {"size": "A5"}, _check_pdf(3)),
    "nup": ([_THREE], {"per_sheet": "2"}, _check_pdf(2)),
    "booklet": ([_THREE], {}, _check_pdf(2)),
    "remove-annotations": ([_THREE], {"types": "Link"}, _check_pdf(3)),
    "remove-blank": ([_THREE], {"pages": "2-"}, _check_pdf(3)),
    "bookmarks": ([_THREE], {}, _check_json("bookmarks")),
    "set-bookmarks": ([_THREE], {"bookmarks": '[{"title": "T", "page": 3}]'}, _check_pdf(3)),
    "stamp-image": ([_THREE, make_image_png()], {"position": "top-right"}, _check_pdf(3)),
    "form-fields": ([_THREE], {}, _check_json("fields")),
    "fill-form": ([make_form_pdf()], {"values": '{"name": "Ada"}'}, _check_pdf(1)),
    "attachments": ([_THREE], {"extract": "true"}, _check_zip(0)),
    # any kind of file after the PDF: an image, a zip, bytes the server cannot name
    "attach": ([_THREE, make_image_png(), b"PK\x05\x06" + bytes(18), b"notes"],
               {"names": "a.png,b.zip,c.txt"}, _check_pdf(3)),
    "ocr": ([_THREE], {"dpi": "72", "pages": "1"}, _check_pdf(3)),
    "render": ([_THREE], {"dpi": "36", "pages": "2-"}, _check_zip(2)),
    "thumbnail": ([_THREE], {"width": "64"},
                  lambda r: r.headers["content-type"] == "image/png"
                  and r.body.startswith(b"\x89PNG")),
    "redact": ([_THREE], {"terms": '["page 2"]'}, _check_pdf(3)),
    "safe": ([_THREE], {"dpi": "36"}, _check_pdf(3)),
}


def test_every_operation_has_a_case():
    assert set(CASES) == set(OPERATIONS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_operation_end_to_end(server, name):
    files, params, check = CASES[name]
    reply = server.post(name, files, params)
    assert reply.status == 200, reply.body[:300]
    result = check(reply)
    assert result is None or result is True


def test_images_extracted_from_a_pdf_with_images(server):
    made = server.post("from-images", [make_image_png(), make_image_jpeg(), make_image_png(8, 8)])
    assert made.status == 200
    reply = server.post("images", [made.body])
    assert reply.status == 200
    assert len(_zip_members(reply.body)) == 3


def test_multipart_order_is_the_order_used(server):
    widths = [300, 100, 200]
    files = [make_pdf(1, size=(w, 200)) for w in widths]
    # Filenames sort the other way round: the order must come from the parts, not names.
    reply = server.post("merge", files, filenames=["c.pdf", "b.pdf", "a.pdf"])
    assert reply.status == 200
    assert _pages_both(reply.body) == widths
    reply = server.post("merge", files[::-1], filenames=["a.pdf", "b.pdf", "c.pdf"])
    assert _pages_both(reply.body) == widths[::-1]


def test_parameters_before_files_are_accepted(server):
    from tests.service.server import multipart
    body, ctype = multipart([_THREE], {})
    # Move the text part first by building it by hand.
    boundary = ctype.split("boundary=")[1]
    field = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"pages\"\r\n\r\n2\r\n"
             ).encode()
    reply = server.request("POST", "/api/v1/select", field + body, {"Content-Type": ctype})
    assert reply.status == 200
    assert len(_pages_both(reply.body)) == 1


def test_raw_pdf_body_with_query_parameters(server):
    reply = server.request("POST", "/api/v1/rotate?angle=180&pages=1", _THREE,
                           {"Content-Type": "application/pdf"})
    assert reply.status == 200
    with pikepdf.open(io.BytesIO(reply.body)) as doc:
        assert [int(p.obj.get("/Rotate", 0)) for p in doc.pages] == [180, 0, 0]


def test_crop_sets_boxes_and_refuses_an_empty_crop(server):
    reply = server.post("crop", [_THREE], {"pages": "2-", "left": "12", "top": "100.5"})
    assert reply.status == 200, reply.body[:300]
    assert json.loads(reply.headers["x-notrace-report"]) == {"cropped": 2}
    with pikepdf.open(io.BytesIO(reply.body)) as doc:
        boxes = [[float(v) for v in p.cropbox] for p in doc.pages]
        assert [[float(v) for v in p.mediabox] for p in doc.pages] == [[0, 0, 612, 792]] * 3
    assert boxes == [[0, 0, 612, 792]] + [[12, 0, 612, 691.5]] * 2
    assert [[float(v) for v in p.cropbox] for p in pypdf.PdfReader(io.BytesIO(reply.body)).pages] \
        == boxes
    # Knowable from the parameters: refused before any child, naming the parameter.
    reply = server.post("crop", [_THREE], {"box": "0,0,0.5,10"})
    assert (reply.status, reply.problem_type) == (400, "/problems/bad-parameter")
    assert reply.json()["param"] == "box"
    # Known only once the document is open: the child's bad_parameter, also a 400.
    reply = server.post("crop", [_THREE], {"left": "400", "right": "400"})
    assert (reply.status, reply.problem_type) == (400, "/problems/bad-parameter")
    assert reply.json()["detail"] == "the margins leave page 1 less than 1 point wide or high"


def test_raw_body_refused_for_multi_input_operations(server):
    reply = server.request("POST", "/api/v1/merge", _THREE, {"Content-Type": "application/pdf"})
    assert reply.status == 415
    assert reply.problem_type == "/problems/unsupported-media-type"


def test_sanitize_report_header_is_json(server):
    reply = server.post("sanitize", [_THREE])
    assert reply.status == 200
    assert isinstance(json.loads(reply.headers["x-notrace-report"]), dict)


def test_catalogue_comes_from_the_declarations(server):
    reply = server.get("/api/v1/operations")
    assert reply.status == 200
    catalogue = reply.json()["operations"]
    assert [op["name"] for op in catalogue] == list(OPERATIONS)
    assert catalogue == [op.describe() for op in OPERATIONS.values()]
    rotate = next(op for op in catalogue if op["name"] == "rotate")
    angle = next(p for p in rotate["params"] if p["name"] == "angle")
    assert angle["choices"] == [90, 180, 270]
    assert rotate["inputs"] == {"min": 1, "max": 1, "media_types": ["application/pdf"]}
