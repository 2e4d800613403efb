"""The web page at GET /: generated from the operation declarations, with its own
same-origin script and stylesheet (package data under static/). Runs in the server."""
from notrace.web.page import ASSET_TYPES, NOTICE, PAGE_CSP, Asset, Page, build

__all__ = ["ASSET_TYPES", "NOTICE", "PAGE_CSP", "Asset", "Page", "build"]
