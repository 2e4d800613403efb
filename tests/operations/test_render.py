"""render and thumbnail (issue 9): pixel sizes for the dpi, what is drawn where, formats,
the pixel limit checked before drawing; in-process, then through the real sandbox."""
from __future__ import annotations

import asyncio
import io
import time
import zipfile

import pikepdf
import pytest
from pikepdf import Array, Dictionary, Name
from PIL import Image

from notrace.operations import OPERATIONS, ParamError
from notrace.operations.raster import DEFAULT_PAGE_PIXELS
from notrace.problems import HttpProblem
from sandbox import Limits, Sandbox
from tests import pdfs
from tests.operations import sandboxed

pytestmark = pytest.mark.timeout(60)

ENTRY = "notrace.operations.child:run"
WARMUP = "notrace.operations.child:warm_up"


def _pdf(pages: list[tuple[tuple[float, float], bytes]], fonts: dict | None = None) -> bytes:
    """One page per (MediaBox width and height in points, content stream)."""
    pdf = pikepdf.new()
    for (width, height), content in pages:
        page = pdf.add_blank_page()
        page.obj.MediaBox = Array([0, 0, width, height])
        page.obj.Contents = pdf.make_stream(content)
        if fonts:
            page.obj.Resources = Dictionary(Font=Dictionary(
                {f"/{k}": pdf.make_indirect(v) for k, v in fonts.items()}))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


#: A 72 x 72 point page, white but for a black square from (18, 18) to (54, 54) points.
SQUARE = _pdf([((72, 72), b"0 0 0 rg 18 18 36 36 re f")])
#: 100,000 points a side: 833,334 pixels a side at 600 dpi.
HUGE = _pdf([((100000, 100000), b"")])


def _image(data: bytes, fmt: str = "PNG") -> Image.Image:
    image = Image.open(io.BytesIO(data), formats=[fmt])
    image.load()
    return image


def test_one_image_per_page_at_the_dpi(call):
    doc = pdfs.make_pdf(3)  # Letter: 612 x 792 points
    answer = call("render", [doc])
    assert answer.manifest["media_type"] == "application/zip"
    assert answer.names == ["page-0001.png", "page-0002.png", "page-0003.png"]
    assert [_image(f).size for f in answer.files] == [(1275, 1650)] * 3  # 150 dpi default
    assert answer.report == {"pages": 3, "dpi": 150, "format": "png"}
    chosen = call("render", [doc], pages="-1,1", dpi=72)
    assert chosen.names == ["page-0001.png", "page-0003.png"]  # page order, named by page
    assert {_image(f).size for f in chosen.files} == {(612, 792)}
    one = call("render", [SQUARE], dpi=144)
    assert one.names == ["page-0001.png"]  # a zip even for one page
    assert _image(one.file).size == (144, 144)


def test_the_black_square_is_black_and_the_rest_white(call):
    image = _image(call("render", [SQUARE], dpi=144).file).convert("L")
    # the square covers pixels 36..108 on both axes (18..54 points, y up from the bottom)
    for x, y in ((40, 40), (72, 72), (104, 104), (40, 104)):
        assert image.getpixel((x, y)) < 10, (x, y)
    for x, y in ((5, 5), (30, 72), (72, 30), (115, 72), (72, 115), (140, 140)):
        assert image.getpixel((x, y)) > 245, (x, y)


def test_a_page_without_colour_is_one_grey_channel_and_colour_stays(call):
    """Text pages (most pages) encode a third of the pixels: PNG and JPEG in mode L; a
    page with one red square stays RGB, its red where it was; WebP has no grey mode."""
    red = _pdf([((72, 72), b"1 0 0 rg 18 18 36 36 re f")])
    for fmt, pillow in (("png", "PNG"), ("jpeg", "JPEG")):
        assert _image(call("render", [SQUARE], dpi=72, format=fmt).file, pillow).mode == "L"
        colour = _image(call("render", [red], dpi=144, format=fmt).file, pillow)
        assert colour.mode == "RGB"
        r, g, b = colour.getpixel((72, 72))
        assert r > 200 and g < 60 and b < 60, (fmt, (r, g, b))
    assert _image(call("thumbnail", [SQUARE], width=72).file).mode == "L"
    assert _image(call("render", [SQUARE], format="webp").file, "WEBP").mode == "RGB"


def test_formats_and_quality(call):
    doc = pdfs.make_pdf(1, text="quality")
    jpeg = call("render", [doc], format="jpeg", dpi=100)
    assert jpeg.names == ["page-0001.jpg"] and _image(jpeg.file, "JPEG").size == (850, 1100)
    webp = call("render", [doc], format="webp", dpi=100)
    assert webp.names == ["page-0001.webp"] and _image(webp.file, "WEBP").size == (850, 1100)
    low, high = (len(call("render", [doc], format="jpeg", quality=q).file) for q in (5, 95))
    assert low < high
    with pytest.raises(ParamError, match="dpi: must be at most 600"):
        OPERATIONS["render"].validate({"dpi": "601"})
    with pytest.raises(ParamError, match="dpi: must be at least 36"):
        OPERATIONS["render"].validate({"dpi": "35"})
    with pytest.raises(ParamError, match="format"):
        OPERATIONS["thumbnail"].validate({"format": "webp"})  # PNG or JPEG only
    with pytest.raises(ParamError, match="width: must be at most 2048"):
        OPERATIONS["thumbnail"].validate({"width": "2049"})


def test_thumbnail_width_and_aspect(call):
    answer = call("thumbnail", [pdfs.make_pdf(3)])
    assert answer.manifest["media_type"] == "image/png"
    assert answer.manifest["filename"] == "page-1.png"
    assert _image(answer.file).size == (256, 332)  # 792 / 612 * 256 = 331.3, rounded up
    wide = call("thumbnail", [pdfs.make_pdf(2, rotate=90)], page=2, width=100,
                format="jpeg")
    assert wide.manifest["media_type"] == "image/jpeg"
    assert wide.manifest["filename"] == "page-2.jpg"
    assert _image(wide.file, "JPEG").size == (100, 78)  # turned: 792 wide, 612 high
    square = _image(call("thumbnail", [SQUARE], width=2048).file).convert("L")
    assert square.size == (2048, 2048) and square.getpixel((1024, 1024)) < 10
    assert call("thumbnail", [pdfs.make_pdf(3)], page=4).problem == "page_out_of_range"


def test_form_fields_are_drawn(call):
    """PDFium leaves a form's widgets out unless the form is initialised: they are drawn,
    as they look (the field's value, at 100..200 x 600..620 points)."""
    for operation, raw in (("render", {"dpi": "72"}), ("thumbnail", {"width": "612"})):
        answer = call(operation, [pdfs.make_form_pdf()], **raw)
        image = _image(answer.file if operation == "thumbnail" else answer.files[0])
        assert image.convert("L").crop((100, 172, 200, 192)).getextrema()[0] < 128


def test_pixels_are_counted_before_drawing(call):
    started = time.monotonic()
    answer = call("render", [HUGE], dpi=600)
    assert answer.problem == "too_large" and "833334 x 833334" in answer.manifest["detail"]
    # a tall thin page: the width asked makes it too high
    thin = _pdf([((1, 100000), b"")])
    assert call("thumbnail", [thin], width=2048).problem == "too_large"
    # only the pages asked for count
    mixed = _pdf([((72, 72), b""), ((100000, 100000), b"")])
    assert call("render", [mixed], dpi=600).problem == "too_large"
    assert call("render", [mixed], dpi=600, pages="1").names == ["page-0001.png"]
    assert time.monotonic() - started < 5
    # the largest page allowed at 600 dpi is about A4 (50 megapixels)
    side = int((DEFAULT_PAGE_PIXELS ** 0.5) * 72 / 600)  # points
    assert call("render", [_pdf([((side + 10, side + 10), b"")])], dpi=600).problem \
        == "too_large"


def test_fonts_the_document_does_not_embed_are_drawn_with_builtin_ones(call):
    """No system fonts in a child: PDFium substitutes its built-in ones, so text still
    shows (in a look-alike face)."""
    font = Dictionary(Type=Name.Font, Subtype=Name.TrueType, BaseFont=Name("/Garamond"),
                      FirstChar=32, LastChar=126, Widths=Array([500] * 95),
                      FontDescriptor=Dictionary(Type=Name.FontDescriptor,
                                                FontName=Name("/Garamond"), Flags=34,
                                                FontBBox=Array([0, -200, 1000, 900]),
                                                ItalicAngle=0, Ascent=900, Descent=-200,
                                                CapHeight=700, StemV=80))
    doc = _pdf([((300, 100), b"BT /F1 40 Tf 10 30 Td (Hello) Tj ET")], fonts={"F1": font})
    image = _image(call("render", [doc], dpi=72).file).convert("L")
    dark = sum(image.histogram()[:128])
    assert 200 < dark < 300 * 100 // 4  # text drawn, not a blank or black page


# --- through the real sandbox -------------------------------------------------------------

async def _run_all(jobs: list[tuple[str, bytes, dict]], limits: Limits) -> list:
    """Each (operation, document, raw params) through a real Sandbox and the server's own
    answer mapping: (media type, body) of a 2xx, else the HttpProblem."""
    async with Sandbox(ENTRY, limits=limits, workers=2, queue=16, warmup=WARMUP) as sb:
        return await asyncio.gather(*(sandboxed.answer(sb, *job, max_pages=100)
                                       for job in jobs))


@pytest.mark.timeout(120)
async def test_render_and_thumbnail_through_the_sandbox(call):
    doc = pdfs.make_pdf(3)
    jobs = [("render", SQUARE, {"dpi": "144"}), ("render", doc, {"format": "jpeg"}),
            ("thumbnail", doc, {"page": "2", "width": "300"}),
            ("thumbnail", pdfs.make_encrypted_pdf(2, user="pw"), {"password": "pw"}),
            ("render", HUGE, {"dpi": "600"}), ("thumbnail", SQUARE, {})]
    started = time.monotonic()
    answers = await _run_all(jobs, Limits(memory_mb=512, cpu_s=20, wall_s=30, output_mb=64))
    for (name, data, raw), answer in zip(jobs, answers):
        if name == "render" and data is HUGE:
            assert isinstance(answer, HttpProblem) and answer.type.slug == "too-large"
            continue
        expected = call(name, [data], **raw)
        assert answer == (expected.manifest["media_type"], expected.body), (name, raw)
    assert time.monotonic() - started < 60


@pytest.mark.timeout(120)
async def test_memory_does_not_grow_with_the_page_count():
    """30 Letter pages at 150 dpi: 2.1 megapixels each, about 15 MB while a page is drawn
    and encoded, 450 MB if bitmaps were kept; the child has 160 MB."""
    doc = pdfs.make_pdf(30)
    [answer] = await _run_all([("render", doc, {})],
                              Limits(memory_mb=160, cpu_s=30, wall_s=60, output_mb=64))
    assert not isinstance(answer, HttpProblem), answer
    media_type, body = answer
    assert media_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert len(zf.namelist()) == 30
