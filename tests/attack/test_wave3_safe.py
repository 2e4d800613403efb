"""safe (issue 9) when its children go wrong, over real HTTP (tests.attack.hostile_server):
phase 1 is the child that parses the document, so its exploit chooses every byte of
its output memfd, and phase 2 maps that memfd whole. A phase-2 child so reached (the
back door here; Tesseract or zlib on hostile pixels in the wild) answers whatever PDF it
likes: what reaches the client must still be pixels only, with one batch as with many."""
from __future__ import annotations

import io
import json
import time
import zlib

import pikepdf
import pytest
from pikepdf import Array, Dictionary, Name, String

from tests.attack.conftest import hostile_serving, order, server_pids
from tests.held import memfds

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


def _dressed_pdf() -> bytes:
    """A page as phase 2 makes one (a 1 x 1 image Im0 over 72 x 72 points) plus what a
    phase-2 child gone wrong may add without an action: an embedded font program, a
    JBIG2 image and visible text drawn with them."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(Dictionary(
        Type=Name.Font, Subtype=Name.TrueType, BaseFont=Name.Evil,
        FontDescriptor=Dictionary(Type=Name.FontDescriptor, FontName=Name.Evil, Flags=32,
                                  FontFile2=pdf.make_stream(b"EVILFONTPROGRAM"))))
    jbig2 = pdf.make_stream(b"EVILJBIG2", Type=Name.XObject, Subtype=Name.Image, Width=1,
                            Height=1, BitsPerComponent=1, ColorSpace=Name.DeviceGray,
                            Filter=Name.JBIG2Decode)
    image = pdf.make_stream(zlib.compress(b"\xff" * 3), Type=Name.XObject,
                            Subtype=Name.Image, Width=1, Height=1,
                            ColorSpace=Name.DeviceRGB, BitsPerComponent=8,
                            Filter=Name.FlateDecode)
    pdf.pages.append(pikepdf.Page(Dictionary(
        Type=Name.Page, MediaBox=Array([0, 0, 72, 72]),
        Resources=Dictionary(XObject=Dictionary(Im0=image, Im1=jbig2),
                             Font=Dictionary(F1=font)),
        Contents=pdf.make_stream(b"/Im1 Do BT /F1 12 Tf 1 0 0 1 5 5 Tm (visible) Tj ET"))))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


@pytest.mark.parametrize("ocr", [False, True])
def test_a_lying_phase_two_cannot_put_fonts_filters_or_drawings_in_the_answer(
        hostile_server, ocr):
    """Dangerzone's promise is pixels only: the merge copied a phase-2 page's resources
    and content whole (an embedded font program, a JBIG2 image, visible text reached the
    client). Now each page is made anew from its box and its image's data; with OCR the
    words' operations are kept, in the merge's own invisible layer and glyph-less font."""
    manifest = {"media_type": "application/pdf", "filename": "safe.pdf", "report": {},
                "files": 1}
    phase2 = {"do": "answer_bytes",
              "hex": [json.dumps(manifest).encode().hex(), _dressed_pdf().hex()]}
    reply = hostile_server.post("safe", [order(
        {"do": "safe_pixels", "points": 72, "dpi": 72, "next": phase2})],
        params={"dpi": "72", "ocr": str(ocr).lower()})
    assert reply.status == 200, (reply.status, reply.body[:300])
    assert b"EVIL" not in reply.body
    with pikepdf.open(io.BytesIO(reply.body)) as pdf:
        page = pdf.pages[0]
        assert set(page.obj.Resources.XObject.keys()) == {"/Im0"}
        assert page.obj.Resources.XObject.Im0.Filter == Name.FlateDecode
        contents = b"".join(stream.read_bytes() for stream in (
            page.obj.Contents if isinstance(page.obj.Contents, Array)
            else [page.obj.Contents]))
        fonts = page.obj.Resources.get("/Font", Dictionary())
        if not ocr:
            assert contents == b"q 72 0 0 72 0 0 cm /Im0 Do Q" and not fonts
        else:
            assert set(fonts.keys()) == {"/NotraceOCR"}
            assert b"3 Tr" in contents and b"(visible) Tj" in contents
            assert b"/Im1" not in contents and b"/F1 " not in contents
            assert "/FontFile2" not in repr(fonts.NotraceOCR.DescendantFonts[0])


def test_a_real_one_batch_conversion_still_answers(hostile_server):
    """The merge now joins even one batch: a real document still converts."""
    from tests.pdfs import make_pdf
    reply = hostile_server.post("safe", [make_pdf(2)], params={"dpi": "36"})
    assert reply.status == 200, (reply.status, reply.body[:300])
    with pikepdf.open(io.BytesIO(reply.body)) as pdf:
        assert len(pdf.pages) == 2
        assert pdf.docinfo.get("/Producer") == "notrace safe"


def test_a_phase_one_that_sends_one_page_a_batch_is_stopped_at_the_second(hostile_server):
    """A document of 400 one-point pages fits one batch; a lying phase 1 sends one page
    each time, which the stream check alone accepts: 400 phase-1 children, 400 phase-2
    ones and 7 merges for one request (minutes of two workers, each child allowed its
    whole wall limit), before the fix. A batch that is not the last must be full: its
    stream and the next batch's first page together exceed the budget."""
    started = time.monotonic()
    reply = hostile_server.post("safe", [order(
        {"do": "safe_pixels", "pages": 400, "points": 1, "dpi": 72, "per_batch": 1,
         "next": None})], params={"dpi": "72"})
    assert reply.status == 422 and reply.problem_type.endswith("/processing-crashed"), (
        reply.status, reply.body[:300])
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def small_server():
    """A hostile server whose children may answer 4 MiB: batches of 1.5 MiB of pixels."""
    with hostile_serving({"NOTRACE_WORKERS": "2", "NOTRACE_CHILD_OUTPUT_MB": "4",
                          "NOTRACE_CHILD_WALL_S": "10"}) as server:
        yield server


def test_batch_pdfs_the_answer_cannot_hold_are_not_kept_by_the_server(small_server):
    """Each batch's PDF is copied into a memfd the server keeps until the merge (up to 62
    of them): a phase 2 that answers 3 MiB a batch (or pixels that do not compress) made
    the server hold 3 MiB x batches where the answer may be 4 MiB in all. Past the output
    limit the conversion is refused at once: 422 output-too-large after two batches."""
    pid = server_pids(small_server)[0]
    phase2 = {"do": "answer", "outputs": [[json.dumps(
        {"media_type": "application/pdf", "filename": "safe.pdf", "report": {},
         "files": 1})]], "body_mb": 3}
    started = time.monotonic()
    reply = small_server.post("safe", [order(
        {"do": "safe_pixels", "pages": 60, "points": 288, "dpi": 72, "next": phase2})],
        params={"dpi": "72"})
    assert reply.status == 422 and reply.problem_type.endswith("/output-too-large"), (
        reply.status, reply.body[:300])
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while memfds(pid):
        assert time.monotonic() < deadline, memfds(pid)
        time.sleep(0.05)


def test_a_real_document_of_several_batches_still_converts(small_server):
    """Full batches pass the new checks: 6 US Letter pages at 72 dpi, 1.4 MiB of pixels
    each, one a batch (two do not fit 1.5 MiB), their PDFs small."""
    from tests.pdfs import make_pdf
    reply = small_server.post("safe", [make_pdf(6)], params={"dpi": "72"})
    assert reply.status == 200, (reply.status, reply.body[:300])
    report = json.loads(reply.headers["x-notrace-report"])
    assert report["pages"] == 6 and report["batches"] == 6
    with pikepdf.open(io.BytesIO(reply.body)) as pdf:
        assert len(pdf.pages) == 6


def test_ocr_batches_of_a_few_pages_are_full_batches(hostile_server):
    """With ocr a batch stops at OCR_BATCH_PAGES pages, however few bytes: such a batch
    is full too (the first version of the check refused every OCR conversion of more
    pages than one batch takes)."""
    from notrace.operations.safe import OCR_BATCH_PAGES
    from tests.pdfs import make_pdf
    pages = 2 * OCR_BATCH_PAGES + 1
    reply = hostile_server.post("safe", [make_pdf(pages, size=(200, 200))],
                                params={"dpi": "72", "ocr": "true"})
    assert reply.status == 200, (reply.status, reply.body[:300])
    report = json.loads(reply.headers["x-notrace-report"])
    assert report["pages"] == pages and report["batches"] == 3


def _problem(code: str) -> list[str]:
    return [json.dumps({"problem": code, "detail": code}).encode().hex()]


def test_the_document_password_reaches_only_the_child_that_opens_the_document(
        hostile_server):
    """Phase 2 and the merge never read the document, so they are never told its
    password: a phase-2 child gone wrong could otherwise write it into the answer (an
    OCR word, pixels) that the user believes clean. The probe answers password-wrong
    when its job's params hold a password."""
    probe = {"do": "answer_if_given", "key": "password",
             "given": _problem("password_wrong"), "absent": _problem("bad_parameter")}
    reply = hostile_server.post("safe", [order(
        {"do": "safe_pixels", "points": 72, "dpi": 72, "next": probe})],
        params={"dpi": "72"}, headers={"X-Notrace-Password": "Qx7-phase-one-only"})
    assert reply.status in (400, 422), (reply.status, reply.body[:300])
    assert not reply.problem_type.endswith("/password-wrong"), reply.body[:300]
