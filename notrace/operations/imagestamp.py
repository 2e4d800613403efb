"""stamp-image: a PNG or JPEG drawn on pages. Runs in the CHILD.

The image is embedded once (images.image_xobject: JPEG as is, PNG Flate with its alpha
as a soft mask) and drawn on each selected page in the page's VISIBLE orientation (its
/Rotate undone, as the text stamps do), after the page's content wrapped in q ... Q.
Width is in points or a percentage of the visible width; the height follows the image's
aspect. A named position keeps the image stamp.MARGIN points inside the visible box; x
and y place its lower-left corner, in points from the visible box's lower-left corner.
"""
from __future__ import annotations

import pikepdf
from pikepdf import Name, Operator

from notrace.operations._common import Output, open_pdf, pdf_output
from notrace.operations.images import image_xobject
from notrace.operations.pages import parse_pages
from notrace.operations.paper import MAX_SIDE_PT
from notrace.operations.placing import draw_over, visual
from notrace.operations.problems import Problem
from notrace.operations.stamp import add_resource, anchor_centre

__all__ = ["stamp_image", "parse_width"]


def parse_width(text: str, visible_width: float) -> float:
    """"120" (points) or "25%" (of the visible width) -> points."""
    if text.endswith("%"):
        return float(text[:-1]) * visible_width / 100
    return float(text)


def stamp_image(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """The second input (PNG or JPEG) drawn on the selected pages of the first."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages, which=1)
    xobject, image = image_xobject(pdf, inputs[1], 2)
    xobject = pdf.make_indirect(xobject)
    aspect = image.height / image.width
    state = None
    if params["opacity"] < 1:
        state = pdf.make_indirect(pikepdf.Dictionary(Type=Name.ExtGState, ca=params["opacity"],
                                                     CA=params["opacity"]))
    chosen = sorted(parse_pages(params["pages"]).resolve_set(len(pdf.pages)))
    pages = list(pdf.pages)  # list once: pdf.pages[i] copies every page (see pagework)
    for i in chosen:
        page = pages[i]
        to_user, vw, vh = visual(page)
        w = parse_width(params["width"], vw)
        h = w * aspect
        if not (0.01 <= min(w, h) and max(w, h) <= MAX_SIDE_PT):
            raise Problem("bad_parameter", f"width: the image would be {w:.4g} x {h:.4g} "
                                           f"points on page {i + 1}")
        if params["x"] is not None:
            x, y = params["x"], params["y"]
        else:
            cx, cy = anchor_centre(params["position"], vw, vh, w / 2, h / 2)
            x, y = cx - w / 2, cy - h / 2
        ops: list = [([], Operator("q")), (list(to_user.shorthand), Operator("cm")),
                     ([w, 0, 0, h, x, y], Operator("cm"))]
        if state is not None:
            ops.append(([add_resource(page, Name.ExtGState, "/NtG", state)], Operator("gs")))
        ops += [([add_resource(page, Name.XObject, "/NtI", xobject)], Operator("Do")),
                ([], Operator("Q"))]
        draw_over(pdf, page, pikepdf.unparse_content_stream(ops))
    return pdf_output(pdf, {"stamped": len(chosen)})
