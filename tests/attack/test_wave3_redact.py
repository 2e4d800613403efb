"""redact's leak check against text drawn or held where neither text engine looks: a term the
search (PDFium's text) cannot see leaves its page as it was, so only the byte check of
that page's streams stands between it and the answer. A tiling pattern's cell, a Type 3
glyph's procedure and a soft mask's group are content a viewer paints, yet no page text
to PDFium or pypdf, and a named property list's /Alt is the content's text for a screen
reader: a term there must fail the job (422 redaction-incomplete), never be answered. The operation runs as a child runs it (operations.child.run)."""
from __future__ import annotations

import io
import json
import time

import pikepdf
import pypdfium2
import pytest
from pikepdf import Array, Dictionary, Name

from notrace.operations import OPERATIONS, redact_leaks
from notrace.operations.child import run
from notrace.operations.redact_params import check_redact
from tests.operations.test_redact import _everything
from tests.pdfs import make_pdf

pytestmark = pytest.mark.timeout(60)

TERM = "Zanzibar"
_SHOWN = b"BT /F1 12 Tf 30 250 Td (Hello world) Tj ET "


def _redact(document: bytes, **raw) -> tuple[dict, bytes | None]:
    params = OPERATIONS["redact"].validate({"terms": json.dumps([TERM]),
                                            **{k: str(v) for k, v in raw.items()}})
    answer = run([memoryview(document)], {"operation": "redact", "params": params,
                                          "max_pages": 100})
    return json.loads(bytes(answer[0])), bytes(answer[1]) if len(answer) > 1 else None


def _document(paint, pages: int = 1) -> bytes:
    """Pages showing "Hello world" in Helvetica, then what `paint(pdf, font)` gives:
    (content to append, resources to add)."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(Dictionary(Type=Name.Font, Subtype=Name.Type1,
                                        BaseFont=Name.Helvetica))
    content, resources = paint(pdf, font)
    for _ in range(pages):
        pdf.pages.append(pikepdf.Page(Dictionary(
            Type=Name.Page, MediaBox=Array([0, 0, 400, 300]),
            Resources=Dictionary({"/Font": Dictionary(F1=font),
                                  **{f"/{k}": v for k, v in resources.items()}}),
            Contents=pdf.make_stream(_SHOWN + content))))
    out = io.BytesIO()
    pdf.save(out, compress_streams=False)
    return out.getvalue()


def _cell(text: str):
    """A tiling pattern whose cell shows `text`, filling the lower part of the page."""
    def paint(pdf, font):
        cell = pdf.make_stream(b"BT /F1 12 Tf 5 20 Td (%s) Tj ET" % text.encode(),
                               Type=Name.Pattern, PatternType=1, PaintType=1,
                               TilingType=1, BBox=Array([0, 0, 300, 40]), XStep=300,
                               YStep=40, Resources=Dictionary(Font=Dictionary(F1=font)))
        return b"/Pattern cs /P1 scn 0 0 400 200 re f", {"Pattern": Dictionary(P1=cell)}
    return paint


def _glyph(text: str):
    """A Type 3 font whose glyph "a" is drawn by showing `text` in Helvetica."""
    def paint(pdf, font):
        proc = pdf.make_stream(b"500 0 0 0 500 700 d1 BT /F1 1 Tf 0 0 Td (%s) Tj ET"
                               % text.encode())
        glyphs = pdf.make_indirect(Dictionary(
            Type=Name.Font, Subtype=Name.Type3, FontBBox=Array([0, 0, 1000, 1000]),
            FontMatrix=Array([0.02, 0, 0, 0.02, 0, 0]), CharProcs=Dictionary(a=proc),
            Encoding=Dictionary(Type=Name.Encoding, Differences=Array([97, Name.a])),
            FirstChar=97, LastChar=97, Widths=Array([500]),
            Resources=Dictionary(Font=Dictionary(F1=font))))
        return b"BT /T3 12 Tf 30 100 Td (a) Tj ET", {"Font": Dictionary(F1=font, T3=glyphs)}
    return paint


def _mask(text: str):
    """A soft mask whose luminosity group shows `text`: the black rectangle under it
    shows the text's shape."""
    def paint(pdf, font):
        group = pdf.make_stream(b"1 g 0 0 400 300 re f 0 g BT /F1 30 Tf 20 100 Td (%s) Tj ET"
                                % text.encode(), Type=Name.XObject, Subtype=Name.Form,
                                BBox=Array([0, 0, 400, 300]),
                                Group=Dictionary(S=Name.Transparency, CS=Name.DeviceGray),
                                Resources=Dictionary(Font=Dictionary(F1=font)))
        state = Dictionary(Type=Name.ExtGState, SMask=Dictionary(
            Type=Name.Mask, S=Name.Luminosity, G=group))
        return b"q /M1 gs 0 0 400 200 re f Q", {"ExtGState": Dictionary(M1=state)}
    return paint


def _named(key: str):
    """Marked content naming a property list of the resources (BDC /Span /P0) whose
    /Alt or /E (an abbreviation's expansion) is `text`; inline ones were caught already."""
    def of(text: str):
        def paint(pdf, font):
            props = pdf.make_indirect(Dictionary({f"/{key}": pikepdf.String(text)}))
            return (b"/Span /P0 BDC BT /F1 12 Tf 30 200 Td (Other) Tj ET EMC",
                    {"Properties": Dictionary(P0=props)})
        return paint
    return of


def _pdfium_text(document: bytes) -> str:
    pdf = pypdfium2.PdfDocument(document)
    try:
        return "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    finally:
        pdf.close()


@pytest.mark.parametrize("paint", [_cell, _glyph, _mask, _named("Alt"), _named("E")],
                         ids=["pattern", "type3", "smask", "named-alt", "named-e"])
def test_a_term_drawn_where_no_text_engine_looks_is_never_answered(paint):
    """The term is drawn (or is the content's /Alt or /E), the search cannot see it (the
    page is not rebuilt): before the fix the page kept it and the answer was a 200 with
    the term in the file."""
    document = _document(paint(TERM))
    assert TERM not in _pdfium_text(document)   # what makes it a hiding place
    manifest, body = _redact(document)
    assert manifest.get("problem") == "redaction_incomplete", manifest
    assert body is None
    assert TERM not in manifest["detail"]
    # all_pages=true rebuilds the page from pixels: answered, the term nowhere.
    manifest, body = _redact(document, all_pages="true")
    assert manifest.get("problem") is None, manifest
    assert TERM.encode() not in _everything(body)


@pytest.mark.parametrize("paint", [_cell, _glyph, _mask, _named("Alt"), _named("E")],
                         ids=["pattern", "type3", "smask", "named-alt", "named-e"])
def test_the_same_content_without_the_term_is_answered(paint):
    """No false alarm: patterns, glyphs and masks shared by many pages, without the term,
    leave the pages as they were (each shared stream read once)."""
    manifest, body = _redact(_document(paint("Pemba"), pages=30))
    assert manifest.get("problem") is None, manifest
    assert manifest["report"]["rebuilt"] == 0
    assert b"Pemba" in _everything(body) + body   # kept: the page was left as it was


def test_a_page_drawing_too_many_streams_to_read_fails_closed(monkeypatch):
    """Past the bound the check used to skip the rest silently (a term in form 1001 was
    answered); now the page is not confirmed clean: 422, all_pages=true suggested."""
    monkeypatch.setattr(redact_leaks, "MAX_FORMS_PER_PAGE", 5)

    def paint(pdf, font):
        forms = {f"X{n}": pdf.make_stream(b"%% %s\n" % (TERM.encode() if n == 7 else b"-"),
                                          Type=Name.XObject, Subtype=Name.Form,
                                          BBox=Array([0, 0, 10, 10]))
                 for n in range(8)}
        return b" ".join(b"/%s Do" % k.encode() for k in forms), {
            "XObject": Dictionary(**forms)}
    manifest, body = _redact(_document(paint))
    assert manifest.get("problem") == "redaction_incomplete", manifest
    assert "all_pages=true" in manifest["detail"] and body is None



_PLANE = "[ -\U0010FFFF]"   # one character class over (almost) every code point


def test_regex_terms_that_are_costly_to_compile_are_refused_before_they_stall_the_server(
        hostile_server):
    """The server compiles every regex term on its event loop (the 400 for a bad one
    comes before any job), and Python's compiler walks each code point of a class's
    range: 32 terms of 39 full-plane classes, a 7 KB request, held the loop 13 s here
    (every other client waited). Such terms are now a 400 naming terms, at once."""
    terms = [_PLANE * 39 + chr(0x100 + k) for k in range(32)]
    started = time.monotonic()
    reply = hostile_server.post("redact", [make_pdf(1)],
                                params={"terms": json.dumps(terms, ensure_ascii=False),
                                        "regex": "true"})
    assert time.monotonic() - started < 2
    assert reply.status == 400 and reply.problem_type.endswith("/bad-parameter")
    assert reply.json()["param"] == "terms" and _PLANE not in reply.body.decode()


def test_wide_but_common_character_classes_are_still_terms():
    """The bound leaves room for real patterns: mail addresses, CJK words, a class over a
    whole plane."""
    terms = ["[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}", "[\u4e00-\u9fff]{2,4}",
             "[^\\s]+x", _PLANE + "a"]
    check_redact({"boxes": None, "terms": json.dumps(terms), "regex": True,
                  "case_sensitive": False})
