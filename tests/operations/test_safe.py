"""safe (issue 9): a PDF of pixels only, built from a checked pixel stream. In-process
(the phases' code), then through the real sandbox with the server's orchestrator
(notrace/safe.py: phase 1, the check, phase 2, the merge of batches), then hostile pixel
streams, from the checker directly and from a hostile phase-1 child."""
from __future__ import annotations

import io
import os
import time
import tracemalloc

import pikepdf
import pypdfium2
import pytest
from PIL import Image

from notrace import safe, settings as settings_module
from notrace.jobs import interpret
from notrace.operations import OPERATIONS, pixelstream
from notrace.operations.raster import PixelLimits
from notrace.problems import HttpProblem
from sandbox import MemFile, Sandbox
from tests import pdfs
from tests.operations import safe_entries

pytestmark = pytest.mark.timeout(60)

ENTRY = "notrace.operations.child:run"
WARMUP = "notrace.operations.child:warm_up"
SAFE = OPERATIONS["safe"]


def _pdf(data: bytes) -> pikepdf.Pdf:
    return pikepdf.open(io.BytesIO(data))


def _all_objects_text(pdf: pikepdf.Pdf) -> bytes:
    """Every object of the document, streams decoded: what a marker could hide in."""
    out = io.BytesIO()
    pdf.save(out, qdf=True, compress_streams=False, stream_decode_level=pikepdf.StreamDecodeLevel.all)
    return out.getvalue()


def assert_pixels_only(data: bytes, original: bytes) -> None:
    """Same page count and sizes, one full-page image per page and nothing else: no
    annotations, form, names, actions, outline, metadata but the producer."""
    result, source = _pdf(data), _pdf(original)
    assert len(result.pages) == len(source.pages)
    for page, before in zip(result.pages, source.pages):
        assert [float(v) for v in page.mediabox] == [float(v) for v in before.mediabox]
        assert list(page.obj.keys()) == ["/Contents", "/MediaBox", "/Parent", "/Resources",
                                         "/Type"] or set(page.obj.keys()) == {
            "/Contents", "/MediaBox", "/Parent", "/Resources", "/Type"}
        assert list(page.Resources.keys()) == ["/XObject"]
        [(name, image)] = page.Resources.XObject.items()
        assert image.Subtype == "/Image" and image.Filter in ("/FlateDecode", "/DCTDecode")
    assert set(result.Root.keys()) == {"/Type", "/Pages"}
    assert dict(result.trailer.Info.items()) == {"/Producer": "notrace safe"}
    text = _all_objects_text(result)
    for marker in pdfs.MARKERS.values():
        assert marker.encode() not in text, marker


def _rendered(data: bytes, dpi: int) -> list[Image.Image]:
    document = pypdfium2.PdfDocument(data)
    try:
        return [document[i].render(scale=dpi / 72).to_pil().convert("RGB")
                for i in range(len(document))]
    finally:
        document.close()


# --- in-process: the phases' code ---------------------------------------------------

def test_active_content_forms_and_links_do_not_survive(call):
    for original in (pdfs.make_active_pdf(2), pdfs.make_form_pdf()):
        assert b"NTJS" in original or b"FIELDVALUE" in original
        answer = call("safe", [original], dpi=72)
        assert answer.manifest["media_type"] == "application/pdf"
        assert_pixels_only(answer.body, original)
        assert answer.report["pages"] == len(_pdf(original).pages)
        assert "links" in answer.report["not_kept"] and "text" in answer.report["not_kept"]
    # the form's field value is drawn (its appearance), as pixels only
    drawn = _rendered(call("safe", [pdfs.make_form_pdf()], dpi=72).body, 72)[0]
    assert drawn.convert("L").crop((100, 172, 200, 192)).getextrema()[0] < 128


def test_the_pixels_are_the_pages_as_drawn(call):
    original = pdfs.make_pdf(2, text="pixels {n}")
    result = call("safe", [original], dpi=100).body
    document = _pdf(result)
    image = document.pages[1].Resources.XObject["/Im0"]
    assert (int(image.Width), int(image.Height)) == (850, 1100)  # Letter at 100 dpi
    assert image.ColorSpace == "/DeviceGray"   # black text on white: one gray channel
    ours = Image.frombytes("L", (850, 1100), image.read_bytes()).convert("RGB")
    # what PDFium draws of the original at that size, and of our result: the same
    assert ours.tobytes() == _rendered(original, 100)[1].tobytes()
    assert _rendered(result, 100)[1].convert("L").histogram() == \
        ours.convert("L").histogram()
    assert pdfs.page_texts(result) == ["", ""]  # no text without OCR


def test_jpeg_compression_is_smaller_for_photographs(call):
    """A page that is a noisy photograph: Flate can hardly shrink it, JPEG can."""
    photo = Image.merge("RGB", [Image.effect_noise((500, 400), sigma)
                                for sigma in (40, 60, 80)])   # in colour
    out = io.BytesIO()
    photo.save(out, format="PNG")
    original = call("from-images", [out.getvalue()]).body   # a 500 x 400 point page
    flate = call("safe", [original], dpi="72")
    jpeg = call("safe", [original], dpi="72", compression="jpeg", quality="75")
    assert flate.report["compression"] == "flate" and jpeg.report["compression"] == "jpeg"
    assert_pixels_only(jpeg.body, original)
    document = _pdf(jpeg.body)
    image = document.pages[0].Resources.XObject["/Im0"]
    assert image.Filter == "/DCTDecode" and (int(image.Width), int(image.Height)) == (500, 400)
    assert image.ColorSpace == "/DeviceRGB"
    assert len(jpeg.body) < len(flate.body) / 2
    # the same picture: on average within a few levels of the lossless one
    decoded = Image.open(io.BytesIO(image.read_raw_bytes()), formats=["JPEG"]).convert("L")
    lossless = _rendered(flate.body, 72)[0].convert("L")
    blurred = [Image.Image.resize(im, (50, 40)) for im in (decoded, lossless)]
    difference = sum(abs(a - b) for a, b in zip(blurred[0].tobytes(), blurred[1].tobytes()))
    assert difference / 2000 < 8


def test_batches_in_process_give_the_same_document(call):
    """The in-process version packs batches as the server does: a small output limit
    makes one page a batch, and the result is the same pages."""
    from notrace.operations.safe import safe as in_one_process
    original = pdfs.make_pdf(3)
    params = SAFE.validate({"dpi": "36"})
    output = in_one_process([memoryview(original)], params, max_pages=10, output_mb=2,
                            memory_mb=512)
    assert output.report["batches"] == 3 and output.report["pages"] == 3
    assert_pixels_only(output.files[0].data, original)


# --- the checker, on crafted streams --------------------------------------------------

CHECK = dict(first=0, document_pages=None, dpi=36, limits=PixelLimits(), max_pages=2000)


def _check_memfd(stream: bytes, **overrides):
    with MemFile.from_bytes(stream) as mem:
        fd = mem.fileno()
        return pixelstream.check(lambda size, at: os.pread(fd, size, at), mem.size,
                                 **{**CHECK, **overrides})


def test_the_checker_accepts_the_format_and_gives_the_geometry():
    batch = _check_memfd(safe_entries.STREAMS["good"])
    assert (batch.document_pages, batch.first, batch.end) == (1, 0, 1)
    [page] = batch.pages
    assert (page.offset, page.width, page.height) == (20 + 24, 306, 396)
    assert page.to_list(100) == [144, 306, 396, 612.0, 792.0]


@pytest.mark.parametrize("attack", sorted(set(safe_entries.STREAMS) - {"good"}))
def test_the_checker_refuses_each_hostile_stream_before_allocating(attack):
    tracemalloc.start()
    try:
        with pytest.raises(pixelstream.StreamError):
            _check_memfd(safe_entries.STREAMS[attack])
        # nothing sized by the stream's claims: the memfd's copy in from_bytes aside
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(safe_entries.STREAMS[attack]) + 64 * 1024, peak


def test_the_checker_holds_the_server_side_limits():
    good = safe_entries.STREAMS["good"]
    with pytest.raises(pixelstream.StreamError):   # 306 x 396 over a smaller page limit
        _check_memfd(good, limits=PixelLimits(page_pixels=306 * 396 - 1))
    with pytest.raises(pixelstream.StreamError):   # another batch's page count
        _check_memfd(good, document_pages=2)
    with pytest.raises(pixelstream.StreamError):   # not the batch asked for
        _check_memfd(good, first=1)
    with pytest.raises(pixelstream.StreamError):   # pixels for another dpi
        _check_memfd(good, dpi=72)


# --- through the real sandbox ------------------------------------------------------------

def _settings(**values):
    return settings_module.load({}, {k: str(v) for k, v in values.items()})


def _answer(result, max_pages: int = 2000):
    try:
        with interpret(SAFE, result, max_pages=max_pages) as answer:
            return answer.report, answer.body.read()
    except HttpProblem as problem:
        return problem


@pytest.mark.timeout(120)
def test_batches_through_the_sandbox_are_merged_in_order(monkeypatch):
    """Letter pages at 72 dpi are 1.1 MiB of pixels; a 4 MiB output limit packs one a
    batch (budget 1.5 MiB), and three PDFs per merge (patched down from 63) makes the
    merges fold."""
    monkeypatch.setattr(safe, "MAX_MERGE_INPUTS", 3)
    original = pdfs.make_pdf(7, text="batch {n}")
    settings = _settings(child_output_mb=4, workers=1)
    with Sandbox(ENTRY, limits=None, workers=1, warmup=WARMUP) as sandbox, \
            MemFile.from_bytes(original) as document:
        started = time.monotonic()
        result = safe.run_sync(sandbox, [document], SAFE.validate({"dpi": "72"}), settings)
        elapsed = time.monotonic() - started
        report, body = _answer(result)
    assert report["batches"] == 7 and report["pages"] == 7 and report["dpi"] == 72
    assert_pixels_only(body, original)
    drawn = _rendered(body, 72)
    assert [im.size for im in drawn] == [(612, 792)] * 7
    # in order: each page is its own (the page texts differ, so do the pixels)
    assert len({im.tobytes() for im in drawn}) == 7
    assert drawn[3].tobytes() == _rendered(original, 72)[3].tobytes()
    assert result.stats.wall_s > 0 and elapsed < 60


@pytest.mark.timeout(120)
async def test_hostile_pixel_streams_crash_their_job_and_the_sandbox_keeps_serving():
    settings = _settings(workers=2)
    params = SAFE.validate({"dpi": "36"})
    attacks = sorted(set(safe_entries.STREAMS) - {"good"})
    async with Sandbox("tests.operations.safe_entries:run", workers=2,
                       warmup="tests.operations.safe_entries:warm_up") as sandbox:
        async def one(name: str):
            with MemFile.from_bytes(name.encode()) as document:
                return _answer(await safe.run(sandbox, [document], params, settings))

        started = time.monotonic()
        for attack in attacks:
            answer = await one(attack)
            assert isinstance(answer, HttpProblem), attack
            assert answer.type.slug == "processing-crashed" and answer.type.status == 422, \
                (attack, answer.type.slug)
        assert time.monotonic() - started < 30
        lied = await one("lying-merge")        # a merge child that reports 99 pages
        assert isinstance(lied, HttpProblem) and lied.type.slug == "processing-crashed"
        report, body = await one("good")       # the same entry, a well-formed stream
        assert report["pages"] == 1 and len(_pdf(body).pages) == 1
        with MemFile.from_bytes(pdfs.make_active_pdf(1)) as document:  # a real document
            report, body = _answer(await safe.run(sandbox, [document], params, settings))
        assert report["pages"] == 1


def _as_phase_two(data: bytes, image_data: bytes | None = None,
                  codec: str = "/FlateDecode") -> bytes:
    """The document with a 1 x 1 white image Im0 on each page (or `image_data` under
    `codec`, said to be 1 x 1), at a MediaBox from 0, 0: what a phase-2 page has, beside
    whatever else the document has."""
    import zlib
    with _pdf(data) as pdf:
        for page in pdf.pages:
            box = page.obj.MediaBox
            page.obj.MediaBox = pikepdf.Array([0, 0, box[2] - box[0], box[3] - box[1]])
            image = pdf.make_stream(image_data if image_data is not None
                                    else zlib.compress(b"\xff" * 3),
                                    Type=pikepdf.Name.XObject,
                                    Subtype=pikepdf.Name.Image, Width=1, Height=1,
                                    ColorSpace=pikepdf.Name.DeviceRGB, BitsPerComponent=8,
                                    Filter=pikepdf.Name(codec))
            if "/Resources" not in page.obj:
                page.obj.Resources = pikepdf.Dictionary()
            if "/XObject" not in page.obj.Resources:
                page.obj.Resources.XObject = pikepdf.Dictionary()
            page.obj.Resources.XObject.Im0 = image
        out = io.BytesIO()
        pdf.save(out)
    return out.getvalue()


def test_the_merge_keeps_only_what_phase_two_makes_of_a_page():
    """A part from a phase-2 child gone wrong, with an annotation, an action, text, a
    font and a catalog of its own: the merge makes each page anew from its box and its
    image's data only. A part whose page is not one image fails the job."""
    from notrace.operations.safe import merge_phase
    job = {"report": None, "params": {"ocr": False}}
    part = _as_phase_two(pdfs.make_active_pdf(1))
    good = _as_phase_two(pdfs.make_pdf(1))
    output = merge_phase([memoryview(good), memoryview(part)], job)
    merged = _pdf(bytes(output.files[0].data))
    assert len(merged.pages) == 2
    for page in merged.pages:
        assert set(page.obj.keys()) <= {"/Type", "/Parent", "/MediaBox", "/Resources",
                                         "/Contents"}
        assert set(page.obj.Resources.keys()) == {"/XObject"}
        assert page.obj.Contents.read_bytes() == b"q 612 0 0 792 0 0 cm /Im0 Do Q"
    assert set(merged.Root.keys()) == {"/Type", "/Pages"}
    text = _all_objects_text(merged)
    for name in ("open_action", "javascript", "page_aa", "link", "embedded_file"):
        assert pdfs.MARKERS[name].encode() not in text, name
    with pytest.raises(ValueError):
        merge_phase([memoryview(pdfs.make_pdf(1))], job)


def test_the_merge_passes_on_no_image_data_but_exactly_its_pixels():
    """A phase-2 child gone wrong could hand a client's decoder anything as an image's
    data: Flate that inflates to more or fewer bytes than its pixels, or with bytes after
    its end, fails the job; a JPEG is decoded and encoded anew (its comment, a place a
    hostile JPEG hides things, does not survive), and a JPEG of another size fails."""
    import zlib
    from PIL import Image
    from notrace.operations.safe import merge_phase
    job = {"report": None, "params": {"ocr": False, "quality": 85}}
    for bad in (zlib.compress(b"\xff" * 4), zlib.compress(b"\xff" * 2),
                zlib.compress(b"\xff" * 3) + b"more", b"not flate"):
        with pytest.raises(ValueError):
            merge_phase([memoryview(_as_phase_two(pdfs.make_pdf(1), bad))], job)
    jpeg = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 0, 0)).save(jpeg, "JPEG", comment=b"HOSTILE-MARKER")
    assert b"HOSTILE-MARKER" in jpeg.getvalue()
    output = merge_phase([memoryview(_as_phase_two(pdfs.make_pdf(1), jpeg.getvalue(),
                                                   "/DCTDecode"))], job)
    merged = _pdf(bytes(output.files[0].data))
    image = merged.pages[0].obj.Resources.XObject.Im0
    assert image.Filter == pikepdf.Name.DCTDecode
    assert b"HOSTILE-MARKER" not in image.read_raw_bytes()
    wide = io.BytesIO()
    Image.new("RGB", (2, 1)).save(wide, "JPEG")
    with pytest.raises(ValueError):
        merge_phase([memoryview(_as_phase_two(pdfs.make_pdf(1), wide.getvalue(),
                                              "/DCTDecode"))], job)


@pytest.mark.timeout(120)
async def test_conversions_holding_pixels_are_bounded_by_the_workers():
    """Four requests at once on a sandbox of two workers, conversions bounded to one (its
    `workers`): never more than one conversion holds a batch's pixels between phases."""
    import asyncio

    class Watched:
        """The real sandbox, counting conversions between their phases."""

        workers = 1

        def __init__(self, sandbox):
            self.sandbox, self.holding, self.most = sandbox, 0, 0

        async def run(self, inputs, params, limits):
            result = await self.sandbox.run(inputs, params, limits)
            if params["operation"] == "safe-pixels" and result.ok:
                self.holding += 1
                self.most = max(self.most, self.holding)
            elif params["operation"] == "safe-build":
                self.holding -= 1
            return result

    settings = _settings(child_output_mb=4)
    params = SAFE.validate({"dpi": "72"})
    async with Sandbox(ENTRY, workers=2, warmup=WARMUP) as sandbox:
        watched = Watched(sandbox)

        async def one():
            with MemFile.from_bytes(pdfs.make_pdf(2)) as document:
                return _answer(await safe.run(watched, [document], params, settings))

        answers = await asyncio.gather(*(one() for _ in range(4)))
    assert [report["batches"] for report, _body in answers] == [2] * 4
    assert watched.most == 1 and watched.holding == 0
