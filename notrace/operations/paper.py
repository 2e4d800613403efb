"""Paper sizes for scale, nup and booklet: the text form ("A4", "Letter", "210x297mm",
"595x842pt"), orientation, and the bounds of a page side.

Pure Python (no PDF library): runs in the SERVER (parameter checks at validation) and in
the CHILD (the same parsing, against the document). Sizes are (width, height) in PDF
points, portrait (width <= height) for the named sizes.
"""
from __future__ import annotations

import re

from notrace.operations.spec import ParamError, quote

__all__ = ["SIZES", "PAPER_PATTERN", "MAX_SIDE_PT", "MIN_SIDE_PT", "ORIENTATIONS", "GRIDS",
           "parse_paper", "paper_size", "orient"]

_MM = 72 / 25.4
#: Named sizes (ISO 216 in millimetres, US sizes in inches), in points, portrait.
SIZES = {"a3": (297 * _MM, 420 * _MM), "a4": (210 * _MM, 297 * _MM),
         "a5": (148 * _MM, 210 * _MM), "letter": (612.0, 792.0), "legal": (612.0, 1008.0)}
#: The largest page side PDF allows (ISO 32000-1, annex C: 14 400 units), and the
#: smallest we write.
MAX_SIDE_PT = 14400.0
MIN_SIDE_PT = 3.0
_NUMBER = r"[0-9]{1,5}(?:\.[0-9]{1,3})?"
#: The text form (ECMA and Python compatible; the schema's too). Names in any case.
PAPER_PATTERN = (r"^(?:[Aa][345]|[Ll][Ee][Tt][Tt][Ee][Rr]|[Ll][Ee][Gg][Aa][Ll]|"
                 rf"{_NUMBER}x{_NUMBER}(?:mm|pt))$")
ORIENTATIONS = ("auto", "portrait", "landscape")
#: nup: pages per sheet -> (cells along the sheet's long side, along its short side).
GRIDS = {2: (2, 1), 4: (2, 2), 6: (3, 2), 8: (4, 2), 9: (3, 3), 16: (4, 4)}


def parse_paper(text: str, *, param: str) -> tuple[float, float]:
    """Text form -> (width, height) in points. Raises ParamError naming `param`."""
    if re.fullmatch(PAPER_PATTERN, text) is None:
        raise ParamError(param, f"{quote(text)} is not A3, A4, A5, Letter, Legal or "
                                "WxH followed by mm or pt")
    named = SIZES.get(text.lower())
    if named is not None:
        return named
    unit = _MM if text.endswith("mm") else 1.0
    w, h = (float(v) * unit for v in text[:-2].split("x"))
    for side in (w, h):
        if not MIN_SIDE_PT <= side <= MAX_SIDE_PT:
            raise ParamError(param, f"each side must be between {MIN_SIDE_PT:g} and "
                                    f"{MAX_SIDE_PT:g} points")
    return w, h


def paper_size(text: str, orientation: str, like: tuple[float, float], *,
               param: str) -> tuple[float, float]:
    """The size `text` names, in `orientation`. "auto" turns a NAMED size like `like`
    (a page's visible width and height, or the shape a layout wants) and takes a WxH
    size as it was written."""
    size = parse_paper(text, param=param)
    if orientation == "auto" and text.lower() not in SIZES:
        return size
    return orient(size, orientation, like)


def orient(size: tuple[float, float], orientation: str,
           like: tuple[float, float] | None = None) -> tuple[float, float]:
    """`size` turned portrait or landscape; "auto" takes the orientation of `like`, or
    leaves `size` as given without one."""
    w, h = size
    if orientation == "auto":
        if like is None:
            return w, h
        orientation = "landscape" if like[0] > like[1] else "portrait"
    low, high = sorted((w, h))
    return (high, low) if orientation == "landscape" else (low, high)
