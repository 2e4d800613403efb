"""safe (issue 9) when its children go wrong, over real HTTP (tests.attack.hostile_server):
phase 1 is the child that parses the document, so its exploit chooses every byte of
its output memfd, and phase 2 maps that memfd whole. A phase-2 child so reached (the
back door here; Tesseract or zlib on hostile pixels in the wild) answers whatever PDF it
likes: what reaches the client must still be pixels only, with one batch as with many."""
from __future__ import annotations

import io
import json

import pikepdf
import pytest
from pikepdf import Array, Dictionary, Name, String

from tests.attack.conftest import order

pytestmark = pytest.mark.timeout(60)

_SCRIPT = "app.alert('phase two')"


def _active_pdf() -> bytes:
    """What a phase-2 child gone wrong answers: one page like its own, plus an
    OpenAction, document JavaScript, a link annotation running JavaScript, a page /AA."""
    pdf = pikepdf.new()
    script = Dictionary(S=Name.JavaScript, JS=String(_SCRIPT))
    image = pdf.make_stream(b"\xff\xff\xff", Type=Name.XObject, Subtype=Name.Image,
                            Width=1, Height=1, ColorSpace=Name.DeviceRGB,
                            BitsPerComponent=8)
    pdf.pages.append(pikepdf.Page(Dictionary(
        Type=Name.Page, MediaBox=Array([0, 0, 72, 72]),
        Resources=Dictionary(XObject=Dictionary(Im0=image)),
        Contents=pdf.make_stream(b"q 72 0 0 72 0 0 cm /Im0 Do Q"),
        Annots=Array([pdf.make_indirect(Dictionary(
            Type=Name.Annot, Subtype=Name.Link, Rect=Array([0, 0, 72, 72]), A=script))]),
        AA=Dictionary(O=script))))
    pdf.Root.OpenAction = script
    pdf.Root.Names = Dictionary(JavaScript=Dictionary(Names=Array([String("x"), script])))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def test_a_lying_phase_two_cannot_put_active_content_in_a_one_batch_answer(hostile_server):
    """Phase 1 sends a valid one-page stream whose (ignored) first output is an order;
    phase 2 obeys it and answers a PDF full of JavaScript. Before the fix a one-batch
    conversion answered phase 2's PDF as it was (the merge, which keeps of each page its
    box, image and content only, ran with two batches or more)."""
    manifest = {"media_type": "application/pdf", "filename": "safe.pdf",
                "report": {"pages": 1}, "files": 1}
    phase2 = {"do": "answer_bytes",
              "hex": [json.dumps(manifest).encode().hex(), _active_pdf().hex()]}
    reply = hostile_server.post("safe", [order(
        {"do": "safe_pixels", "points": 72, "dpi": 72, "next": phase2})],
        params={"dpi": "72"})
    assert reply.status == 200, (reply.status, reply.body[:300])
    assert _SCRIPT.encode() not in reply.body and b"/JavaScript" not in reply.body
    with pikepdf.open(io.BytesIO(reply.body)) as pdf:
        assert len(pdf.pages) == 1
        assert set(pdf.pages[0].obj.keys()) <= {"/Type", "/Parent", "/MediaBox",
                                                "/Resources", "/Contents"}
        assert set(pdf.Root.keys()) == {"/Type", "/Pages"}
    report = json.loads(reply.headers["x-notrace-report"])
    assert report["pages"] == 1 and report["batches"] == 1   # the server's, not phase 2's


def test_a_real_one_batch_conversion_still_answers(hostile_server):
    """The merge now joins even one batch: a real document still converts."""
    from tests.pdfs import make_pdf
    reply = hostile_server.post("safe", [make_pdf(2)], params={"dpi": "36"})
    assert reply.status == 200, (reply.status, reply.body[:300])
    with pikepdf.open(io.BytesIO(reply.body)) as pdf:
        assert len(pdf.pages) == 2
        assert pdf.docinfo.get("/Producer") == "notrace safe"
