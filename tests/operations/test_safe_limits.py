"""The pixel limits as settings (issue 9): max_page_pixels and max_pixel_pages reach the
child in the job's params (jobs.job_params) and bound render, thumbnail and safe before
anything is drawn; without them (a pipeline's step, a direct call) the defaults hold."""
from __future__ import annotations

import json

import pytest

from notrace import settings as settings_module
from notrace.jobs import job_params
from notrace.operations import OPERATIONS
from notrace.operations.child import run
from notrace.operations.raster import (DEFAULT_PAGE_PIXELS, DEFAULT_PIXEL_PAGES,
                                       PIXEL_OPERATIONS)
from tests import pdfs

pytestmark = pytest.mark.timeout(60)


def _run(operation: str, doc: bytes, raw: dict, **settings) -> dict:
    op = OPERATIONS[operation]
    params = job_params(op, op.validate(raw), settings_module.load({}, settings))
    return json.loads(run([memoryview(doc)], params)[0])


def test_settings_have_documented_defaults_and_reach_the_job():
    loaded = settings_module.load({})
    assert (loaded.max_page_pixels, loaded.max_pixel_pages) == (DEFAULT_PAGE_PIXELS,
                                                                DEFAULT_PIXEL_PAGES)
    table = settings_module.settings_table()
    assert "NOTRACE_MAX_PAGE_PIXELS" in table and "NOTRACE_MAX_PIXEL_PAGES" in table
    tight = settings_module.load({"NOTRACE_MAX_PAGE_PIXELS": "1000",
                                  "NOTRACE_MAX_PIXEL_PAGES": "3"})
    params = job_params(OPERATIONS["render"], OPERATIONS["render"].validate({}), tight)
    assert params["pixel_limits"] == {"page_pixels": 1000, "pages": 3}
    assert set(AT_72_DPI) == PIXEL_OPERATIONS   # every operation that draws is tested
    # operations that draw nothing carry no pixel limits
    assert "pixel_limits" not in job_params(OPERATIONS["merge"], {}, tight)


#: Raw params drawing a Letter page at 612 x 792 pixels, by operation.
AT_72_DPI = {"render": {"dpi": "72"}, "thumbnail": {"width": "612"}, "safe": {"dpi": "72"},
             "ocr": {"dpi": "72"},
             "redact": {"dpi": "72", "boxes": '[{"page": 1, "x0": 1, "y0": 1, "x1": 9, '
                                              '"y1": 9}]'}}


@pytest.mark.parametrize("operation", sorted(AT_72_DPI))
def test_a_page_over_the_pixel_setting_is_too_large(operation):
    doc = pdfs.make_pdf(1)   # Letter at 72 dpi: 612 x 792 = 484,704 pixels
    raw = AT_72_DPI[operation]
    assert "problem" not in _run(operation, doc, raw, max_page_pixels="484704")
    answer = _run(operation, doc, raw, max_page_pixels="484703")
    assert answer["problem"] == "too_large", answer
    assert "484703 pixels allowed a page" in answer["detail"]


@pytest.mark.parametrize("operation", ["render", "safe"])
def test_more_pages_than_the_pixel_pages_setting_are_refused(operation):
    doc = pdfs.make_pdf(4)
    assert "problem" not in _run(operation, doc, {"dpi": "36"}, max_pixel_pages="4")
    answer = _run(operation, doc, {"dpi": "36"}, max_pixel_pages="3")
    assert answer["problem"] == "too_many_pages", answer
    if operation == "render":   # only the pages drawn count
        assert "problem" not in _run(operation, doc, {"dpi": "36", "pages": "1-3"},
                                     max_pixel_pages="3")
