"""Embedded files: attach, then attachments (list and extract), in-process; the files
come back byte-identical, names reduced to the safe charset."""
from __future__ import annotations

import io
import zipfile

import pikepdf
import pypdf

from tests.pdfs import make_active_pdf, make_image_png, make_pdf

PNG = make_image_png(20, 10)
BLOB = bytes(range(256)) * 40 + b"\x00end"
ZIPPED = b"PK\x03\x04" + bytes(60)


def test_attach_then_extract_is_byte_identical(call):
    answer = call("attach", [make_pdf(2), PNG, BLOB, ZIPPED],
                  names="../../etc/pic ture.png, notes\x7f.bin,a.zip")
    assert answer.report == {"attached": ["pic_ture.png", "notes_.bin", "a.zip"]}
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        assert sorted(pdf.attachments) == ["a.zip", "notes_.bin", "pic_ture.png"]
    assert sorted(pypdf.PdfReader(io.BytesIO(answer.file)).attachments) == [
        "a.zip", "notes_.bin", "pic_ture.png"]
    listed = call("attachments", [answer.file]).json()
    assert [(a["name"], a["size"], a["mime_type"]) for a in listed["attachments"]] == [
        ("a.zip", len(ZIPPED), "application/zip"),
        ("notes_.bin", len(BLOB), "application/octet-stream"),
        ("pic_ture.png", len(PNG), "image/png")]
    extracted = call("attachments", [answer.file], extract="true")
    with zipfile.ZipFile(io.BytesIO(extracted.body)) as zf:
        assert zf.namelist() == ["attachment-1-a.zip", "attachment-2-notes_.bin",
                                 "attachment-3-pic_ture.png"]
        assert [zf.read(n) for n in zf.namelist()] == [ZIPPED, BLOB, PNG]
    assert extracted.report["attachments"] == listed["attachments"]


def test_attach_default_names_and_no_replacement(call):
    once = call("attach", [make_pdf(1), PNG]).file
    twice = call("attach", [once, BLOB], names="attachment-1").file
    names = [a["name"] for a in call("attachments", [twice]).json()["attachments"]]
    assert names == ["attachment-1", "attachment-1-2"]
    assert call("attach", [make_pdf(1), PNG], names="a,b").problem == "bad_parameter"
    assert call("attach", [PNG, PNG]).problem == "not_a_pdf"


def test_attachments_of_a_document_with_none_and_of_an_active_one(call):
    assert call("attachments", [make_pdf(1)]).json() == {"attachments": [], "truncated": False}
    empty = call("attachments", [make_pdf(1)], extract="true")
    assert empty.manifest["media_type"] == "application/zip" and empty.files == []
    (entry,) = call("attachments", [make_active_pdf()]).json()["attachments"]
    assert entry["name"] == "a.txt" and entry["size"] == len("NTEMBEDDED_SECRET")
