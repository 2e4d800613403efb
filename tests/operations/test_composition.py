"""Page composition (overlay, scale, nup, booklet), in-process: every result reopened
with pikepdf and pypdf (same pages, same sizes) and checked where it places things, with
PDFium's character boxes (the text "A page 7" of page 7 shows where page 7 went)."""
from __future__ import annotations

import io
import math
import re

import pikepdf
import pypdf
import pypdfium2
import pytest

from notrace.operations.paper import SIZES
from notrace.operations.spec import ParamError
from tests.pdfs import make_pdf

A4 = SIZES["a4"]


def sizes(data: bytes) -> list[tuple[float, float]]:
    """Page sizes (MediaBox width, height) by pikepdf, checked equal to pypdf's."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        ours = [(float(p.mediabox[2] - p.mediabox[0]), float(p.mediabox[3] - p.mediabox[1]))
                for p in pdf.pages]
    reader = pypdf.PdfReader(io.BytesIO(data))
    theirs = [(float(p.mediabox.width), float(p.mediabox.height)) for p in reader.pages]
    assert theirs == pytest.approx(ours)
    return ours


def texts(data: bytes) -> list[str]:
    return [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages]


def marks(data: bytes, page: int, pattern: str = r"[A-Z] page \d+") -> dict[str, tuple]:
    """Where each "X page N" starts on `page` (0-based): its first character's box."""
    doc = pypdfium2.PdfDocument(data)
    try:
        textpage = doc[page].get_textpage()
        text = textpage.get_text_range()
        return {m.group(0): textpage.get_charbox(m.start()) for m in re.finditer(pattern, text)}
    finally:
        doc.close()


def close(point, expected, tolerance=2.0) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(point, expected))


# -- overlay -----------------------------------------------------------------------------------

@pytest.mark.parametrize("repeat, expected", [
    ("last", ["B page 1", "B page 2", "B page 2"]),
    ("cycle", ["B page 1", "B page 2", "B page 1"]),
    ("none", ["B page 1", "B page 2", None]),
])
def test_overlay_repeat(call, repeat, expected):
    answer = call("overlay", [make_pdf(3, marker="A"), make_pdf(2, marker="B")], repeat=repeat)
    got = [re.search(r"B page \d", t) for t in texts(answer.file)]
    assert [m.group(0) if m else None for m in got] == expected
    assert all(f"A page {n}" in t for n, t in enumerate(texts(answer.file), start=1))
    assert answer.report == {"stamped": [n for n, e in enumerate(expected, 1) if e]}


def test_overlay_is_fitted_and_centred_and_underlay_comes_first(call):
    # A 300 x 400 letterhead on a 612 x 792 page: scaled by 1.98, 9 pt in from the left.
    stamp = make_pdf(1, marker="B", size=(300, 400))
    over = call("overlay", [make_pdf(2, marker="A"), stamp], pages="2")
    assert "B page 1" not in texts(over.file)[0]
    left, bottom, _r, _t = marks(over.file, 1)["B page 1"]
    assert close((left, bottom), (9 + 72 * 1.98, (400 - 92) * 1.98), 3)
    assert sizes(over.file) == [(612, 792)] * 2
    under = call("overlay", [make_pdf(1, marker="A"), stamp], mode="underlay")
    text = texts(under.file)[0]
    assert text.index("B page 1") < text.index("A page 1")  # drawn first
    assert text.index("A page 1") < texts(over.file)[1].index("B page 1") + 99  # sanity


def test_overlay_on_a_turned_page_reads_upright(call):
    answer = call("overlay", [make_pdf(1, marker="A", rotate=90), make_pdf(1, marker="B")])
    doc = pypdfium2.PdfDocument(answer.file)
    try:
        page = doc[0]
        textpage = page.get_textpage()
        text = textpage.get_text_range()
        # PDFium reports boxes in user space: on a page turned 90 degrees the stamp's text
        # runs upwards there, i.e. across the visible (landscape) page, upright.
        i = text.index("B page 1")
        first, last = textpage.get_charbox(i), textpage.get_charbox(i + 7)
        assert last[1] > first[1] + 20 and abs(last[0] - first[0]) < 5
    finally:
        doc.close()


def test_overlay_needs_two_pdfs(call):
    answer = call("overlay", [make_pdf(1), b"\x89PNG\r\n\x1a\n0000"])
    assert answer.problem == "not_a_pdf"


# -- scale -------------------------------------------------------------------------------------

def test_scale_to_a4_moves_content_boxes_and_links(call):
    pdf = pikepdf.open(io.BytesIO(make_pdf(2, marker="A")))
    page = pdf.pages[0]
    page.obj.TrimBox = [10, 10, 602, 782]
    page.obj.Annots = pdf.make_indirect(pikepdf.Array([pdf.make_indirect(pikepdf.Dictionary(
        Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Link, Rect=[72, 690, 172, 710],
        QuadPoints=[72, 710, 172, 710, 72, 690, 172, 690]))]))
    out = io.BytesIO()
    pdf.save(out)
    answer = call("scale", [out.getvalue()], size="A4")
    assert sizes(answer.file) == [pytest.approx(A4)] * 2
    s = min(A4[0] / 612, A4[1] / 792)
    dy = (A4[1] - 792 * s) / 2
    left, bottom, _r, _t = marks(answer.file, 0)["A page 1"]
    assert close((left, bottom), (72 * s, 700 * s + dy))
    with pikepdf.open(io.BytesIO(answer.file)) as result:
        first = result.pages[0].obj
        assert [float(v) for v in first.TrimBox] == pytest.approx([10 * s, 10 * s + dy,
                                                                   602 * s, 782 * s + dy])
        link = first.Annots[0]
        assert [float(v) for v in link.Rect] == pytest.approx([72 * s, 690 * s + dy,
                                                               172 * s, 710 * s + dy])
        assert float(link.QuadPoints[1]) == pytest.approx(710 * s + dy)
    assert answer.report == {"scaled": 2}


def _destinations_pdf() -> bytes:
    """Three pages ("A page N" at (72, 700)); destinations of every kind on page 1 and in
    the catalog, all pointing at page 2 but the last link's (page 3's, which stays)."""
    pdf = pikepdf.open(io.BytesIO(make_pdf(3, marker="A")))
    two, three = pdf.pages[1].obj, pdf.pages[2].obj
    X = pikepdf.Name

    def link(**entries):
        return pdf.make_indirect(pikepdf.Dictionary(Type=X.Annot, Subtype=X.Link,
                                                    Rect=[0, 0, 10, 10], **entries))
    pdf.pages[0].obj.Annots = pikepdf.Array([
        link(Dest=[two, X.XYZ, 72, 700, 2]),
        link(A=pikepdf.Dictionary(S=X.GoTo, D=[two, X.FitR, 72, 600, 300, 700])),
        link(Dest=pikepdf.String("named")), link(Dest=X.old),
        link(Dest=[two, X.XYZ, None, 700, 0]),
        link(Dest=[three, X.XYZ, 72, 700, 2])])
    names = pikepdf.NameTree.new(pdf)
    names["named"] = pikepdf.Array([two, X.XYZ, 72, 700, 1])
    pdf.Root.Names = pikepdf.Dictionary(Dests=names.obj)
    pdf.Root.Dests = pikepdf.Dictionary(old=pikepdf.Dictionary(D=[two, X.FitBV, 72]))
    with pdf.open_outline() as outline:
        outline.root.append(pikepdf.OutlineItem("two", 1, "FitH", top=700))
    pdf.Root.OpenAction = pikepdf.Array([two, X.XYZ, 72, 700, 4])
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


@pytest.mark.parametrize("raw", [{"size": "A4", "pages": "2"},
                                 {"factor": "0.5", "pages": "2-3"},
                                 {"size": "500x500pt", "fit": "stretch", "pages": "2"}])
def test_scale_moves_destinations_with_the_content(call, raw):
    """Each destination to page 2 still shows "A page 2" where the text went, at the same
    size on screen (zoom divided by the scale); the one to page 3 is left as it was when
    page 3 is not scaled; named destinations are moved where they are defined, once."""
    answer = call("scale", [_destinations_pdf()], **raw)
    x, y = marks(answer.file, 1)["A page 2"][:2]  # the text's new lower-left corner
    (w, h), = sizes(answer.file)[1:2]
    sx, sy = (w / 612, h / 792) if "stretch" in raw.values() else (min(w / 612, h / 792),) * 2
    dx, dy = (w - 612 * sx) / 2, (h - 792 * sy) / 2
    assert close((x, y), (72 * sx + dx, 700 * sy + dy))

    def at(*points):  # where points (x, y, x, y...) of old page 2 are now
        moved = [v * (sx, sy)[k % 2] + (dx, dy)[k % 2] for k, v in enumerate(points)]
        return pytest.approx(moved, abs=0.01)

    zoom = math.sqrt(sx * sy)
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        two, three = (pdf.pages[i].obj.objgen for i in (1, 2))
        links = [a.get("/Dest") if "/Dest" in a else a.A.D for a in pdf.pages[0].obj.Annots]
        xyz, fitr, _named, _old, nulls, other = links
        assert xyz[0].objgen == two and [float(v) for v in xyz[2:4]] == at(72, 700)
        assert float(xyz[4]) == pytest.approx(2 / zoom)
        assert [float(v) for v in fitr[2:6]] == at(72, 600, 300, 700)
        assert nulls[2] is None and [dx, float(nulls[3])] == at(0, 700) and nulls[4] == 0
        named = pikepdf.NameTree(pdf.Root.Names.Dests)["named"]
        assert [float(v) for v in named[2:4]] == at(72, 700)
        assert float(named[4]) == pytest.approx(1 / zoom)
        assert [float(pdf.Root.Dests.old.D[2]), dy] == at(72, 0)
        (item,) = pdf.open_outline().root
        assert [dx, float(item.destination[2])] == at(0, 700)
        assert [float(v) for v in pdf.Root.OpenAction[2:4]] == at(72, 700)
        moved = raw["pages"] == "2-3"
        assert other[0].objgen == three
        expected = [*at(72, 700).expected, 2 / zoom] if moved else [72, 700, 2]
        assert [float(v) for v in other[2:5]] == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("raw, expected", [
    ({"size": "a3"}, SIZES["a3"]),
    ({"size": "Letter", "orientation": "landscape"}, (792, 612)),
    ({"size": "100x200mm", "fit": "stretch"}, (100 * 72 / 25.4, 200 * 72 / 25.4)),
    ({"size": "300x300pt", "fit": "cover"}, (300, 300)),
    ({"factor": "2"}, (1224, 1584)),
    ({"factor": "0.5", "pages": "1"}, (306, 396)),
])
def test_scale_sizes(call, raw, expected):
    answer = call("scale", [make_pdf(2)], **raw)
    got = sizes(answer.file)
    assert got[0] == pytest.approx(expected)
    if "pages" in raw:
        assert got[1] == (612, 792)


def test_scale_stretch_and_cover_place_content(call):
    stretched = call("scale", [make_pdf(1, marker="A")], size="306x792pt", fit="stretch")
    assert close(marks(stretched.file, 0)["A page 1"][:2], (36, 700))
    covered = call("scale", [make_pdf(1, marker="A")], size="1224x792pt", fit="cover")
    # cover: scaled by 2 (width), centred vertically: 396 pt cut above and below.
    assert close(marks(covered.file, 0)["A page 1"][:2], (144, 1400 - 396))


def test_scale_a_turned_page_keeps_its_orientation(call):
    # /Rotate 90: shown landscape; "A4" auto gives an A4 page shown landscape too.
    answer = call("scale", [make_pdf(1, rotate=90)], size="A4")
    assert sizes(answer.file) == [pytest.approx(A4)]
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        assert int(pdf.pages[0].obj.Rotate) == 90
    portrait = call("scale", [make_pdf(1, rotate=90)], size="A4", orientation="portrait")
    assert sizes(portrait.file) == [pytest.approx(A4[::-1])]


def test_scale_crop_box_becomes_the_page(call):
    pdf = pikepdf.open(io.BytesIO(make_pdf(1, marker="A")))
    pdf.pages[0].obj.CropBox = [0, 396, 306, 792]  # the top-left quarter
    out = io.BytesIO()
    pdf.save(out)
    answer = call("scale", [out.getvalue()], size="612x792pt")
    with pikepdf.open(io.BytesIO(answer.file)) as result:
        assert "/CropBox" not in result.pages[0].obj
    # the quarter was doubled: the text at (72, 700) is now at (144, 608).
    assert close(marks(answer.file, 0)["A page 1"][:2], (144, (700 - 396) * 2))


def test_scale_refusals(call):
    assert call("scale", [make_pdf(1)], factor="50").problem == "bad_parameter"
    op_errors = [{"size": "A4", "factor": "2"}, {}, {"size": "A6"}, {"size": "99999x3pt"},
                 {"size": "1x1pt"}]
    from notrace.operations import OPERATIONS
    for raw in op_errors:
        with pytest.raises(ParamError):
            OPERATIONS["scale"].validate(raw)


# -- nup ---------------------------------------------------------------------------------------

def _cell_origin(size, cols, rows, k, order="rows", margin=0.0, page=(612, 792)):
    """Where (72, 700) of the k-th page of a sheet lands (the tests' own arithmetic)."""
    w, h = size
    cw, ch = (w - (cols + 1) * margin) / cols, (h - (rows + 1) * margin) / rows
    r, c = divmod(k, cols) if order == "rows" else divmod(k, rows)[::-1]
    s = min(cw / page[0], ch / page[1])
    x0 = margin + c * (cw + margin) + (cw - page[0] * s) / 2
    y0 = h - margin - r * (ch + margin) - ch + (ch - page[1] * s) / 2
    return x0 + 72 * s, y0 + 700 * s


@pytest.mark.parametrize("per_sheet, cols, rows, landscape", [
    (2, 2, 1, True), (4, 2, 2, False), (6, 3, 2, True), (8, 4, 2, True), (9, 3, 3, False),
    (16, 4, 4, False)])
@pytest.mark.parametrize("order", ["rows", "columns"])
def test_nup_cells(call, per_sheet, cols, rows, landscape, order):
    count = per_sheet + 3
    answer = call("nup", [make_pdf(count, marker="A")], per_sheet=per_sheet, order=order,
                  margin=6)
    size = A4[::-1] if landscape else A4
    assert sizes(answer.file) == [pytest.approx(size)] * math.ceil(count / per_sheet)
    found = marks(answer.file, 0)
    assert len(found) == per_sheet
    for k in range(per_sheet):
        at = found[f"A page {k + 1}"][:2]
        assert close(at, _cell_origin(size, cols, rows, k, order, 6)), (k, at)
    second = range(per_sheet + 1, min(count, 2 * per_sheet) + 1)
    assert set(marks(answer.file, 1)) == {f"A page {n}" for n in second}


def test_nup_sheet_orientation_and_border(call):
    answer = call("nup", [make_pdf(3)], per_sheet=2, sheet="Letter", orientation="portrait",
                  border="true")
    assert sizes(answer.file) == [(612, 792)] * 2
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        ops = [op for _o, op in pikepdf.parse_content_stream(pdf.pages[0])]
        assert ops.count(pikepdf.Operator("re")) == 2 and pikepdf.Operator("S") in ops
    assert answer.report == {"sheets": 2, "cols": 1, "rows": 2}


def test_nup_margin_too_large(call):
    answer = call("nup", [make_pdf(3)], per_sheet=16, margin=200, sheet="A5")
    assert answer.problem == "bad_parameter"


# -- booklet -----------------------------------------------------------------------------------

def _sides(data: bytes) -> list[tuple]:
    """Each side's (left page number, right page number), None for a blank half."""
    out = []
    for i, (w, _h) in enumerate(sizes(data)):
        halves = [None, None]
        for text, box in marks(data, i).items():
            halves[0 if box[0] < w / 2 else 1] = int(text.rsplit(" ", 1)[1])
        out.append(tuple(halves))
    return out


def test_booklet_of_8_pages(call):
    answer = call("booklet", [make_pdf(8, marker="A")])
    assert _sides(answer.file) == [(8, 1), (2, 7), (6, 3), (4, 5)]
    assert sizes(answer.file) == [pytest.approx(A4[::-1])] * 4
    assert answer.report == {"pages": 8, "blanks": 0, "sides": 4}


def test_booklet_of_10_pages_adds_two_blanks_at_the_end(call):
    answer = call("booklet", [make_pdf(10, marker="A")], sheet="A3")
    assert _sides(answer.file) == [(None, 1), (2, None), (10, 3), (4, 9), (8, 5), (6, 7)]
    assert sizes(answer.file) == [pytest.approx(SIZES["a3"][::-1])] * 6
    assert answer.report == {"pages": 12, "blanks": 2, "sides": 6}


def test_booklet_of_one_page(call):
    answer = call("booklet", [make_pdf(1, marker="A")])
    assert _sides(answer.file) == [(None, 1), (None, None)]


# -- stamp-image -------------------------------------------------------------------------------

def image_placements(data: bytes, page: int) -> list[tuple]:
    """(x0, y0, x1, y1) of each image PDFium finds on `page` (0-based), in user space."""
    doc = pypdfium2.PdfDocument(data)
    try:
        return [obj.get_bounds() for obj in doc[page].get_objects(
            filter=[pypdfium2.raw.FPDF_PAGEOBJ_IMAGE], max_depth=3)]
    finally:
        doc.close()


@pytest.mark.parametrize("raw, expected", [
    ({}, (612 / 2 - 76.5, 396 - 51, 612 / 2 + 76.5, 396 + 51)),  # 25% of 612 wide, 3:2
    ({"position": "top-left", "width": "120"}, (24, 792 - 24 - 80, 144, 792 - 24)),
    ({"position": "right", "width": "60"}, (612 - 24 - 60, 396 - 20, 612 - 24, 396 + 20)),
    ({"x": "10", "y": "20", "width": "30"}, (10, 20, 40, 40)),
])
def test_stamp_image_places_the_image(call, raw, expected):
    from tests.pdfs import make_image_png
    answer = call("stamp-image", [make_pdf(2), make_image_png(300, 200)], **raw)
    for page in range(2):
        (box,) = image_placements(answer.file, page)
        assert close(box, expected, 0.5), box
    assert sizes(answer.file) == [(612, 792)] * 2


def test_stamp_image_jpeg_opacity_pages_and_a_turned_page(call):
    from tests.pdfs import make_image_jpeg
    answer = call("stamp-image", [make_pdf(2, rotate=90), make_image_jpeg(40, 40)],
                  pages="2", opacity="0.5", position="bottom-left", width="50")
    assert image_placements(answer.file, 0) == []
    (box,) = image_placements(answer.file, 1)
    # shown landscape (792 wide): bottom-left as seen is, in user space, the lower right
    # corner: x from 612 - 24 - 50 to 612 - 24, y from 24 to 74.
    assert close(box, (612 - 74, 24, 612 - 24, 74), 0.5), box
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        states = pdf.pages[1].obj.Resources.ExtGState
        assert [float(s.ca) for s in states.values()] == [0.5]
    assert answer.report == {"stamped": 1}


def test_stamp_image_refusals(call):
    from notrace.operations import OPERATIONS
    from tests.pdfs import make_image_png
    assert call("stamp-image", [make_pdf(1), make_pdf(1)]).problem == "unsupported_image"
    assert call("stamp-image", [make_image_png(), make_image_png()]).problem == "not_a_pdf"
    assert call("stamp-image", [make_pdf(1), make_image_png()],
                width="99999").problem == "bad_parameter"
    for raw in ({"x": "1"}, {"width": "0%"}, {"width": "10cm"}):
        with pytest.raises(ParamError):
            OPERATIONS["stamp-image"].validate(raw)
