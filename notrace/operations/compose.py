"""Pages drawn on other pages: overlay, nup, booklet. Runs in the CHILD.

overlay edits the first document in place (everything it has is kept); nup and booklet
build a new document of sheets, each source page drawn once as a Form XObject
(placing.Placer), so like merge they carry pages and what pages reference, not the
outline or the form field tree. Every count here is bounded by the page limit: sheets
are at most the source pages (booklet: their half, plus one for blanks).
"""
from __future__ import annotations

import math

import pikepdf

from notrace.operations._common import Output, open_pdf, pdf_output, save_pdf
from notrace.operations.pages import parse_pages
from notrace.operations.paper import GRIDS, orient, paper_size, parse_paper
from notrace.operations.placing import Placer, Rect, draw_over, draw_under, rectangle_ops, visual
from notrace.operations.problems import Problem

__all__ = ["overlay", "nup", "booklet", "booklet_order", "grid_cells"]

#: Side of a cell below which a margin is refused, in points.
MIN_CELL_PT = 8.0


def overlay(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """The pages of the second document drawn over (or under) the selected pages of
    the first, fitted into each page's visible box, upright as the page is shown. The
    k-th selected page gets the k-th overlay page; past the last one, `repeat` says
    which: the last again, from the first again (cycle), or none."""
    password = params.get("password")
    pdf = open_pdf(inputs[0], password=password, max_pages=max_pages, which=1)
    stamp = open_pdf(inputs[1], password=password, max_pages=max_pages, which=2)
    chosen = sorted(parse_pages(params["pages"]).resolve_set(len(pdf.pages)))
    count, repeat = len(stamp.pages), params["repeat"]
    placer = Placer(pdf, stamp)
    draw = draw_over if params["mode"] == "overlay" else draw_under
    # Lists once: pdf.pages[i] copies every page (see pagework).
    pages, sources = list(pdf.pages), list(stamp.pages)
    stamped = []
    for k, i in enumerate(chosen):
        if k >= count and repeat == "none":
            break
        source = sources[k if k < count else (count - 1 if repeat == "last" else k % count)]
        page = pages[i]
        _to_user, vw, vh = visual(page)
        ops, _rect = placer.draw(page, source, (0.0, 0.0, vw, vh), on_visual=True)
        draw(pdf, page, ops)
        stamped.append(i + 1)
    return pdf_output(pdf, {"stamped": stamped})


def grid_cells(size: tuple[float, float], cols: int, rows: int, margin: float,
               order: str) -> list[Rect]:
    """The cells of a sheet in reading order ("rows": left to right, then down;
    "columns": top to bottom, then right); `margin` around the sheet and between
    cells. Raises Problem when the margin leaves no room."""
    w, h = size
    cw, ch = (w - (cols + 1) * margin) / cols, (h - (rows + 1) * margin) / rows
    if min(cw, ch) < MIN_CELL_PT:
        raise Problem("bad_parameter", "margin: leaves no room for the pages on the sheet")
    cells = []
    for k in range(cols * rows):
        r, c = divmod(k, cols) if order == "rows" else divmod(k, rows)[::-1]
        x0 = margin + c * (cw + margin)
        y1 = h - margin - r * (ch + margin)
        cells.append((x0, y1 - ch, x0 + cw, y1))
    return cells


def _impose(pdf: pikepdf.Pdf, slots: list[int | None], cells: list[Rect],
            size: tuple[float, float], border: bool) -> bytes:
    """A new document of sheets of `size`, each taking len(cells) slots in turn (a slot
    is a page index of `pdf`, or None for a blank)."""
    out = pikepdf.new()
    placer = Placer(out, pdf)
    pages = list(pdf.pages)  # list once: pdf.pages[i] copies every page (see pagework)
    for first in range(0, len(slots), len(cells)):
        sheet = out.add_blank_page(page_size=size)
        chunks = []
        for slot, cell in zip(slots[first:first + len(cells)], cells):
            if slot is None:
                continue
            ops, rect = placer.draw(sheet, pages[slot], cell)
            chunks.append(ops)
            if border:
                chunks.append(rectangle_ops(rect))
        sheet.obj.Contents = out.make_stream(b"\n".join(chunks))
    return save_pdf(out, min_version=pdf.pdf_version)


def nup(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """`per_sheet` pages on each sheet, each fitted (aspect kept, centred) in its cell;
    ceil(pages / per_sheet) sheets. orientation auto: landscape for 2, 6 and 8 per sheet
    (the cells are then nearer the pages' shape), portrait for 4, 9 and 16."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    per_sheet = params["per_sheet"]
    long_side, short_side = GRIDS[per_sheet]
    wanted = (2, 1) if per_sheet in (2, 6, 8) else (1, 2)  # the shape that suits the grid
    size = paper_size(params["sheet"], params["orientation"], wanted, param="sheet")
    cols, rows = (long_side, short_side) if size[0] > size[1] else (short_side, long_side)
    cells = grid_cells(size, cols, rows, params["margin"], params["order"])
    count = len(pdf.pages)
    data = _impose(pdf, list(range(count)), cells, size, params["border"])
    return pdf_output(data, {"sheets": math.ceil(count / per_sheet), "cols": cols,
                             "rows": rows})


def booklet_order(count: int) -> list[int | None]:
    """Page indices for saddle-stitch imposition, two per sheet side (left, right), front
    then back of each sheet: count padded with blanks (None) to a multiple of 4. For 8
    pages: 8,1 | 2,7 | 6,3 | 4,5 (1-based)."""
    total = math.ceil(count / 4) * 4
    slots: list[int | None] = []
    for i in range(total // 4):
        slots += [total - 1 - 2 * i, 2 * i, 2 * i + 1, total - 2 - 2 * i]
    return [s if s < count else None for s in slots]


def booklet(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Sheet sides (landscape `sheet`) with two pages each, in saddle-stitch order: print
    both sides, fold, staple. Blank pages are added at the end to a multiple of 4."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    size = orient(parse_paper(params["sheet"], param="sheet"), "landscape")  # WxH too
    cells = grid_cells(size, 2, 1, params["margin"], "rows")
    count = len(pdf.pages)
    slots = booklet_order(count)
    data = _impose(pdf, slots, cells, size, params["border"])
    return pdf_output(data, {"pages": len(slots), "blanks": len(slots) - count,
                             "sides": len(slots) // 2})
