"""Pixel sizes of rendered pages, and their limits: pure arithmetic, no PDF library.
Imported by the SERVER (registry.py: the parameters' bounds and descriptions) and by the
CHILD (render.py: the check made before any bitmap is allocated)."""
from __future__ import annotations

import math

from notrace.operations.problems import Problem

__all__ = ["MAX_PAGE_PIXELS", "MIN_DPI", "MAX_DPI", "MAX_THUMBNAIL_WIDTH", "pixel_size"]

#: Most pixels one rendered page may have (50 megapixels: A3 at 500 dpi, A4 at 600 dpi).
#: A page is rendered as RGB by PDFium (3 bytes a pixel) and copied once by Pillow (4),
#: so this bounds a page's peak at about 350 MB, within the default 512 MB child limit.
MAX_PAGE_PIXELS = 50_000_000
MIN_DPI, MAX_DPI = 36, 600
MAX_THUMBNAIL_WIDTH = 2048


def pixel_size(width_pt: float, height_pt: float, scale: float, page: int) -> tuple[int, int]:
    """(width, height) in pixels of a page `width_pt` x `height_pt` points drawn at
    `scale` pixels a point, rounded up; Problem "too_large"
    when that is more than MAX_PAGE_PIXELS, or not a picture at all. `page` is 1-based,
    for the message."""
    if not (math.isfinite(width_pt) and math.isfinite(height_pt)
            and width_pt > 0 and height_pt > 0):
        raise Problem("malformed", f"page {page} has no size to render")
    width, height = _pixels(width_pt * scale), _pixels(height_pt * scale)
    if width * height > MAX_PAGE_PIXELS:
        raise Problem("too_large", f"page {page} would be {width} x {height} pixels, more "
                      f"than the {MAX_PAGE_PIXELS // 1_000_000} megapixels allowed a page")
    return width, height


def _pixels(length: float) -> int:
    """Whole pixels covering `length`, without the float noise (1650.0000000002 is 1650)."""
    return max(1, math.ceil(length - 1e-6))
