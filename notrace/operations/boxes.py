"""Page boxes for crop: the text form of a box, margins taken in the page's visible
orientation, and the rule that refuses a crop with no area.

Pure Python (no PDF library): runs in the SERVER (`check_crop`, crop's Operation.check,
at validation) and in the CHILD (pagework.crop, against each page's own boxes). Units are
PDF points; a Box is (x0, y0, x1, y1) in the page's user space, with x0 < x1 and y0 < y1.

What is refused, and where:
- a `box` less than MIN_SIDE_PT wide or high, or a `box` given together with non-zero
  margins: ParamError at validation (400 bad-parameter, `param` names it);
- margins that leave a page less than MIN_SIDE_PT wide or high, or (mode "crop") a `box`
  that misses a page's MediaBox: only known once the document is open, so the child
  answers the problem code "bad_parameter" (also 400 bad-parameter, without `param`).
MIN_SIDE_PT is also the smallest box _common.page_box accepts as a page's box.
"""
from __future__ import annotations

import re

from notrace.operations.spec import NUMBER_RE, ParamError, quote

__all__ = ["Box", "MIN_SIDE_PT", "MAX_POINTS", "BOX_PATTERN", "MARGINS", "parse_box",
           "check_crop", "trim", "intersect", "has_area"]

Box = tuple[float, float, float, float]

#: The smallest side of a box we write, in points; less is "empty".
MIN_SIDE_PT = 1.0
#: Largest margin and largest coordinate magnitude accepted, in points (a page side is at
#: most 14,400 pt; some files offset their boxes, so coordinates get more room).
MAX_POINTS = 100_000.0
#: The text form of a box, "x0,y0,x1,y1" (ECMA and Python compatible; the schema's too).
BOX_PATTERN = rf"^ *{NUMBER_RE}(?: *, *{NUMBER_RE}){{3}} *$"
#: Margin parameters, in the order of the user-space edges x0, y0, x1, y1 of an upright page.
MARGINS = ("left", "bottom", "right", "top")


def has_area(box: Box) -> bool:
    x0, y0, x1, y1 = box
    return x1 - x0 >= MIN_SIDE_PT and y1 - y0 >= MIN_SIDE_PT


def parse_box(text: str, *, param: str = "box") -> Box:
    """"x0,y0,x1,y1" -> Box, corners in either order. Raises ParamError naming `param`."""
    if re.fullmatch(BOX_PATTERN, text) is None:
        raise ParamError(param, f"{quote(text)} is not four numbers x0,y0,x1,y1")
    x0, y0, x1, y1 = (float(v) for v in text.split(","))
    if any(abs(v) > MAX_POINTS for v in (x0, y0, x1, y1)):
        raise ParamError(param, f"coordinates must be within -{MAX_POINTS:g} and "
                                f"{MAX_POINTS:g} points")
    box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    if not has_area(box):
        raise ParamError(param, f"leaves an empty box: each side must be at least "
                                f"{MIN_SIDE_PT:g} point")
    return box


def check_crop(values: dict) -> None:
    """crop's Operation.check (SERVER): the box has an area and comes without margins."""
    if values["box"] is None:
        return
    parse_box(values["box"])
    given = [name for name in MARGINS if values[name]]
    if given:
        raise ParamError(given[0], "give either box or margins, not both")


def trim(box: Box, margins: dict, rotation: int) -> Box:
    """`box` less the margins, each taken from the side the reader SEES: on a page turned
    by /Rotate (0, 90, 180 or 270, clockwise), "top" is the user-space edge shown on top.
    The result may have no area (see has_area)."""
    k = rotation // 90 % 4
    # Each quarter turn clockwise shows the edge that was on the left on top, and so on.
    sides = MARGINS[-k:] + MARGINS[:-k] if k else MARGINS
    x0, y0, x1, y1 = box
    return (x0 + margins[sides[0]], y0 + margins[sides[1]],
            x1 - margins[sides[2]], y1 - margins[sides[3]])


def intersect(a: Box, b: Box) -> Box:
    """The part of `a` inside `b` (no area when they do not overlap; see has_area)."""
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
