"""Where the terms are on a page, from PDFium's text positions. Runs in the CHILD.

A page's characters come as `text` reads them (text.index_chars: one character per PDFium
character index, its line-break hyphens included), bounded like `text` (text.Budget:
a page over MAX_PAGE_CHARS characters is "too_large"). A match's characters are
grouped by line and each group becomes one rectangle: the union of the characters'
loose boxes (font ascent to descent, the whole advance), padded (_padded), in PDF points
of the page's own unrotated coordinates. A character PDFium gives no finite box
(degenerate text matrix) adds nothing; the page is rebuilt anyway, so its text goes,
whatever pixels it drew stay (see the README's limitations).
"""
from __future__ import annotations

import math
import re

import pypdfium2.raw as pdfium_c

from notrace.operations.redact_params import spans
from notrace.operations.text import Budget, index_chars

__all__ = ["Rect", "PAD_PT", "Budget", "page_chars", "char_box", "term_rects"]

#: (x0, y0, x1, y1) in PDF points, x0 <= x1, y0 <= y1
Rect = tuple[float, float, float, float]
#: Points added around each matched group (at least): antialiased edges, hairlines.
PAD_PT = 1.0
#: ... or this share of the group's height, when more (a 40 pt italic: 4.6 pt).
PAD_SHARE = 0.1


def page_chars(text_page, number: int, budget: Budget) -> str:
    """The page's characters, index-aligned with PDFium's (see the module doc)."""
    count = text_page.count_chars()
    budget.take(number, count)
    return index_chars(text_page.raw, text_page.get_text_range(0, count), count)


def char_box(raw_text_page, index: int, rect) -> Rect | None:
    """The loose box of character `index`, or None when PDFium has no finite one."""
    if not pdfium_c.FPDFText_GetLooseCharBox(raw_text_page, index, rect):
        return None
    box = (min(rect.left, rect.right), min(rect.bottom, rect.top),
           max(rect.left, rect.right), max(rect.bottom, rect.top))
    return box if all(map(math.isfinite, box)) else None


def _same_line(group: Rect, box: Rect) -> bool:
    """Whether `box` continues the line of `group`: they overlap by half the smaller
    height, and it does not start left of the group (a new line, or text drawn back)."""
    overlap = min(group[3], box[3]) - max(group[1], box[1])
    smaller = min(group[3] - group[1], box[3] - box[1])
    return overlap >= 0.5 * smaller and box[0] >= group[0] - 0.5 * smaller


def _union(a: Rect, b: Rect) -> Rect:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def term_rects(text_page, chars: str, patterns: list[re.Pattern]) -> tuple[int, list[Rect]]:
    """(number of matches, their rectangles) of every pattern on one page."""
    rect = pdfium_c.FS_RECTF()
    matches, rects = 0, []
    for pattern in patterns:
        for start, end in spans(pattern, chars):
            matches += 1
            group: Rect | None = None
            for i in range(start, end):
                box = char_box(text_page.raw, i, rect)
                if box is None or box[0] == box[2] and box[1] == box[3]:
                    continue  # no box, or a point (a space PDFium generated)
                if group is not None and _same_line(group, box):
                    group = _union(group, box)
                    continue
                if group is not None:
                    rects.append(group)
                group = box
            if group is not None:
                rects.append(group)
    return matches, [_padded(rect) for rect in rects]


def _padded(rect: Rect) -> Rect:
    """`rect` grown by PAD_PT, or by PAD_SHARE of its height when more: glyphs may ink
    beyond their loose box (italic overhangs, swashes, stroked text)."""
    x0, y0, x1, y1 = rect
    pad = max(PAD_PT, PAD_SHARE * (y1 - y0))
    return x0 - pad, y0 - pad, x1 + pad, y1 + pad
