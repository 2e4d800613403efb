"""scale: pages resized to a paper size or by a factor. Runs in the CHILD.

Each selected page is edited in place with ONE matrix M from its old visible box to the
new page: the content is drawn through M (clipped to the old visible box, so nothing the
CropBox hid appears in the margins that `contain` leaves), the BleedBox, TrimBox and
ArtBox and every annotation's geometry (Rect, QuadPoints, Vertices, L, CL, InkList) go
through M too, so all stays where it was relative to the page. The new MediaBox is the
target size and the CropBox is removed (the visible page is the target). Sizes are taken
as the reader sees the page: on a page turned by /Rotate 90, an A4 target is laid out
turned as well. Destinations that point at a scaled page (links, outline items, named
destinations, the open action: destinations.py) go through its M too, their zoom divided
by its scale, so a link still shows the same place at the same size on screen.
"""
from __future__ import annotations

import pikepdf
from pikepdf import Matrix, Operator

from notrace.operations._common import Output, open_pdf, page_box, page_rotation, pdf_output
from notrace.operations.boxes import has_area
from notrace.operations.destinations import explicit_destinations, move_destination
from notrace.operations.pages import parse_pages
from notrace.operations.paper import MAX_SIDE_PT, MIN_SIDE_PT, paper_size
from notrace.operations.placing import fit_matrix
from notrace.operations.problems import Problem

__all__ = ["scale"]

_BOXES = ("/BleedBox", "/TrimBox", "/ArtBox")
_POINT_LISTS = ("/QuadPoints", "/Vertices", "/L", "/CL")


def _target(params: dict, vw: float, vh: float) -> tuple[float, float]:
    """The new visible width and height."""
    if params["factor"] is not None:
        return vw * params["factor"], vh * params["factor"]
    return paper_size(params["size"], params["orientation"], (vw, vh), param="size")


def _numbers(value) -> list[float] | None:
    if not isinstance(value, pikepdf.Array):
        return None
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _points(m: Matrix, values: list[float]) -> list[float]:
    out: list[float] = []
    for k in range(0, len(values) - 1, 2):
        out.extend(m.transform((values[k], values[k + 1])))
    return out


def _rect(m: Matrix, values: list[float]) -> list[float]:
    xs, ys = zip(*(m.transform((values[i], values[j])) for i, j in ((0, 1), (2, 1),
                                                                      (0, 3), (2, 3))))
    return [min(xs), min(ys), max(xs), max(ys)]


def _clip(box: list[float], limit: list[float]) -> list[float]:
    return [max(box[0], limit[0]), max(box[1], limit[1]), min(box[2], limit[2]),
            min(box[3], limit[3])]


def _move_annotations(page: pikepdf.Page, m: Matrix, seen: set) -> None:
    annots = page.obj.get("/Annots")
    if not isinstance(annots, pikepdf.Array):
        return
    for annot in annots:
        if not isinstance(annot, pikepdf.Dictionary) or annot.objgen in seen:
            continue
        if annot.is_indirect:
            seen.add(annot.objgen)  # shared by several pages (hostile): moved once
        rect = _numbers(annot.get("/Rect"))
        if rect is not None and len(rect) == 4:
            annot.Rect = pikepdf.Array(_rect(m, rect))
        for key in _POINT_LISTS:
            values = _numbers(annot.get(key))
            if values is not None:
                annot[key] = pikepdf.Array(_points(m, values))
        ink = annot.get("/InkList")
        if isinstance(ink, pikepdf.Array):
            paths = [_numbers(path) for path in ink]
            annot.InkList = pikepdf.Array([pikepdf.Array(_points(m, p)) for p in paths if p])


def _scale_page(pdf: pikepdf.Pdf, page: pikepdf.Page, params: dict, seen: set) -> Matrix:
    """Scale one page in place; its matrix M (old user space to new)."""
    x0, y0, x1, y1 = page_box(page)
    bw, bh = x1 - x0, y1 - y0
    turned = page_rotation(page) in (90, 270)
    vw, vh = (bh, bw) if turned else (bw, bh)
    w, h = _target(params, vw, vh)
    if not (MIN_SIDE_PT <= w <= MAX_SIDE_PT and MIN_SIDE_PT <= h <= MAX_SIDE_PT):
        raise Problem("bad_parameter", f"factor: page {pdf.pages.index(page) + 1} would be "
                                       f"outside {MIN_SIDE_PT:g} to {MAX_SIDE_PT:g} points")
    tw, th = (h, w) if turned else (w, h)
    m = Matrix(1, 0, 0, 1, -x0, -y0) @ fit_matrix(bw, bh, (0.0, 0.0, tw, th), params["fit"])
    media = [0.0, 0.0, tw, th]
    head = pikepdf.unparse_content_stream([
        ([], Operator("q")), (list(m.shorthand), Operator("cm")),
        ([x0, y0, bw, bh], Operator("re")), ([], Operator("W")), ([], Operator("n"))])
    page.contents_add(pdf.make_stream(head + b"\n"), prepend=True)
    page.contents_add(pdf.make_stream(b"\nQ\n"), prepend=False)
    for key in _BOXES:
        box = _numbers(page.obj.get(key))
        if box is not None and len(box) == 4:
            moved = _clip(_rect(m, box), media)
            if has_area(tuple(moved)):
                page.obj[key] = pikepdf.Array(moved)
            else:
                del page.obj[key]
    page.obj.MediaBox = pikepdf.Array(media)
    if "/CropBox" in page.obj:
        del page.obj["/CropBox"]
    _move_annotations(page, m, seen)
    return m


def scale(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Resize the selected pages to `size` (fitted by `fit`) or by `factor`."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    chosen = sorted(parse_pages(params["pages"]).resolve_set(len(pdf.pages)))
    seen: set = set()
    matrices = {}
    pages = list(pdf.pages)  # list once: pdf.pages[i] copies every page (see pagework)
    for i in chosen:
        page = pages[i]
        matrices[page.obj.objgen] = _scale_page(pdf, page, params, seen)
    for dest in explicit_destinations(pdf):
        target = dest[0]
        if isinstance(target, pikepdf.Dictionary) and target.objgen in matrices:
            move_destination(dest, matrices[target.objgen])
    return pdf_output(pdf, {"scaled": len(chosen)})
