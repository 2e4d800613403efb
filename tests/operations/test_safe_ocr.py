"""safe with ocr=true (issue 9): the words of the original found by `text` in the pixel
PDF, at about their places, recognised in phase 2 from the pixels alone; the parameters
that need Tesseract refused when it cannot serve them."""
from __future__ import annotations

import json

import pytest

from notrace.operations import OPERATIONS, ParamError, ocr_engine
from tests import pdfs
from tests.operations.test_safe import assert_pixels_only

pytestmark = pytest.mark.timeout(60)

LINE = "Quarterly report number {n} shows growth"


def _words(call, data: bytes) -> list[list[dict]]:
    answer = call("text", [data], layout="boxes")
    return [page["words"] for page in answer.json()["pages"]]


def test_the_words_of_the_original_are_found_at_their_places(call):
    original = pdfs.make_pdf(2, text=LINE)
    answer = call("safe", [original], ocr="true")
    assert answer.report["ocr"] is True and answer.report["language"] == "eng"
    assert "text" not in answer.report["not_kept"]
    assert_pixels_only_but_text(answer.body, original)
    ours, theirs = _words(call, answer.body), _words(call, original)
    for n, (found, expected) in enumerate(zip(ours, theirs), 1):
        assert [w["text"] for w in found] == LINE.format(n=n).split()
        # within 5 points of PDFium's boxes (the font's boxes there, the ink's here)
        for word, truth in zip(found, expected):
            for side in ("x0", "y0", "x1", "y1"):
                assert abs(word[side] - truth[side]) < 5, (word, truth)


def assert_pixels_only_but_text(data: bytes, original: bytes) -> None:
    """The pixel-only shape, but for the text layer: one more content stream, a font."""
    import io

    import pikepdf
    pdf = pikepdf.open(io.BytesIO(data))
    for page in pdf.pages:
        assert set(page.Resources.keys()) == {"/XObject", "/Font"}
        assert len(page.Resources.XObject) == 1
        assert "/Annots" not in page.obj
    assert len(pdf.pages) == len(pikepdf.open(io.BytesIO(original)).pages)


def test_ocr_batches_are_a_few_pages_each(call):
    """Tesseract's time, not the pixels' bytes, bounds a batch with ocr."""
    from notrace.operations.safe import OCR_BATCH_PAGES
    pages = OCR_BATCH_PAGES + 1
    answer = call("safe", [pdfs.make_pdf(pages, text=LINE)], ocr="true", dpi=72)
    assert answer.report["batches"] == 2 and answer.report["pages"] == pages
    assert call("safe", [pdfs.make_pdf(pages)], dpi=72).report["batches"] == 1


def test_without_ocr_there_is_no_text(call):
    answer = call("safe", [pdfs.make_pdf(1, text=LINE)])
    assert_pixels_only(answer.body, pdfs.make_pdf(1, text=LINE))
    assert _words(call, answer.body) == [[]]


def test_ocr_parameters_are_checked_in_the_server():
    safe = OPERATIONS["safe"]
    assert ocr_engine.available()[0]   # the dev environment has the ocr extra
    with pytest.raises(ParamError) as caught:
        safe.validate({"ocr": "true", "language": "xyz"})
    assert caught.value.param == "language"
    with pytest.raises(ParamError):
        safe.validate({"language": "EN GLISH"})    # the pattern, OCR or not
    assert safe.validate({"language": "xyz"})["language"] == "xyz"  # unused without ocr
    assert json.dumps(safe.describe())
