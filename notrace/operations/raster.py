"""Pixel sizes of rendered pages, and their limits: pure arithmetic, no PDF library.
Imported by the SERVER (registry.py: the parameters' bounds; jobs.py: the limits a job
carries; safe.py: the checks of a pixel stream) and by the CHILD (render.py, safe.py:
the check made before any bitmap is allocated)."""
from __future__ import annotations

import dataclasses
import math

from notrace.operations.problems import Problem

__all__ = ["DEFAULT_PAGE_PIXELS", "DEFAULT_PIXEL_PAGES", "PIXEL_OPERATIONS", "MIN_DPI",
           "MAX_DPI", "MAX_THUMBNAIL_WIDTH", "PixelLimits", "pixel_size"]

#: Default of the setting max_page_pixels (50 megapixels: A3 at 500 dpi, A4 at 600 dpi).
#: A page is rendered as RGB by PDFium (3 bytes a pixel) and copied once by Pillow (4),
#: so this bounds a page's peak at about 350 MB, within the default 512 MB child limit.
DEFAULT_PAGE_PIXELS = 50_000_000
#: Default of the setting max_pixel_pages: pages one render or safe job may draw.
DEFAULT_PIXEL_PAGES = 500
#: The operations whose jobs carry PixelLimits (jobs.job_params; child.run passes them).
PIXEL_OPERATIONS = frozenset({"render", "thumbnail", "safe", "ocr", "redact"})
MIN_DPI, MAX_DPI = 36, 600
MAX_THUMBNAIL_WIDTH = 2048


@dataclasses.dataclass(frozen=True)
class PixelLimits:
    """The settings max_page_pixels and max_pixel_pages, as a job's params carry them
    ({"page_pixels": N, "pages": M}: jobs.job_params) to the child."""

    page_pixels: int = DEFAULT_PAGE_PIXELS
    pages: int = DEFAULT_PIXEL_PAGES

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, value: dict) -> "PixelLimits":
        return cls(page_pixels=int(value["page_pixels"]), pages=int(value["pages"]))

    def check_pages(self, count: int) -> None:
        """Problem "too_many_pages" when a job would draw more than `pages` pages."""
        if count > self.pages:
            raise Problem("too_many_pages", f"{count} pages to draw, more than the "
                          f"{self.pages} allowed a job that draws pages")


def pixel_size(width_pt: float, height_pt: float, scale: float, page: int,
               limits: PixelLimits = PixelLimits()) -> tuple[int, int]:
    """(width, height) in pixels of a page `width_pt` x `height_pt` points drawn at
    `scale` pixels a point, rounded up; Problem "too_large"
    when that is more than limits.page_pixels, or not a picture at all. `page` is 1-based,
    for the message."""
    if not (math.isfinite(width_pt) and math.isfinite(height_pt)
            and width_pt > 0 and height_pt > 0):
        raise Problem("malformed", f"page {page} has no size to render")
    scaled = width_pt * scale, height_pt * scale
    if not all(map(math.isfinite, scaled)):   # 1e308 points: infinite pixels, no int
        raise Problem("too_large", f"page {page} is too large to draw at this resolution")
    width, height = map(_pixels, scaled)
    if width * height > limits.page_pixels:
        raise Problem("too_large", f"page {page} would be {width} x {height} pixels, more "
                      f"than the {_megapixels(limits.page_pixels)} allowed a page")
    return width, height


def _megapixels(pixels: int) -> str:
    if pixels >= 1_000_000 and pixels % 1_000_000 == 0:
        return f"{pixels // 1_000_000} megapixels"
    return f"{pixels} pixels"


def _pixels(length: float) -> int:
    """Whole pixels covering `length`, without the float noise (1650.0000000002 is 1650)."""
    return max(1, math.ceil(length - 1e-6))
