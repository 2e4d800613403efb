"""Every operation, on documents that exercise its features, in a process that forbids
imports and file opens after child.py's import and warm_up() (tests/operations/worker.py),
as the child's Landlock and seccomp confinement would. A missing pre-import shows here
as a violation instead of as a PermissionError in production."""
from __future__ import annotations

import json
import subprocess
import sys

from notrace.operations import OPERATIONS
from tests import pdfs
from tests.operations.conftest import ROOT
from tests.operations.test_corpus import WORKER


def test_every_operation_runs_confined(tmp_path):
    def save(name: str, data: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    doc = save("doc.pdf", pdfs.make_pdf(4, marker="A"))
    active = save("active.pdf", pdfs.make_active_pdf())
    form = save("form.pdf", pdfs.make_form_pdf())
    locked = save("locked.pdf", pdfs.make_encrypted_pdf(user="pw"))
    png = save("a.png", pdfs.make_image_png(300, 200, mode="RGBA"))
    jpeg = save("b.jpg", pdfs.make_image_jpeg(300, 200))
    gray = save("c.png", pdfs.make_image_png(20, 20, mode="L", dpi=300))
    marked = save("marked.pdf", _bookmarked(pdfs.make_pdf(4)))
    jobs = [
        ([doc, active], "merge", {}), ([doc], "split", {"ranges": "1-2,3-"}),
        ([doc], "select", {"pages": "3,1,1"}), ([doc], "delete", {"pages": "even"}),
        ([doc], "rotate", {"angle": "90"}), ([doc], "linearize", {}), ([doc], "repair", {}),
        ([doc], "crop", {"left": "10", "top": "20.5"}),
        ([doc], "crop", {"box": "10,10,300,400", "mode": "media"}),
        ([active], "info", {}), ([active], "text", {}), ([active], "sanitize",
                                                          {"remove_links": "true"}),
        ([active], "text", {"engine": "pypdf"}), ([doc], "text", {"layout": "boxes"}),
        ([locked], "text", {"password": "pw", "layout": "boxes"}),
        ([form], "text", {"layout": "boxes"}),
        ([active], "metadata", {"title": "t", "author": "", "keywords": "k"}),
        ([locked], "info", {"password": "pw"}), ([locked], "decrypt", {"password": "pw"}),
        ([doc], "encrypt", {"password": "pw", "allow_print": "false"}),
        ([doc], "watermark", {"text": "Draft (é) \\ €", "opacity": "0.4"}),
        ([doc], "number", {"format": "{n} / {total}", "position": "bottom-right"}),
        ([form], "flatten", {}),
        ([png, jpeg, gray], "from-images", {"page_size": "a4"}),
        ([png, jpeg, gray], "from-images", {}),
        ([doc, active], "overlay", {"mode": "underlay", "repeat": "cycle"}),
        ([doc], "scale", {"size": "210x297mm", "fit": "stretch"}),
        ([active], "scale", {"factor": "0.5"}),
        ([doc], "nup", {"per_sheet": "6", "border": "true", "margin": "5"}),
        ([doc], "booklet", {"sheet": "Legal"}),
        ([active], "remove-annotations", {}), ([form], "remove-annotations", {"types": "widget"}),
        ([active], "remove-blank", {}),
        ([doc], "set-bookmarks", {"bookmarks": '[{"title": "é", "page": 2, "children": '
                                               '[{"title": "x", "page": null}]}]'}),
        ([marked], "bookmarks", {}), ([marked, doc], "merge", {"bookmark_per_file": "true"}),
        ([marked], "split", {"by_bookmarks": "1"}), ([doc], "split", {"max_mb": "0.01"}),
        ([doc, png], "stamp-image", {"opacity": "0.5", "position": "top-right"}),
        ([doc, jpeg], "stamp-image", {"x": "10", "y": "10", "width": "50"}),
        ([form], "form-fields", {}), ([active], "form-fields", {}),
        ([form], "fill-form", {"values": '{"name": "Ada é"}', "flatten": "true"}),
        ([active], "attachments", {}), ([active], "attachments", {"extract": "true"}),
        ([doc, png, active], "attach", {"names": "a b.png,c/d.pdf"}),
        ([doc], "ocr", {"dpi": "72"}), ([locked], "ocr", {"password": "pw", "skip_text": "true"}),
        ([active], "redact", {"terms": '["page 1"]'}),
        ([form], "redact", {"boxes": '[{"page": 1, "x0": 0, "y0": 0, "x1": 200, "y1": 200}]',
                            "all_pages": "true", "color": "#ff0000"}),
        ([locked], "redact", {"password": "pw", "terms": '["p\\\\w+e"]', "regex": "true"}),
        ([doc], "render", {"dpi": "36"}), ([form], "render", {"format": "jpeg"}),
        ([active], "render", {"format": "webp", "quality": "50", "pages": "-1"}),
        ([locked], "thumbnail", {"password": "pw"}), ([form], "thumbnail", {"format": "jpeg"}),
        ([active], "safe", {"dpi": "36"}), ([form], "safe", {}),
    ]
    # Documents with images for images/compress: made by from-images, read back here.
    images_doc = save("images.pdf", _from_images([png, jpeg, gray]))
    jobs += [([images_doc], "images", {}), ([images_doc], "compress",
                                            {"image_dpi": "36", "image_quality": "40"}),
             ([images_doc], "compress", {})]
    config = {"jobs": [{"files": f, "op": op, "raw": raw} for f, op, raw in jobs]}
    proc = subprocess.run([sys.executable, str(WORKER), json.dumps(config)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    outcomes = [(x["op"], x["outcome"]) for x in lines if "outcome" in x]
    assert outcomes == [(op, "ok") for _f, op, _r in jobs], proc.stderr[-2000:]
    assert lines[-1] == {"violations": []}
    assert {op for _f, op, _r in jobs} == set(OPERATIONS)  # every operation is covered


def _from_images(paths: list[str]) -> bytes:
    from notrace.operations.child import run
    from pathlib import Path

    params = OPERATIONS["from-images"].validate({})
    answer = run([memoryview(Path(p).read_bytes()) for p in paths],
                 {"operation": "from-images", "params": params, "max_pages": 10})
    return answer[1]


def _bookmarked(data: bytes) -> bytes:
    from notrace.operations.child import run

    params = OPERATIONS["set-bookmarks"].validate(
        {"bookmarks": '[{"title": "a", "page": 1, "children": [{"title": "b", "page": 2}]}, '
                      '{"title": "c", "page": 3}]'})
    answer = run([memoryview(data)], {"operation": "set-bookmarks", "params": params,
                                      "max_pages": 10})
    return bytes(answer[1])
