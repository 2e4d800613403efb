"""Big documents on the fast paths: an input read where it lies (operations/_common's
InPlaceReader, chosen for big inputs of big objects) must give qpdf exactly what a copy
gives it, whole, damaged or hostile; and a 10 MB image document must come through the
real server (upload into memfds, the child, the answer streamed from its memfd) intact.
"""
from __future__ import annotations

import functools
import io
import os
import random
import zipfile

import pikepdf
import pytest
from PIL import Image

from notrace.operations._common import (IN_PLACE_FROM_BYTES, InPlaceReader,
                                        declared_objects, pdf_source)
from tests.operations.conftest import CORPUS
from tests.pdfs import make_pdf

pytestmark = pytest.mark.timeout(120)


def image_document(pages: int, side: int = 900) -> bytes:
    """`pages` pages of one incompressible JPEG each (noise): about 0.5 MB a page at 900."""
    rng = random.Random(pages)
    pdf = pikepdf.new()
    for _ in range(pages):
        noise = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        jpeg = io.BytesIO()
        noise.save(jpeg, format="JPEG", quality=95)
        image = pdf.make_stream(jpeg.getvalue(), Type=pikepdf.Name.XObject,
                                Subtype=pikepdf.Name.Image, Width=side, Height=side,
                                ColorSpace=pikepdf.Name.DeviceRGB, BitsPerComponent=8,
                                Filter=pikepdf.Name.DCTDecode)
        page = pdf.add_blank_page(page_size=(side, side))
        page.obj.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
        page.obj.Contents = pdf.make_stream(b"q %d 0 0 %d 0 0 cm /Im0 Do Q" % (side, side))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def damaged(data: bytes) -> dict[str, bytes]:
    """Ways a file goes wrong that make qpdf seek past the end, rescan or give up."""
    start = data.rindex(b"startxref")
    return {
        "whole": data,
        "truncated": data[: len(data) * 2 // 3],
        "startxref past the end": data[:start] + b"startxref\n999999999\n%%EOF\n",
        "no trailer": data[:start],
        "junk before the header": b"\x00junk\n" * 100 + data,
        "empty": b"",
        "not a pdf": b"GIF89a" + bytes(500),
    }


def opened(source) -> tuple:
    """What qpdf makes of `source`: the saved bytes and page count, or the error class."""
    try:
        with pikepdf.open(source, access_mode=pikepdf.AccessMode.stream) as pdf:
            out = io.BytesIO()
            pdf.save(out, deterministic_id=True)
            return "ok", len(pdf.pages), out.getvalue()
    except Exception as exc:  # noqa: BLE001  compared between the two ways of reading
        return "error", type(exc).__name__


@functools.cache
def documents() -> dict[str, bytes]:
    made = {"text": make_pdf(30), "images": image_document(3, side=300)}
    cases = {f"{name}, {how}": bytes_ for name, data in made.items()
             for how, bytes_ in damaged(data).items()}
    # The shared corpus of real and hostile files, where this machine has it.
    for path in sorted(CORPUS.glob("*.pdf")) if CORPUS.is_dir() else []:
        cases[f"corpus {path.name}"] = path.read_bytes()
    return cases


@pytest.mark.filterwarnings("ignore:This document has")   # pikepdf on a corpus form
@pytest.mark.parametrize("name", sorted(documents()))
def test_read_in_place_gives_qpdf_what_a_copy_gives(name):
    data = documents()[name]
    assert opened(InPlaceReader(memoryview(data))) == opened(io.BytesIO(data))


def test_in_place_reader_reads_and_seeks_like_a_file():
    data = bytes(range(256)) * 4
    reader, copy = InPlaceReader(memoryview(data)), io.BytesIO(data)
    for whence, offset, size in [(io.SEEK_SET, 10, 5), (io.SEEK_CUR, 3, 20),
                                 (io.SEEK_END, -7, 100), (io.SEEK_SET, 5000, 10),
                                 (io.SEEK_CUR, -4990, 3), (io.SEEK_END, 0, 1)]:
        assert reader.seek(offset, whence) == copy.seek(offset, whence)
        buffer, expected = bytearray(size), bytearray(size)
        assert reader.readinto(buffer) == copy.readinto(expected)
        assert buffer == expected and reader.tell() == copy.tell()
    with pytest.raises(ValueError):
        reader.seek(-1)


def test_big_inputs_of_big_objects_are_read_in_place_the_rest_copied():
    images = image_document(3)          # about 1.5 MB in a dozen objects
    assert len(images) >= IN_PLACE_FROM_BYTES
    assert declared_objects(memoryview(images)) == pikepdf.open(io.BytesIO(images)).trailer.Size
    assert isinstance(pdf_source(memoryview(images)), InPlaceReader)
    text = make_pdf(5)
    assert isinstance(pdf_source(memoryview(text)), io.BytesIO)            # small
    # Big but without a readable object count (hostile or damaged): copied.
    unknown = os.urandom(IN_PLACE_FROM_BYTES)
    assert declared_objects(memoryview(unknown)) is None
    assert isinstance(pdf_source(memoryview(unknown)), io.BytesIO)


@pytest.fixture(scope="module")
def big_images() -> bytes:
    return image_document(20)           # about 10 MB


def test_a_10_mb_image_document_comes_through_every_path_whole(server, big_images):
    info = server.post("info", [big_images])
    assert info.status == 200, info.body[:300]
    assert info.json()["pages"] == 20
    merged = server.post("merge", [big_images, big_images])
    assert merged.status == 200, merged.body[:300]
    with pikepdf.open(io.BytesIO(merged.body)) as pdf:
        assert len(pdf.pages) == 40
        first = pdf.pages[0].obj.Resources.XObject.Im0.read_raw_bytes()
    with pikepdf.open(io.BytesIO(big_images)) as pdf:
        assert first == pdf.pages[0].obj.Resources.XObject.Im0.read_raw_bytes()
    selected = server.post("select", [big_images], {"pages": "odd"})
    assert selected.status == 200, selected.body[:300]
    with pikepdf.open(io.BytesIO(selected.body)) as pdf:
        assert len(pdf.pages) == 10


def test_big_parts_of_a_zip_are_stored_or_deflated_as_their_samples_say():
    """body._compressible on 4 KB samples: a part of JPEG noise is stored, a part of many
    small text pages is deflated (both over the 1 MiB from which it samples)."""
    from bench.text_bench import book_pdf
    from notrace.operations import child
    from notrace.operations.registry import OPERATIONS

    for document, every, expected in ((image_document(2, side=1500), 1, zipfile.ZIP_STORED),
                                      (book_pdf(3200), 1600, zipfile.ZIP_DEFLATED)):
        params = {"operation": "split", "max_pages": 10_000,
                  "params": OPERATIONS["split"].validate({"every": str(every)})}
        manifest, body = child.run([memoryview(document)], params)
        assert b'"application/zip"' in manifest
        with zipfile.ZipFile(io.BytesIO(bytes(body))) as archive:
            members = archive.infolist()
            assert len(members) == 2 and all(m.file_size > 1 << 20 for m in members)
            assert {m.compress_type for m in members} == {expected}
            assert archive.testzip() is None


def _trailer_id(data: bytes) -> list[bytes]:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return [bytes(part) for part in pdf.trailer.ID]


def test_the_id_is_derived_from_the_bytes_and_written_over_qpdfs_static_one():
    from notrace.operations._common import save_pdf
    from notrace.operations.document_id import STATIC_ID

    static = bytes.fromhex(STATIC_ID.decode())
    one, other = pikepdf.open(io.BytesIO(make_pdf(2))), pikepdf.open(io.BytesIO(make_pdf(3)))
    saved = save_pdf(one)
    assert saved == save_pdf(one)                                       # no clock, no chance
    kept, derived = _trailer_id(saved)
    assert kept == bytes(one.trailer.ID[0]) and derived not in (static, kept)  # first kept
    assert _trailer_id(save_pdf(other))[1] != derived                   # content-derived
    fresh = pikepdf.new()
    fresh.add_blank_page()
    first, second = _trailer_id(save_pdf(fresh))
    assert first == second != static                                    # both ours
    # Strings of the input's trailer that look like the ID are left as they are.
    decoy = b"/ID [<aa><" + STATIC_ID + b">]"
    one.trailer.Zzz = pikepdf.String(decoy)
    with pikepdf.open(io.BytesIO(save_pdf(one))) as pdf:
        assert bytes(pdf.trailer.Zzz) == decoy and bytes(pdf.trailer.ID[1]) != static


def test_linearized_saves_and_unpatchable_ones_keep_qpdfs_deterministic_id(monkeypatch):
    from notrace.operations import document_id
    from notrace.operations._common import save_pdf

    pdf = pikepdf.open(io.BytesIO(make_pdf(2)))
    for options in ({"linearize": True}, {}):
        qpdf = io.BytesIO()
        pdf.save(qpdf, deterministic_id=True, **options)
        if not options:    # where the static ID is not found: saved again, qpdf's way
            monkeypatch.setattr(document_id, "_patch_id", lambda view: False)
        assert save_pdf(pdf, **options) == qpdf.getvalue()
    assert document_id._patch_id(memoryview(bytearray(b"%PDF-1.7 no trailer here"))) is False
    assert document_id._patch_id(memoryview(bytearray(
        b"%PDF-1.7\ntrailer << /Size 1 >>\nstartxref\n9\n%%EOF\n"))) is False
