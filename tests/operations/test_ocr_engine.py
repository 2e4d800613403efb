"""ocr_engine (issue 9): Tesseract finds the words of a page drawn from known text, at
their pixel places; add_text_layer writes them so that PDFium's `text` (layout boxes)
returns them at their places in points, on turned and cropped pages too. In-process
here; the operation, confined children and the service without the extra in test_ocr.py.

The documents: pages of large Helvetica text drawn by PDFium and saved as image-only
PDFs (Pillow), the kind of file OCR is for: no text at all until OCR adds it."""
from __future__ import annotations

import io
import json

import pikepdf
import pypdfium2
import pytest
from pikepdf import Array, Dictionary, Name

from notrace.operations import ocr_engine
from notrace.operations.render import draw_page
from notrace.operations.stamp import visual_matrix

pytestmark = pytest.mark.timeout(60)

#: (x, y of the baseline in points, text) of the known page: 36-point Helvetica.
LINES = ((72, 500, "Quick brown foxes"), (72, 250, "Searchable invoice 2026"))
WORDS = [word for _x, _y, line in LINES for word in line.split()]
FONT_SIZE = 36


def text_pdf(lines=LINES, *, size=(612, 792), rotate: int = 0,
             crop: tuple | None = None) -> bytes:
    """One page of Helvetica lines (a real text layer, for comparison and skip_text).
    With `rotate`, the page has that /Rotate and its text is drawn turned the other way,
    so that it reads upright as shown (as a scanner's page turned in the file would);
    `crop` is a CropBox; `lines` are placed in the visible box, as shown."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(Dictionary(Type=Name.Font, Subtype=Name.Type1,
                                        BaseFont=Name.Helvetica))
    page = pdf.add_blank_page(page_size=size)
    page.obj.Resources = Dictionary(Font=Dictionary(F1=font))
    if rotate:
        page.obj.Rotate = rotate
    if crop:
        page.obj.CropBox = Array(list(crop))
    matrix, _width, _height = visual_matrix(page)
    page.obj.Contents = pdf.make_stream(b"%s cm\n" % " ".join(map(str, matrix)).encode()
                                        + b"".join(
        b"BT /F1 %d Tf %d %d Td (%s) Tj ET\n" % (FONT_SIZE, x, y, text.encode())
        for x, y, text in lines))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def draw(data: bytes, dpi: int, index: int = 0):
    """Page `index` of a PDF as PDFium draws it at `dpi` (render.py's drawing)."""
    document = pypdfium2.PdfDocument(data)
    try:
        page = document[index]
        width, height = page.get_size()
        image = draw_page(page, round(width * dpi / 72), round(height * dpi / 72))
        page.close()
        return image
    finally:
        document.close()


def scanned_pdf(data: bytes = None, *, dpi: int = 100, pages: int = 1) -> bytes:
    """The pages of `data` (default: text_pdf()) as an image-only PDF at `dpi`, each
    image page the size of the original (Pillow writes it: no text, no fonts)."""
    data = data or text_pdf()
    images = [draw(data, dpi, i % len(pypdfium2.PdfDocument(data))) for i in range(pages)]
    out = io.BytesIO()
    images[0].save(out, format="PDF", resolution=dpi, save_all=True,
                   append_images=images[1:])
    return out.getvalue()


def boxes(data: bytes) -> list[list[dict]]:
    """Each page's words with their boxes in points, as the `text` operation answers."""
    from notrace.operations.child import run
    from notrace.operations.registry import OPERATIONS
    params = OPERATIONS["text"].validate({"layout": "boxes"})
    answer = run([memoryview(data)], {"operation": "text", "params": params,
                                      "max_pages": 100})
    assert len(answer) == 2, answer
    return [page["words"] for page in json.loads(bytes(answer[1]))["pages"]]


def near(found: dict, expected: dict, tolerance: float) -> bool:
    return all(abs(found[k] - expected[k]) <= tolerance for k in ("x0", "y0", "x1", "y1"))


@pytest.fixture(scope="module", autouse=True)
def engine():
    ocr_engine.preload()  # as the fork server's warm-up does


def test_ocr_is_available_with_english():
    ok, detail = ocr_engine.available()
    assert ok, detail
    assert "eng" in ocr_engine.languages() and "osd" not in ocr_engine.languages()
    assert "eng" in detail


def test_recognize_finds_the_words_at_their_pixel_places():
    dpi = 200
    words = ocr_engine.recognize(draw(text_pdf(), dpi), dpi=dpi)
    assert [w.text for w in words] == WORDS
    pixels_a_point = dpi / 72
    first = words[0]  # "Quick": its baseline at y=500 on a 792-point page, x from 72
    assert abs(first.x0 - 72 * pixels_a_point) < 10
    assert abs(first.y1 - (792 - 500) * pixels_a_point) < 10  # no descender in "Quick"
    assert all(w.confidence > 80 for w in words)
    assert all(0 <= w.x0 < w.x1 and 0 <= w.y0 < w.y1 for w in words)


def test_a_blank_page_has_no_words():
    assert ocr_engine.recognize(draw(scanned_pdf(text_pdf(())), 100), dpi=100) == []


def _layer(data: bytes, dpi: int) -> bytes:
    """Every page of `data` recognised and given its text layer, as the operation does."""
    pdf = pikepdf.open(io.BytesIO(data))
    for index, page in enumerate(pdf.pages):
        image = draw(data, dpi, index)
        words = ocr_engine.recognize(image, dpi=dpi)
        ocr_engine.add_text_layer(pdf, page, words, image_width=image.width,
                                  image_height=image.height)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


@pytest.mark.parametrize("rotate, crop", [(0, None), (90, None), (180, None),
                                          (270, (36, 20, 600, 780))])
def test_the_text_layer_puts_the_words_where_the_original_has_them(rotate, crop):
    """The scan of a page and the page itself given a text layer: the layer's words
    where the page's own text is, in the page's own (unturned) coordinates."""
    original = text_pdf(rotate=rotate, crop=crop)
    assert boxes(scanned_pdf(original)) == [[]]  # an image only: no text at all
    expected = boxes(original)[0]
    # the scan is the page as shown, so only the unturned page compares box for box
    scanned = boxes(_layer(scanned_pdf(original), dpi=200))[0]
    assert [w["text"] for w in scanned] == WORDS
    if rotate == 0:
        for got, want in zip(scanned, expected):
            assert near(got, want, 9), (got, want)  # Helvetica's ascent vs the ink's box
    layered = boxes(_layer(original, dpi=200))[0]  # the page's own text, and the layer's
    assert [w["text"] for w in layered] == WORDS + WORDS
    for got, want in zip(layered[len(WORDS):], expected):
        assert near(got, want, 9), (rotate, got, want)


def test_the_layer_survives_a_content_stream_that_leaves_its_state_changed():
    """A page whose content ends inside an unclosed q with a scaled matrix: the layer
    is still placed in the page's own space."""
    scan = pikepdf.open(io.BytesIO(scanned_pdf()))
    page = scan.pages[0]
    page.contents_add(scan.make_stream(b"q 0.1 0 0 0.1 0 0 cm"))  # never restored
    out = io.BytesIO()
    scan.save(out)
    layered = _layer(out.getvalue(), dpi=200)
    found = boxes(layered)[0]
    assert [w["text"] for w in found] == WORDS
    assert found[0]["x0"] > 60 and found[0]["y0"] > 480


def test_any_characters_round_trip_and_shared_pages_share_one_font():
    scan = pikepdf.open(io.BytesIO(scanned_pdf(pages=2)))
    words = [ocr_engine.Word("café", 100, 100, 300, 150, 90.0),
             ocr_engine.Word("Ωμέγα", 100, 200, 400, 250, 90.0),
             ocr_engine.Word("日本", 100, 300, 300, 350, 90.0)]
    for page in scan.pages:
        ocr_engine.add_text_layer(scan, page, words, image_width=850, image_height=1100)
    fonts = {page.obj.Resources.Font.NotraceOCR.objgen for page in scan.pages}
    assert len(fonts) == 1
    out = io.BytesIO()
    scan.save(out)
    for page in boxes(out.getvalue()):
        assert [w["text"] for w in page] == ["café", "Ωμέγα", "日本"]
        # 850 pixels for 612 points: pixel 100 is 72 points from the left
        assert abs(page[0]["x0"] - 72) < 2 and abs(page[0]["x1"] - 216) < 2
