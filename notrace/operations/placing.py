"""Pages drawn inside other pages (overlay, nup, booklet) and the geometry they share.
Runs in the CHILD.

A page becomes a Form XObject whose /BBox is its visible box (CropBox, else MediaBox)
and whose /Matrix undoes its /Rotate: drawn with the identity it covers (0, 0)-(vw, vh),
upright as a reader sees it. `Placer` makes each page's form once per target document
(a letterhead stamped on 2 000 pages is one object) and writes the few operators that
draw it into a rectangle. Rectangles are (x0, y0, x1, y1) in points.
"""
from __future__ import annotations

import pikepdf
from pikepdf import Matrix, Name, Operator

from notrace.operations._common import page_box
from notrace.operations.stamp import add_resource, visual_matrix

__all__ = ["Rect", "visual", "fit_matrix", "Placer", "rectangle_ops", "draw_over", "draw_under"]

Rect = tuple[float, float, float, float]


def _matrix(values: list[float]) -> Matrix:
    return Matrix(*(float(v) for v in values))


def visual(page: pikepdf.Page) -> tuple[Matrix, float, float]:
    """(visual -> user space matrix, visible width, visible height) of `page` as shown."""
    matrix, vw, vh = visual_matrix(page)
    return _matrix(matrix), vw, vh


def fit_matrix(width: float, height: float, cell: Rect, fit: str = "contain") -> Matrix:
    """The matrix that puts a (0, 0)-(width, height) rectangle into `cell`: contain
    (whole, aspect kept, centred), cover (cell filled, aspect kept, centred, overflow)
    or stretch (both sides fitted)."""
    cw, ch = cell[2] - cell[0], cell[3] - cell[1]
    sx, sy = cw / width, ch / height
    if fit != "stretch":
        sx = sy = min(sx, sy) if fit == "contain" else max(sx, sy)
    dx = cell[0] + (cw - width * sx) / 2
    dy = cell[1] + (ch - height * sy) / 2
    return Matrix(sx, 0, 0, sy, dx, dy)


def _ops_bytes(ops: list) -> bytes:
    return pikepdf.unparse_content_stream(ops)


def rectangle_ops(rect: Rect, width: float = 0.5) -> bytes:
    """A thin black outline of `rect` (n-up borders), in its own q ... Q."""
    x0, y0, x1, y1 = rect
    return _ops_bytes([([], Operator("q")), ([width], Operator("w")), ([0], Operator("G")),
                       ([x0, y0, x1 - x0, y1 - y0], Operator("re")), ([], Operator("S")),
                       ([], Operator("Q"))])


class Placer:
    """Draws pages of `source` on pages of `target` (the same document or another), one
    form per source page."""

    def __init__(self, target: pikepdf.Pdf, source: pikepdf.Pdf) -> None:
        self.target = target
        self.foreign = source is not target
        self._forms: dict[tuple[int, int], tuple[pikepdf.Object, float, float]] = {}

    def form(self, page: pikepdf.Page) -> tuple[pikepdf.Object, float, float]:
        """(form in target, visible width, visible height) of `page` (a page of the
        source), made once."""
        key = page.obj.objgen
        made = self._forms.get(key)
        if made is None:
            to_user, vw, vh = visual(page)
            form = page.as_form_xobject(False)
            form.BBox = pikepdf.Array(page_box(page))
            form.Matrix = pikepdf.Array(list(to_user.inverse().shorthand))
            if self.foreign:
                form = self.target.copy_foreign(form)
            made = self._forms[key] = (form, vw, vh)
        return made

    def draw(self, page: pikepdf.Page, source: pikepdf.Page, cell: Rect, *,
             fit: str = "contain", on_visual: bool = False) -> tuple[bytes, Rect]:
        """Operators drawing `source` into `cell` of `page` (in page user space, or in
        its visual space with `on_visual`), and the rectangle it covers in the same
        space. The caller adds the bytes to the page's content."""
        form, vw, vh = self.form(source)
        name = add_resource(page, Name.XObject, "/NtP", form)
        place = fit_matrix(vw, vh, cell, fit)
        ops: list = [([], Operator("q"))]
        if on_visual:
            ops.append((list(visual(page)[0].shorthand), Operator("cm")))
        ops += [(list(place.shorthand), Operator("cm")), ([name], Operator("Do")),
                ([], Operator("Q"))]
        x0, y0 = place.transform((0, 0))
        x1, y1 = place.transform((vw, vh))
        return _ops_bytes(ops), (x0, y0, x1, y1)


def draw_over(pdf: pikepdf.Pdf, page: pikepdf.Page, ops: bytes) -> None:
    """Append `ops` after the page's content, which is wrapped in q ... Q first so a
    content stream that leaves the graphics state changed cannot move what is drawn."""
    page.contents_add(pdf.make_stream(b"q\n"), prepend=True)
    page.contents_add(pdf.make_stream(b"\nQ\n" + ops), prepend=False)


def draw_under(pdf: pikepdf.Pdf, page: pikepdf.Page, ops: bytes) -> None:
    """Put `ops` before the page's content (it paints over them)."""
    page.contents_add(pdf.make_stream(ops + b"\n"), prepend=True)
