"""Text stamped on pages: watermark and number. Runs in the CHILD.

Both draw one line of Helvetica (a base-14 font: nothing embedded) in the page's VISIBLE
orientation: the page's /Rotate is undone by a matrix so the text reads upright wherever
the viewer turns the page. The original content is wrapped in q/Q first, so a content
stream that leaves the graphics state changed cannot move or hide the stamp. Content is
written with pikepdf.unparse_content_stream, which escapes strings properly.
"""
from __future__ import annotations

import math

import pikepdf
from pikepdf import Name, Operator

from notrace.operations._common import Output, open_pdf, page_box, page_rotation, pdf_output
from notrace.operations.pages import parse_pages

#: Helvetica advance widths (1/1000 em) of WinAnsi codes 32..126, from the base-14 AFM;
#: other codes use 556 (the width of most Latin-1 letters), close enough for placement.
_WIDTHS = (
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584)
MARGIN = 24.0  # points between the stamp and the page edge


def encode(text: str) -> bytes:
    """Text as WinAnsi (cp1252) bytes; characters Helvetica cannot show become "?"."""
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return cleaned.encode("cp1252", errors="replace")


def text_width(data: bytes, size: float) -> float:
    return sum(_WIDTHS[b - 32] if 32 <= b <= 126 else 556 for b in data) * size / 1000


def visual_matrix(page: pikepdf.Page) -> tuple[list[float], float, float]:
    """Matrix from visual (upright, origin bottom-left of the visible box) coordinates to
    user space, and the visual width and height."""
    x0, y0, x1, y1 = page_box(page)
    w, h = x1 - x0, y1 - y0
    matrix = {0: [1, 0, 0, 1, 0, 0], 90: [0, 1, -1, 0, w, 0],
              180: [-1, 0, 0, -1, w, h], 270: [0, -1, 1, 0, 0, h]}[page_rotation(page)]
    matrix[4] += x0
    matrix[5] += y0
    visual = (h, w) if page_rotation(page) in (90, 270) else (w, h)
    return matrix, *visual


def anchor_centre(position: str, vw: float, vh: float, half_w: float, half_h: float) -> tuple:
    """Centre of the stamp for a named position, kept MARGIN inside the visible box."""
    left, right = MARGIN + half_w, vw - MARGIN - half_w
    bottom, top = MARGIN + half_h, vh - MARGIN - half_h
    x = {"left": left, "right": right}.get(position.rsplit("-", 1)[-1], vw / 2)
    vertical = position.split("-", 1)[0]
    y = {"top": top, "bottom": bottom}.get(vertical, vh / 2)
    return x, y


def add_resource(page: pikepdf.Page, kind: Name, base: str, obj) -> Name:
    """Add obj to the page's resources under base, base1, base2... (the first free name;
    pikepdf's own naming is random, and we want reproducible output)."""
    resources = page.obj.get("/Resources")
    if not isinstance(resources, pikepdf.Dictionary):
        resources = page.obj.Resources = pikepdf.Dictionary()
    group = resources.get(kind)
    if not isinstance(group, pikepdf.Dictionary):
        group = resources[kind] = pikepdf.Dictionary()
        group = resources[kind]
    name, k = base, 0
    while name in group and group[name] != obj:
        k += 1
        name = f"{base}{k}"
    group[name] = obj
    return Name(name)


class Stamper:
    """Draws text on pages of one document, sharing one font and one graphics state."""

    def __init__(self, pdf: pikepdf.Pdf, *, opacity: float = 1.0, gray: float = 0.0) -> None:
        self.pdf = pdf
        self.gray = gray
        self.font = pdf.make_indirect(pikepdf.Dictionary(
            Type=Name.Font, Subtype=Name.Type1, BaseFont=Name.Helvetica,
            Encoding=Name.WinAnsiEncoding))
        self.state = pdf.make_indirect(pikepdf.Dictionary(
            Type=Name.ExtGState, ca=opacity, CA=opacity)) if opacity < 1 else None

    def stamp(self, page: pikepdf.Page, text: str, *, size: float, position: str,
              angle: float = 0.0) -> None:
        data = encode(text)
        width = text_width(data, size)
        rad = math.radians(angle)
        cos, sin = math.cos(rad), math.sin(rad)
        half_w = (abs(cos) * width + abs(sin) * size) / 2
        half_h = (abs(sin) * width + abs(cos) * size) / 2
        matrix, vw, vh = visual_matrix(page)
        x, y = anchor_centre(position, vw, vh, half_w, half_h)
        font = add_resource(page, Name.Font, "/NtF", self.font)
        ops = [([], Operator("q")), (matrix, Operator("cm")),
               ([cos, sin, -sin, cos, x, y], Operator("cm"))]
        if self.state is not None:
            ops.append(([add_resource(page, Name.ExtGState, "/NtG", self.state)],
                        Operator("gs")))
        ops += [([self.gray], Operator("g")), ([], Operator("BT")),
                ([font, size], Operator("Tf")),
                ([-width / 2, -size * 0.35], Operator("Td")),  # 0.35 em: optical centre
                ([pikepdf.String(data)], Operator("Tj")), ([], Operator("ET")),
                ([], Operator("Q"))]
        # Wrap the existing content in q ... Q, then draw on top.
        page.contents_add(self.pdf.make_stream(b"q\n"), prepend=True)
        page.contents_add(self.pdf.make_stream(b"\nQ\n" + pikepdf.unparse_content_stream(ops)),
                          prepend=False)


def watermark(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Grey Helvetica text over the selected pages, at `opacity`, turned `angle` degrees."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    chosen = sorted(parse_pages(params["pages"]).resolve_set(len(pdf.pages)))
    stamper = Stamper(pdf, opacity=params["opacity"], gray=0.5)
    pages = list(pdf.pages)  # list once: pdf.pages[i] copies every page (see pagework)
    for i in chosen:
        stamper.stamp(pages[i], params["text"], size=params["size"],
                      position=params["position"], angle=params["angle"])
    return pdf_output(pdf, {"stamped": len(chosen)})


def number(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Label the selected pages in order: {n} runs from `start` over the selected pages
    only, {total} is the last number shown (so "{n} / {total}" ends at "k / k")."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    chosen = sorted(parse_pages(params["pages"]).resolve_set(len(pdf.pages)))
    total = params["start"] + len(chosen) - 1
    stamper = Stamper(pdf)
    pages = list(pdf.pages)  # list once: pdf.pages[i] copies every page (see pagework)
    for k, i in enumerate(chosen):
        # str.replace, never str.format: the format text is the user's.
        label = params["format"].replace("{n}", str(params["start"] + k)) \
                                .replace("{total}", str(total))
        stamper.stamp(pages[i], label, size=params["size"], position=params["position"])
    return pdf_output(pdf, {"numbered": len(chosen)})
