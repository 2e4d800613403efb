"""redact (issue 9): terms and boxes leave nothing in either engine's text, paint where
they were, strip what else carries text, and the leak check refuses what survives.
In-process (the `call` fixture), then through the real sandbox for confinement and the
CPU limit that ends a slow pattern."""
from __future__ import annotations

import ctypes
import io
import json
import time

import pikepdf
import pypdf
import pypdfium2
import pytest
from pikepdf import Array, Dictionary, Name, String
from PIL import Image, ImageDraw

from notrace.operations import OPERATIONS
from notrace.operations.problems import Problem
from notrace.operations.redact_leaks import check_result
from notrace.operations.redact_params import patterns
from notrace.problems import HttpProblem
from sandbox import Limits
from tests import pdfs
from tests.operations.test_render import _run_all

pytestmark = pytest.mark.timeout(60)

TERM = "Zanzibar"


def _pdf(pages: list[bytes], *, size=(400, 300), rotate: int = 0, crop=None,
         extra=None) -> bytes:
    """One page per content stream (Helvetica as /F1); `extra(pdf)` may add more."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(Dictionary(Type=Name.Font, Subtype=Name.Type1,
                                        BaseFont=Name.Helvetica))
    for content in pages:
        page = Dictionary(Type=Name.Page, MediaBox=Array([0, 0, *size]), Rotate=rotate,
                          Resources=Dictionary(Font=Dictionary(F1=font)),
                          Contents=pdf.make_stream(content))
        if crop:
            page.CropBox = Array(crop)
        pdf.pages.append(pikepdf.Page(page))
    if extra:
        extra(pdf)
    out = io.BytesIO()
    pdf.save(out, compress_streams=False)
    return out.getvalue()


def _lines(*lines: str, at: float = 250) -> bytes:
    return b"\n".join(b"BT /F1 12 Tf 30 %d Td (%s) Tj ET" % (at - 20 * n, line.encode())
                      for n, line in enumerate(lines))


def _pdfium_texts(data: bytes) -> list[str]:
    document = pypdfium2.PdfDocument(data)
    try:
        return [document[i].get_textpage().get_text_range() for i in range(len(document))]
    finally:
        document.close()


def _pypdf_texts(data: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


def _everything(data: bytes) -> bytes:
    """Every object of the file, streams decoded: what a raw search of it would find."""
    parts = []
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for obj in pdf.objects:
            if isinstance(obj, pikepdf.Stream):
                parts.append(obj.read_bytes())
                parts.append(pikepdf.Dictionary(obj.stream_dict).unparse())
            elif isinstance(obj, (pikepdf.Dictionary, pikepdf.Array, pikepdf.String)):
                parts.append(obj.unparse())
        parts.append(pdf.trailer.unparse())
    return b"\n".join(parts)


THREE = _pdf([_lines("Alpha page one", "nothing here"),
              _lines(f"The {TERM} file", f"see {TERM.upper()} and zanzibar again"),
              _lines("Gamma page three", "the end")])


def test_a_term_is_in_neither_engine_and_other_pages_keep_their_text(call):
    answer = call("redact", [THREE], terms=json.dumps([TERM]))
    assert answer.problem is None, answer.manifest
    assert answer.report["pages"] == [{"page": 2, "matches": 3, "boxes": 0}]
    assert answer.report["rebuilt"] == 1 and answer.report["listed_all"] is True
    assert answer.report["checked"] == {"pages": 3, "engines": ["pdfium", "pypdf"]}
    assert TERM.lower() not in json.dumps(answer.manifest).lower()
    for texts in (_pdfium_texts(answer.file), _pypdf_texts(answer.file)):
        assert all(TERM.lower() not in t.lower() for t in texts)
        assert texts[1].strip() == ""  # the rebuilt page is one image
    before, after = _pdfium_texts(THREE), _pdfium_texts(answer.file)
    assert (after[0], after[2]) == (before[0], before[2])
    assert "Gamma page three" in _pypdf_texts(answer.file)[2]
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        page = pdf.pages[1].obj
        assert set(page.keys()) == {"/Type", "/Parent", "/MediaBox", "/Rotate", "/Resources",
                                    "/Contents"}
        (image,) = page.Resources.XObject.values()
        assert (int(image.Width), int(image.Height)) == (834, 625)  # 400 x 300 pt, 150 dpi
        assert image.ColorSpace == "/DeviceGray"  # black on white: no colour to keep
        assert [float(v) for v in page.MediaBox] == [0, 0, 400, 300]
    # case_sensitive: only the exact spelling
    exact = call("redact", [THREE], terms=json.dumps([TERM]), case_sensitive="true")
    assert exact.report["pages"] == [{"page": 2, "matches": 1, "boxes": 0}]
    # a regular expression, and a term over two words
    regex = call("redact", [THREE], terms=json.dumps([r"G\w+a page"]), regex="true")
    assert [p["page"] for p in regex.report["pages"]] == [3]
    words = call("redact", [THREE], terms='["nothing   here"]')
    assert [p["page"] for p in words.report["pages"]] == [1]
    # a term a hyphen breaks across lines (PDFium reads U+FFFE there, pypdf "-\n")
    broken = call("redact", [_pdf([_lines("The Zanzi-", "bar file")])], terms=json.dumps([TERM]))
    assert broken.report["pages"] == [{"page": 1, "matches": 1, "boxes": 0}]


def _device(page, width: int, height: int, x: float, y: float) -> tuple[int, int]:
    dx, dy = ctypes.c_int(), ctypes.c_int()
    pypdfium2.raw.FPDF_PageToDevice(page.raw, 0, 0, width, height, 0, x, y, dx, dy)
    return dx.value, dy.value


@pytest.mark.parametrize("rotate", [0, 90])
def test_a_box_leaves_no_character_inside_and_is_painted(call, rotate):
    grid = _lines(*(f"row {n} " + "WWWWWWWWWWWWWWWWWWWWWWWW" for n in range(10)))
    doc = _pdf([grid, _lines("second page")], rotate=rotate, crop=[10, 20, 390, 290])
    box = {"page": 1, "x0": 60, "y0": 100, "x1": 200, "y1": 200}
    answer = call("redact", [doc], boxes=json.dumps([box]), color="00ff00", dpi=72)
    assert answer.problem is None, answer.manifest
    assert answer.report["pages"] == [{"page": 1, "matches": 0, "boxes": 1}]
    result = pypdfium2.PdfDocument(answer.file)
    page = result[0]
    assert page.get_rotation() == rotate and tuple(page.get_bbox()) == (10, 20, 390, 290)
    text_page = page.get_textpage()
    chars = [text_page.get_charbox(i, loose=True) for i in range(text_page.count_chars())]
    assert not [c for c in chars if c[0] < 200 and c[2] > 60 and c[1] < 200 and c[3] > 100]
    assert result[1].get_textpage().get_text_range() == "second page"
    image = page.render(scale=1).to_pil().convert("RGB")
    corners = [_device(page, *image.size, x, y) for x, y in ((62, 102), (198, 198))]
    (x0, x1), (y0, y1) = (sorted(v) for v in zip(*corners))
    inside = {image.getpixel((x, y)) for x in range(x0, x1) for y in range(y0, y1)}
    assert inside == {(0, 255, 0)}
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        (xobject,) = pdf.pages[0].obj.Resources.XObject.values()
        assert xobject.ColorSpace == "/DeviceRGB"  # the green paint is kept
    # the text around the box is still drawn: dark pixels outside it
    outside = _device(page, *image.size, 250, 230)
    region = [image.getpixel((outside[0] + dx, outside[1] + dy))
              for dx in range(-30, 30) for dy in range(-30, 30)]
    assert any(sum(p) < 200 for p in region)
    result.close()


def _with_everything(pdf: pikepdf.Pdf) -> None:
    """What else may carry text: an outline, page labels, a structure tree, named
    destinations, a form field, a link, an unused form XObject with text, OCG names."""
    first = pdf.pages[0].obj
    item = pdf.make_indirect(Dictionary(Title=String(f"Outline {TERM}"),
                                        Dest=Array([first, Name.Fit])))
    pdf.Root.Outlines = pdf.make_indirect(Dictionary(Type=Name.Outlines, First=item,
                                                     Last=item, Count=1))
    item.Parent = pdf.Root.Outlines
    pdf.Root.PageLabels = Dictionary(Nums=Array([0, Dictionary(P=String(f"Lbl{TERM}"))]))
    pdf.Root.StructTreeRoot = pdf.make_indirect(Dictionary(
        Type=Name.StructTreeRoot, K=Dictionary(S=Name.P, Alt=String(f"Alt{TERM}"))))
    pdf.Root.Dests = Dictionary({f"/Dest{TERM}": Array([first, Name.Fit])})
    widget = pdf.make_indirect(Dictionary(
        Type=Name.Annot, Subtype=Name.Widget, FT=Name.Tx, T=String(f"Field{TERM}"),
        V=String("field value"), Rect=Array([30, 30, 200, 50]), P=first))
    link = pdf.make_indirect(Dictionary(
        Type=Name.Annot, Subtype=Name.Link, Rect=Array([30, 60, 200, 80]),
        A=Dictionary(S=Name.URI, URI=String(f"https://example.invalid/{TERM}"))))
    first.Annots = Array([widget, link])
    pdf.Root.AcroForm = Dictionary(Fields=Array([widget]), NeedAppearances=True)
    unused = pdf.make_stream(b"BT /F1 12 Tf 0 0 Td (Unused%s) Tj ET" % TERM.encode(),
                             Type=Name.XObject, Subtype=Name.Form, BBox=Array([0, 0, 9, 9]))
    first.Resources.XObject = Dictionary(Unused=unused)
    layer = pdf.make_indirect(Dictionary(Type=Name.OCG, Name=String(f"Layer{TERM}")))
    pdf.Root.OCProperties = Dictionary(OCGs=Array([layer]), D=Dictionary(
        Name=String(f"Config{TERM}"), Order=Array([String(f"Order{TERM}"), layer])))
    pdf.docinfo["/Title"] = String(f"Title{TERM}")
    photo = pdf.make_stream(b"\x80", Type=Name.XObject, Subtype=Name.Image, Width=1,
                            Height=1, ColorSpace=Name.DeviceGray, BitsPerComponent=8,
                            Metadata=pdf.make_stream(b"<x:xmpmeta>Xmp%s</x:xmpmeta>"
                                                     % TERM.encode()))
    first.Resources.XObject.Photo = photo
    first.Contents = pdf.make_stream(first.Contents.read_bytes() + b" q 9 0 0 9 0 0 cm /Photo Do Q")


def test_metadata_annotations_attachments_and_other_text_carriers_go(call):
    active = call("redact", [pdfs.make_active_pdf(2)], terms='["page 2"]')
    assert active.problem is None, active.manifest
    everything = _everything(active.file)
    for what, marker in pdfs.MARKERS.items():
        assert marker.encode() not in everything, what
    assert {"Info", "Metadata", "Names", "OpenAction"} <= set(active.report["removed"])
    assert active.report["annotations"] > 0

    doc = _pdf([_lines("first page"), _lines("second page")], extra=_with_everything)
    answer = call("redact", [doc], terms='["second"]')
    assert answer.problem is None, answer.manifest
    everything = _everything(answer.file)
    assert TERM.encode() not in everything and TERM.upper().encode() not in everything
    assert b"field value" in everything  # flattened: what the reader saw is page content
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        assert set(pdf.Root.keys()) <= {"/Type", "/Pages", "/OCProperties"}
        assert all("/Annots" not in p.obj for p in pdf.pages)
        assert str(pdf.Root.OCProperties.OCGs[0].Name) == "Layer 1"
    assert "first page" in _pdfium_texts(answer.file)[0]


def test_a_term_drawn_only_as_pixels_is_not_found(call):
    """Documented limitation: text that is only an image (a scan) has no text positions,
    so the term is not found there; the report says no page was redacted."""
    picture = Image.new("RGB", (200, 40), "white")
    ImageDraw.Draw(picture).text((10, 10), TERM, fill="black")

    def scan(pdf: pikepdf.Pdf) -> None:
        image = pdf.make_stream(picture.tobytes(), Type=Name.XObject, Subtype=Name.Image,
                                Width=200, Height=40, ColorSpace=Name.DeviceRGB,
                                BitsPerComponent=8)
        pdf.pages[0].obj.Resources.XObject = Dictionary(Im=image)

    doc = _pdf([b"q 200 0 0 40 30 200 cm /Im Do Q"], extra=scan)
    answer = call("redact", [doc], terms=json.dumps([TERM]))
    assert answer.problem is None and answer.report["pages"] == []
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        (image,) = pdf.pages[0].obj.Resources.XObject.values()
        assert image.read_bytes() == picture.tobytes()  # the pixels are as they were


def test_the_leak_check_fires(call):
    """Text PDFium does not read as pypdf does: PDFium finds nothing to redact, pypdf
    still reads the term in the result: 422, and the detail never quotes the term."""
    for hidden in (b"/Span <</ActualText (other)>> BDC BT /F1 12 Tf 30 200 Td (%s) Tj ET "
                   b"EMC" % TERM.encode(),
                   b"BT /F1 12 Tf 30 200 Td 0 Tz (%s) Tj ET" % TERM.encode()):
        answer = call("redact", [_pdf([hidden])], terms=json.dumps([TERM]))
        assert answer.problem == "redaction_incomplete", answer.manifest
        assert "pypdf" in answer.manifest["detail"]
        assert TERM.lower() not in answer.manifest["detail"].lower()
    # the checker itself, on documents that still hold what should be gone
    found = patterns([TERM], regex=False, case_sensitive=False)
    with pytest.raises(Problem, match="page 2: a term still matches in PDFium"):
        check_result(THREE, patterns=found, boxes=[], rebuilt=set(), max_pages=10)
    with pytest.raises(Problem, match="page 1: a rebuilt page still has text"):
        check_result(THREE, patterns=[], boxes=[], rebuilt={0}, max_pages=10)
    with pytest.raises(Problem, match="page 3: a character inside a box"):
        check_result(THREE, patterns=[], boxes=[(3, 0, 0, 400, 300)], rebuilt=set(),
                     max_pages=10)
    check_result(THREE, patterns=[], boxes=[(3, 0, 0, 10, 10)], rebuilt=set(), max_pages=10)
    only_pypdf = _pdf([b"BT /F1 0 Tf 30 200 Td (%s) Tj ET" % TERM.encode()])
    with pytest.raises(Problem, match="page 1: a term still matches in pypdf") as raised:
        check_result(only_pypdf, patterns=found, boxes=[], rebuilt=set(), max_pages=10)
    assert raised.value.code == "redaction_incomplete"


def test_a_term_no_engine_reads_but_the_bytes_hold_fails_the_check(call):
    """A content-stream comment, a marked-content /Alt (UTF-16, in a form XObject the page
    draws): neither engine reads them, the file holds them: 422 unless rebuilt."""
    utf16 = b"<" + ("\ufeff" + TERM).encode("utf-16-be").hex().encode() + b">"

    def form(pdf: pikepdf.Pdf) -> None:
        drawn = pdf.make_stream(b"/P <</Alt " + utf16 + b">> BDC 0 0 1 1 re f EMC",
                                Type=Name.XObject, Subtype=Name.Form,
                                BBox=Array([0, 0, 9, 9]))
        pdf.pages[0].obj.Resources.XObject = Dictionary(Fx=drawn)

    for doc in (_pdf([b"%% %s\n" % TERM.encode() + _lines("plain words")]),
                _pdf([_lines("plain words") + b" /Fx Do"], extra=form)):
        answer = call("redact", [doc], terms=json.dumps([TERM]))
        assert answer.problem == "redaction_incomplete", answer.manifest
        assert "page 1: a term still matches in the bytes" in answer.manifest["detail"]
        whole = call("redact", [doc], terms=json.dumps([TERM]), all_pages="true")
        assert whole.problem is None, whole.manifest
        assert TERM.encode() not in _everything(whole.file)


def test_a_page_pypdf_cannot_read_fails_the_check_unless_rebuilt(call):
    """Fail closed: PDFium reads the page, pypdf cannot (an unclosed string), so nothing
    confirms a term is not there; all_pages=true rebuilds it, and then it passes."""
    damaged = _pdf([_lines("first page"), b"BT /F1 12 Tf 30 200 Td (hello) Tj ET (unclosed"])
    answer = call("redact", [damaged], terms='["first"]')
    assert answer.problem == "redaction_incomplete", answer.manifest
    assert "page 2: pypdf cannot read" in answer.manifest["detail"]
    assert "all_pages=true" in answer.manifest["detail"]
    whole = call("redact", [damaged], terms='["first"]', all_pages="true")
    assert whole.problem is None and whole.report["rebuilt"] == 2
    assert [p["page"] for p in whole.report["pages"]] == [1, 2]
    # boxes only: a page left as it was cannot hold what a box hid, pypdf is not needed
    boxed = call("redact", [damaged], boxes=json.dumps([{**BOX, "page": 1}]))
    assert boxed.problem is None and boxed.report["rebuilt"] == 1


BOX = {"page": 1, "x0": 1, "y0": 1, "x1": 9, "y1": 9}
BAD = [
    ({"boxes": "[{"}, "boxes", "not JSON"),
    ({"boxes": "[]"}, "boxes", "non-empty"),
    ({"boxes": json.dumps([{**BOX, "z": 1}])}, "boxes", "box 1 must have exactly"),
    ({"boxes": json.dumps([{"page": 1, "x0": 1, "y0": 1, "x1": 9}])}, "boxes", "exactly"),
    ({"boxes": '[{"page": 1, "x0": NaN, "y0": 1, "x1": 9, "y1": 9}]'}, "boxes", "NaN"),
    ({"boxes": '[{"page": 1, "x0": 1, "y0": 1, "x1": Infinity, "y1": 9}]'}, "boxes", "NaN"),
    ({"boxes": '[{"page": 1, "x0": 1, "y0": 1, "x1": 1e999, "y1": 9}]'}, "boxes", "finite"),
    ({"boxes": json.dumps([BOX, {**BOX, "x0": 9, "x1": 1}])}, "boxes", "box 2 is empty or"),
    ({"boxes": json.dumps([{**BOX, "y1": 1.5}])}, "boxes", "empty or inverted"),
    ({"boxes": json.dumps([{**BOX, "page": 0}])}, "boxes", "page must be"),
    ({"boxes": json.dumps([{**BOX, "page": True}])}, "boxes", "page must be"),
    ({"boxes": json.dumps([{**BOX, "x0": "1"}])}, "boxes", "must be a number"),
    ({"boxes": json.dumps([BOX] * 257, separators=(",", ":"))}, "boxes", "more than 256"),
    ({"terms": '"secret"'}, "terms", "JSON list"),
    ({"terms": '["ok", "  "]'}, "terms", "term 2 must be text"),
    ({"terms": json.dumps(["x" * 201])}, "terms", "term 1 must be text"),
    ({"terms": json.dumps(["t"] * 33)}, "terms", "more than 32"),
    ({"terms": '["(unclosed"]', "regex": "true"}, "terms", "not a valid regular"),
    ({"terms": '["(Zx+)+y"]', "regex": "true"}, "terms", "catastrophic"),
    ({"terms": '["(Zx|Zxx)*y"]', "regex": "true"}, "terms", "catastrophic"),
    ({"terms": '["(Z)\\\\1"]', "regex": "true"}, "terms", "backreferences"),
    ({"terms": '["Z?"]', "regex": "true"}, "terms", "matches the empty text"),
    ({}, "terms", "at least one of terms, boxes"),
    ({"regex": "true"}, "terms", "at least one of terms, boxes"),
    ({"terms": '["a"]', "color": "red"}, "color", "accepted form"),
    ({"terms": '["a"]', "dpi": "301"}, "dpi", "at most 300"),
]


@pytest.mark.parametrize("raw,param,fragment", BAD)
def test_bad_parameters_are_refused_naming_them(raw, param, fragment):
    with pytest.raises(Exception) as raised:
        OPERATIONS["redact"].validate(raw)
    assert raised.value.param == param and fragment in raised.value.message, raised.value
    assert "Zx" not in str(raised.value)  # terms are secret: never echoed


def test_hostile_parameters_are_refused_at_once(call):
    started = time.monotonic()
    many = json.dumps([BOX] * 10_000)
    with pytest.raises(Exception, match="boxes: is longer than 16000"):
        OPERATIONS["redact"].validate({"boxes": many})
    for bomb in ("(a+)+$", "(a|a)*b", "((ab)*)+c", "(?:a{1,9}){1,9}b", "(?=(a*)*)x"):
        with pytest.raises(Exception, match="catastrophic"):
            OPERATIONS["redact"].validate({"terms": json.dumps([bomb]), "regex": "true"})
    assert time.monotonic() - started < 2
    beyond = call("redact", [THREE], boxes=json.dumps([{**BOX, "page": 4}]))
    assert beyond.problem == "page_out_of_range"


# --- through the real sandbox -------------------------------------------------------------

@pytest.mark.timeout(120)
async def test_through_the_sandbox_and_a_slow_pattern_ends_at_the_cpu_limit(call):
    """Confined, redact gives what it gives in-process; a pattern that passes the bomb
    checks but is polynomial on a hostile page (4 unbounded runs on 5,000 letters) runs
    into the CPU limit: 422 cpu-limit, in time."""
    letters = _pdf([b"BT /F1 1 Tf 0 10 Td (%s) Tj ET" % (b"a" * 5000)])
    slow = {"terms": json.dumps(["[a-z]*[a-z]*[a-z]*[a-z]*0"]), "regex": "true"}
    normal = {"terms": json.dumps([TERM])}
    started = time.monotonic()
    answers = await _run_all([("redact", THREE, normal), ("redact", letters, slow)],
                             Limits(memory_mb=512, cpu_s=3, wall_s=30, output_mb=64))
    elapsed = time.monotonic() - started
    assert answers[0] == ("application/pdf", call("redact", [THREE], **normal).body)
    assert isinstance(answers[1], HttpProblem), answers[1]
    assert answers[1].type.slug in ("cpu-limit", "time-limit")
    assert elapsed < 40


def test_the_pixel_limits_of_the_job_bound_the_rebuilt_pages():
    """The settings max_page_pixels and max_pixel_pages reach redact as they reach render
    (jobs.job_params): checked before the first page is drawn."""
    from notrace.operations.child import run
    from notrace.operations.raster import PIXEL_OPERATIONS

    assert "redact" in PIXEL_OPERATIONS
    params = OPERATIONS["redact"].validate({"terms": '["page"]'})

    def problem(page_pixels: int, pages: int) -> str | None:
        answer = run([memoryview(THREE)], {"operation": "redact", "params": params,
                                           "max_pages": 10, "pixel_limits": {
                                               "page_pixels": page_pixels, "pages": pages}})
        return json.loads(answer[0]).get("problem")

    assert problem(1_000_000, 2) is None          # pages 1 and 3 match "page"
    assert problem(1_000_000, 1) == "too_many_pages"
    assert problem(834 * 625 - 1, 2) == "too_large"   # 400 x 300 pt at 150 dpi
    # a 100,000-point page with a box: refused before anything is drawn, at once
    huge = _pdf([b""], size=(100_000, 100_000))
    started = time.monotonic()
    answer = run([memoryview(huge)], {"operation": "redact", "max_pages": 10, "params":
                                      OPERATIONS["redact"].validate({"boxes": json.dumps(
                                          [{**BOX, "x1": 90_000, "y1": 90_000}])})})
    assert json.loads(answer[0])["problem"] == "too_large"
    assert time.monotonic() - started < 2


def test_the_report_lists_at_most_max_reported_pages(call, monkeypatch):
    from notrace.operations import redact as redact_module

    monkeypatch.setattr(redact_module, "MAX_REPORTED_PAGES", 2)
    answer = call("redact", [THREE], terms='["page", "file"]')
    assert answer.report["rebuilt"] == 3 and answer.report["listed_all"] is False
    assert answer.report["pages"] == [{"page": 1, "matches": 1, "boxes": 0},
                                      {"page": 2, "matches": 1, "boxes": 0}]


@pytest.mark.timeout(120)
async def test_memory_does_not_grow_with_the_rebuilt_pages():
    """60 Letter pages, each rebuilt at 150 dpi (2.1 megapixels drawn, painted and
    compressed one at a time; 380 MB if the pixels were kept), in a 160 MB child."""
    doc = pdfs.make_pdf(60, text="page {n} secret words here")
    [answer] = await _run_all([("redact", doc, {"terms": '["secret"]'})],
                              Limits(memory_mb=160, cpu_s=60, wall_s=90, output_mb=64))
    assert not isinstance(answer, HttpProblem), answer
    assert answer[0] == "application/pdf"
    assert len(pypdf.PdfReader(io.BytesIO(answer[1])).pages) == 60


def test_unused_resources_inherited_from_the_page_tree_go(call):
    """A form with the term that no page draws, in the page tree's own /Resources."""
    def inherited(pdf: pikepdf.Pdf) -> None:
        unused = pdf.make_stream(b"BT /F1 12 Tf 0 0 Td (Unused%s) Tj ET" % TERM.encode(),
                                 Type=Name.XObject, Subtype=Name.Form,
                                 BBox=Array([0, 0, 9, 9]))
        fonts = pdf.pages[0].obj.Resources.Font
        for page in pdf.pages:
            del page.obj["/Resources"]
        pdf.Root.Pages.Resources = Dictionary(Font=fonts, XObject=Dictionary(U=unused))

    doc = _pdf([_lines("first page"), _lines("second page")], extra=inherited)
    assert TERM.encode() in _everything(doc)
    answer = call("redact", [doc], terms='["second"]')
    assert answer.problem is None, answer.manifest
    assert TERM.encode() not in _everything(answer.file)
    assert "first page" in _pdfium_texts(answer.file)[0]


def _lying_font(pdf: pikepdf.Pdf) -> pikepdf.Object:
    """A non-embedded font whose descriptor claims glyphs a fifth of their real height."""
    return pdf.make_indirect(Dictionary(
        Type=Name.Font, Subtype=Name.TrueType, BaseFont=Name("/Arial,BoldItalic"),
        FirstChar=32, LastChar=126, Widths=Array([600] * 95),
        FontDescriptor=Dictionary(Type=Name.FontDescriptor, FontName=Name("/Arial,BoldItalic"),
                                  Flags=32 + 64, FontBBox=Array([0, 0, 600, 150]),
                                  ItalicAngle=-12, Ascent=150, Descent=0, CapHeight=140,
                                  StemV=80)))


@pytest.mark.parametrize("style", [b"", b"1 Tr 2 w ", b"7 Ts ", b"lying"])
def test_every_pixel_the_term_inked_is_painted(call, style):
    """Large oblique text (plain, stroked thick, raised, in a font whose metrics lie):
    each pixel the term's glyphs darkened in the original (inside its glyphs' tight
    boxes, grown a little for the stroke) is the paint colour in the result; the words
    around it are still there."""
    def oblique(pdf: pikepdf.Pdf) -> None:
        pdf.pages[0].obj.Resources.Font.F2 = _lying_font(pdf) if style == b"lying" else \
            pdf.make_indirect(Dictionary(Type=Name.Font, Subtype=Name.Type1,
                                         BaseFont=Name("/Helvetica-BoldOblique")))
    if style == b"lying":
        style = b""

    content = (b"BT /F2 40 Tf %s20 120 Td (left %s right) Tj ET" % (style, TERM.encode()))
    doc = _pdf([content], size=(600, 250), extra=oblique)
    answer = call("redact", [doc], terms=json.dumps([TERM]), color="ff0000", dpi=72)
    assert answer.problem is None and answer.report["rebuilt"] == 1, answer.manifest
    original, result = pypdfium2.PdfDocument(doc), pypdfium2.PdfDocument(answer.file)
    before = original[0].render(scale=1).to_pil().convert("L")
    after = result[0].render(scale=1).to_pil().convert("RGB")
    text_page = original[0].get_textpage()
    start = text_page.get_text_range().index(TERM)
    glyphs = [text_page.get_charbox(i) for i in range(start, start + len(TERM))]
    grow = 3  # points: half the stroke and the antialiased edge
    x0, x1 = min(g[0] for g in glyphs) - grow, max(g[2] for g in glyphs) + grow
    y0, y1 = min(g[1] for g in glyphs) - grow, max(g[3] for g in glyphs) + grow
    inked = [(x, y) for x in range(int(x0), int(x1) + 1) for y in range(250 - int(y1), 250 - int(y0))
             if 0 <= x < 600 and 0 <= y < 250 and before.getpixel((x, y)) < 200]
    assert len(inked) > 100
    assert all(after.getpixel(p) == (255, 0, 0) for p in inked), \
        [p for p in inked if after.getpixel(p) != (255, 0, 0)][:5]
    assert any(sum(after.getpixel((x, y))) < 200 for x in range(20, 100) for y in range(90, 140))
    original.close()
    result.close()
