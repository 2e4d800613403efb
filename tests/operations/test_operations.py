"""Every operation in-process through child.run; results reopened with pikepdf AND pypdf."""
from __future__ import annotations

import io
import re

import pikepdf
import pypdf
import pytest

from tests import pdfs
from tests.operations.conftest import CORPUS
from tests.pdfs import MARKERS, make_pdf, page_texts


def reopen(data: bytes, password: str = "") -> tuple[pikepdf.Pdf, list[str]]:
    """Both libraries must read the output; returns the pikepdf Pdf and pypdf's texts."""
    pdf = pdfs.open_any(data, password)
    texts = page_texts(data, password)
    assert len(pdf.pages) == len(texts)
    return pdf, texts


def plain(data: bytes) -> bytes:
    """The output rewritten with every stream decoded, for searching raw bytes."""
    with pdfs.open_any(data) as pdf:
        out = io.BytesIO()
        pdf.save(out, compress_streams=False, stream_decode_level=pikepdf.StreamDecodeLevel.all,
                 object_stream_mode=pikepdf.ObjectStreamMode.disable)
        return out.getvalue()


A = make_pdf(3, marker="A")
B = make_pdf(2, marker="B")
C = make_pdf(1, marker="C")


def test_merge_keeps_input_order(call):
    answer = call("merge", [B, A, C])
    assert (answer.manifest["media_type"], answer.names) == ("application/pdf", ["document.pdf"])
    assert reopen(answer.file)[1] == ["B page 1", "B page 2", "A page 1", "A page 2",
                                      "A page 3", "C page 1"]


def test_merge_page_limit_counts_the_result(call):
    answer = call("merge", [A, B], max_pages=4)
    assert answer.problem == "too_many_pages"
    assert answer.manifest["detail"] == "the merged document has 5 pages; the limit is 4"


def test_merge_names_the_bad_input(call):
    answer = call("merge", [A, b"%PDF-1.4 nonsense"])
    assert (answer.problem, answer.manifest["detail"]) == ("malformed",
                                                          "input 2 cannot be read as a PDF")


def test_split_by_ranges_and_every(call):
    doc = make_pdf(7)
    answer = call("split", [doc], ranges="1-3,4-6,-1")
    assert answer.names == ["part-1.pdf", "part-2.pdf", "part-3.pdf"]
    assert [reopen(f)[1] for f in answer.files] == [
        ["page 1", "page 2", "page 3"], ["page 4", "page 5", "page 6"], ["page 7"]]
    answer = call("split", [doc], every=3)
    assert [len(reopen(f)[1]) for f in answer.files] == [3, 3, 1]
    assert answer.report["parts"] == [[1, 2, 3], [4, 5, 6], [7]]


def test_split_out_of_range(call):
    answer = call("split", [A], ranges="1-2,3-5")
    assert answer.problem == "page_out_of_range"
    assert answer.manifest["detail"] == "ranges: page 5 is beyond the last page (3)"


@pytest.mark.parametrize("pages, expected", [
    ("3,1,1", ["A page 3", "A page 1", "A page 1"]),
    ("-1", ["A page 3"]),
    ("even", ["A page 2"]),
    ("3-1", ["A page 3", "A page 2", "A page 1"]),
])
def test_select(call, pages, expected):
    assert reopen(call("select", [A], pages=pages).file)[1] == expected


def test_select_errors(call):
    answer = call("select", [make_pdf(9)], pages="1,12")
    assert (answer.problem, answer.manifest["detail"]) == (
        "page_out_of_range", "pages: page 12 is beyond the last page (9)")
    assert call("select", [C], pages="even").problem == "page_out_of_range"
    assert call("select", [A], pages="1-,1-", max_pages=5).problem == "too_many_pages"


def test_delete_leaves_no_trace_of_deleted_pages(call):
    answer = call("delete", [A], pages="2")
    pdf, texts = reopen(answer.file)
    assert texts == ["A page 1", "A page 3"]
    assert b"A page 2" not in plain(answer.file)
    assert call("delete", [A], pages="all").problem == "page_out_of_range"


def test_rotate_adds_to_existing_rotation(call):
    answer = call("rotate", [make_pdf(3, rotate=90)], angle=270, pages="1,3")
    pdf, texts = reopen(answer.file)
    assert [int(p.obj.get("/Rotate", 0)) for p in pdf.pages] == [0, 90, 0]
    assert [p.rotation for p in pypdf.PdfReader(io.BytesIO(answer.file)).pages] == [0, 90, 0]
    assert texts == ["page 1", "page 2", "page 3"]
    pdf, _ = reopen(call("rotate", [A], angle=180).file)
    assert [int(p.obj.Rotate) for p in pdf.pages] == [180] * 3


def _boxes(data: bytes) -> list[tuple[list[float], list[float]]]:
    """(CropBox, MediaBox) of each page, read by pikepdf and by pypdf, which must agree."""
    with pdfs.open_any(data) as pdf:
        boxes = [([float(v) for v in p.cropbox], [float(v) for v in p.mediabox])
                 for p in pdf.pages]
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert [([float(v) for v in p.cropbox], [float(v) for v in p.mediabox])
            for p in reader.pages] == boxes
    return boxes


_LETTER = [0.0, 0.0, 612.0, 792.0]


def test_crop_by_margins_on_selected_pages(call):
    answer = call("crop", [A], pages="1,3", left=10, right=20.5, top=30, bottom=40)
    assert answer.report == {"cropped": 2}
    trimmed = [10.0, 40.0, 591.5, 762.0]
    assert _boxes(answer.file) == [(trimmed, _LETTER), (_LETTER, _LETTER), (trimmed, _LETTER)]
    assert reopen(answer.file)[1] == ["A page 1", "A page 2", "A page 3"]  # content kept


@pytest.mark.parametrize("rotate, expected", [
    # top=10, right=20 as the reader sees the page: /Rotate 90 shows the user-space left
    # edge on top and the top edge on the right; 180 and 270 turn further.
    (90, [10.0, 0.0, 612.0, 772.0]),
    (180, [20.0, 10.0, 612.0, 792.0]),
    (270, [0.0, 20.0, 602.0, 792.0]),
])
def test_crop_margins_follow_the_visible_orientation(call, rotate, expected):
    answer = call("crop", [make_pdf(1, rotate=rotate)], top=10, right=20)
    assert _boxes(answer.file) == [(expected, _LETTER)]


def test_crop_to_a_box_and_media_mode(call):
    # Corners in either order; mode "crop" keeps the box inside the MediaBox.
    answer = call("crop", [A], box="500,700,-50,100", pages="2")
    assert _boxes(answer.file)[1] == ([0.0, 100.0, 500.0, 700.0], _LETTER)
    answer = call("crop", [A], box="-50,100,500,700", mode="media", pages="-1")
    assert _boxes(answer.file) == [(_LETTER, _LETTER)] * 2 + [([-50.0, 100.0, 500.0, 700.0],) * 2]
    # Margins apply to what is visible, and repeated crops add up.
    again = call("crop", [call("crop", [A], left=100).file], left=100, mode="media")
    assert _boxes(again.file) == [([200.0, 0.0, 612.0, 792.0],) * 2] * 3


def test_crop_that_leaves_no_area_is_refused(call):
    answer = call("crop", [make_pdf(2, size=(300, 400))], pages="2", left=150, right=149.5)
    assert (answer.problem, answer.manifest["detail"]) == (
        "bad_parameter", "the margins leave page 2 less than 1 point wide or high")
    answer = call("crop", [A], box="700,0,900,100")  # outside the MediaBox
    assert (answer.problem, answer.manifest["detail"]) == (
        "bad_parameter", "box: the box leaves page 1 less than 1 point wide or high")
    assert call("crop", [A], box="700,0,900,100", mode="media").problem is None
    assert call("crop", [A], pages="4", left=1).problem == "page_out_of_range"


def test_compress_is_lossless_and_downsamples_on_request(call):
    doc = call("from-images", [pdfs.make_image_png(600, 400)]).file  # 600 px on 600 pt
    answer = call("compress", [doc])
    assert answer.report["images_downsampled"] == 0
    pdf, _ = reopen(answer.file)
    image = pikepdf.PdfImage(next(iter(pdf.pages[0].get_images().values())))
    assert (image.width, image.height) == (600, 400)
    answer = call("compress", [doc], image_dpi=36, image_quality=50)
    assert answer.report["images_downsampled"] == 1
    pdf, _ = reopen(answer.file)
    image = pikepdf.PdfImage(next(iter(pdf.pages[0].get_images().values())))
    assert (image.width, image.height) == (300, 200) and image.filters == ["/DCTDecode"]
    text_doc = call("compress", [make_pdf(20)])
    assert reopen(text_doc.file)[1] == [f"page {n}" for n in range(1, 21)]
    assert len(text_doc.file) < len(make_pdf(20))


def _without_trailer_size(data: bytes) -> bytes:
    """A classic-xref PDF whose trailer lacks /Size (qpdf repairs it on reading)."""
    out = io.BytesIO()
    pdfs.open_any(data).save(out, object_stream_mode=pikepdf.ObjectStreamMode.disable)
    head, trailer = out.getvalue().rsplit(b"trailer", 1)
    stripped = re.sub(rb"/Size \d+", b"", trailer)
    assert stripped != trailer
    return head + b"trailer" + stripped


def test_compress_of_a_trailer_without_size_reopens(call):
    """Saving with generated object streams wrote an xref stream without /Size when the
    input trailer had none: a 200 that neither pikepdf nor pypdf could open."""
    answer = call("compress", [_without_trailer_size(A)])
    assert reopen(answer.file)[1] == ["A page 1", "A page 2", "A page 3"]


def test_compress_of_cyclic_toc_reopens(call):
    path = CORPUS / "pikepdf__cyclic-toc.pdf"  # read where it is, never copied here
    if not path.exists():
        pytest.skip(f"no corpus at {CORPUS}")
    assert len(reopen(call("compress", [path.read_bytes()]).file)[0].pages) == 1


def test_an_answer_that_does_not_reopen_is_malformed(call, monkeypatch):
    """The child's last check: a PDF nobody can open is never answered."""
    from notrace.operations import child
    from notrace.operations._common import pdf_output
    monkeypatch.setitem(child.FUNCTIONS, "repair",
                        lambda inputs, params, *, max_pages: pdf_output(A[:200]))
    answer = call("repair", [A])
    assert (answer.problem, answer.manifest["detail"]) == (
        "malformed", "the result could not be written as a readable PDF")


def test_linearize_and_repair(call):
    answer = call("linearize", [A])
    pdf, texts = reopen(answer.file)
    assert pdf.is_linearized and texts == ["A page 1", "A page 2", "A page 3"]
    broken = A.replace(b"startxref", b"startxrex")  # forces qpdf to rebuild the xref
    answer = call("repair", [broken])
    assert reopen(answer.file)[1] == ["A page 1", "A page 2", "A page 3"]
    assert answer.report["warnings"] >= 1


def test_info(call):
    info = call("info", [pdfs.make_active_pdf()]).json()
    assert info["pages"] == 2 and info["encrypted"] is False
    assert info["page_sizes"][0] == {"width": 612.0, "height": 792.0, "rotate": 0}
    assert info["metadata"]["title"] == MARKERS["title"]
    for key in ("has_javascript", "has_embedded_files", "has_forms", "has_xfa",
                "has_xmp_metadata", "has_open_action"):
        assert info[key] is True, key
    assert info["has_signatures"] is False
    plain_info = call("info", [make_pdf(1, size=(300, 400), rotate=90)]).json()
    assert plain_info["page_sizes"] == [{"width": 300.0, "height": 400.0, "rotate": 90}]
    assert not any(v for k, v in plain_info.items() if k.startswith("has_"))


def test_info_of_encrypted_documents(call):
    doc = pdfs.make_encrypted_pdf(user="pw")
    assert call("info", [doc]).problem == "password_required"
    assert call("info", [doc], password="nope").problem == "password_wrong"
    assert call("info", [doc], password="pw").json()["encrypted"] is True


def test_text_per_page(call):
    result = call("text", [A], pages="3,1").json()
    assert result == {"pages": [{"page": 3, "text": "A page 3"}, {"page": 1, "text": "A page 1"}]}
    encrypted = pdfs.make_encrypted_pdf(3, user="pw", marker="E")
    assert [p["text"] for p in call("text", [encrypted], password="pw").json()["pages"]] == [
        "E page 1", "E page 2", "E page 3"]


def test_metadata_sets_deletes_and_syncs_xmp(call):
    answer = call("metadata", [pdfs.make_active_pdf()], title="New (title) \\ é",
                  author="", keywords="a, b")
    pdf, _ = reopen(answer.file)
    assert str(pdf.docinfo["/Title"]) == "New (title) \\ é"
    assert "/Author" not in pdf.docinfo and str(pdf.docinfo["/Keywords"]) == "a, b"
    reader = pypdf.PdfReader(io.BytesIO(answer.file))
    assert reader.metadata.title == "New (title) \\ é" and reader.metadata.author is None
    with pdf.open_metadata() as xmp:
        assert xmp["dc:title"] == "New (title) \\ é"
        assert xmp["pdf:Keywords"] == "a, b"
    assert answer.report == {"changed": ["author", "keywords", "title"], "xmp": "updated"}
    assert MARKERS["xmp"].encode() not in plain(answer.file)
    dropped = call("metadata", [pdfs.make_active_pdf()], title="T", xmp="drop")
    assert "/Metadata" not in reopen(dropped.file)[0].Root
    assert "pikepdf" not in plain(answer.file).decode("latin-1")  # no editor stamp


def test_sanitize_removes_everything_listed(call):
    answer = call("sanitize", [pdfs.make_active_pdf()])
    pdf, texts = reopen(answer.file)
    assert texts == ["page 1", "page 2"]
    raw = plain(answer.file)
    for what, marker in MARKERS.items():
        assert (marker.encode() in raw) == (what == "link"), what
    assert "/Info" not in pdf.trailer and "/Metadata" not in pdf.Root
    assert "/OpenAction" not in pdf.Root and "/AA" not in pdf.pages[0].obj
    assert b"/JavaScript" not in raw and b"/EmbeddedFile" not in raw and b"/Launch" not in raw
    removed = answer.report["removed"]
    assert removed["javascript"] == 1 and removed["open_action"] == 1
    assert removed["launch_actions"] == 1 and removed["embedded_files"] == 1
    assert removed["file_attachment_annotations"] == 1 and removed["xfa"] == 1
    assert removed["additional_actions"] == 2 and removed["thumbnails"] == 1
    reader = pypdf.PdfReader(io.BytesIO(answer.file))
    assert reader.metadata is None and not reader.attachments
    links = call("sanitize", [pdfs.make_active_pdf()], remove_links="true")
    assert MARKERS["link"].encode() not in plain(links.file)
    assert links.report["removed"]["links"] == 2  # the URI link and the (emptied) Launch link


def test_sanitize_survives_cyclic_structures(call):
    pdf = pdfs.open_any(A)
    action = pdf.make_indirect(pikepdf.Dictionary(S=pikepdf.Name.JavaScript,
                                                  JS=pikepdf.String("x")))
    action.Next = action  # a chain that loops
    item = pdf.make_indirect(pikepdf.Dictionary(Title=pikepdf.String("o"), A=action))
    item.Next = item  # an outline whose /Next is itself
    pdf.Root.Outlines = pdf.make_indirect(pikepdf.Dictionary(First=item, Last=item))
    out = io.BytesIO()
    pdf.save(out)
    answer = call("sanitize", [out.getvalue()])
    assert answer.report["removed"]["javascript"] == 1


def test_encrypt_round_trip(call):
    answer = call("encrypt", [A], password="user pw", owner_password="owner",
                  allow_print="false", allow_extract="false")
    assert answer.report["permissions_enforced"] is True
    assert call("info", [answer.file]).problem == "password_required"
    with pytest.raises(pikepdf.PasswordError):
        pdfs.open_any(answer.file)
    pdf, texts = reopen(answer.file, "user pw")
    assert texts == ["A page 1", "A page 2", "A page 3"]
    assert pdf.encryption.R == 6 and pdf.encryption.stream_method.name == "aesv3"
    assert not pdf.allow.print_highres and not pdf.allow.extract
    # pypdf reads it through pikepdf's decryption (reopen): pypdf alone needs the
    # `cryptography` package for AES, which is not installed.
    decrypted = call("decrypt", [answer.file], password="owner")
    assert reopen(decrypted.file)[1] == texts
    assert not pdfs.open_any(decrypted.file).is_encrypted


def test_decrypt_problems(call):
    doc = pdfs.make_encrypted_pdf(user="pw")
    assert call("decrypt", [doc], password="wrong").problem == "password_wrong"
    assert call("decrypt", [A], password="pw").problem == "not_encrypted"


def test_other_operations_open_encrypted_inputs(call):
    doc = pdfs.make_encrypted_pdf(2, user="pw", marker="E")
    assert call("select", [doc], pages="2").problem == "password_required"
    assert reopen(call("select", [doc], pages="2", password="pw").file)[1] == ["E page 2"]
    merged = call("merge", [A, doc], password="pw")
    assert len(reopen(merged.file)[1]) == 5
    again = call("encrypt", [doc], password="new", current_password="pw")
    assert reopen(again.file, "new")[1] == ["E page 1", "E page 2"]


def test_watermark_text_is_escaped(call):
    text = "Top (secret) \\ ) ( é €"
    answer = call("watermark", [make_pdf(2, rotate=90)], text=text, position="top-left",
                  angle=0, pages="2")
    pdf, texts = reopen(answer.file)
    assert texts[0] == "page 1"
    assert texts[1].startswith("page 2") and texts[1].endswith(text)
    assert pdf.pages[1].obj.Rotate == 90
    # drawn upright in the visible (rotated) page: the first matrix undoes /Rotate 90
    assert b"0 1 -1 0 612 0 cm" in plain(answer.file)


def test_watermark_unencodable_text_becomes_question_marks(call):
    texts = reopen(call("watermark", [C], text="日本 ok").file)[1]
    assert texts == ["C page 1\n?? ok"]


def test_stamps_are_reproducible(call):
    first = call("watermark", [A], text="x", opacity=0.5).file
    assert first == call("watermark", [A], text="x", opacity=0.5).file
    assert b"/NtF " in plain(first) or b"/NtF\n" in plain(first)


def test_number(call):
    answer = call("number", [make_pdf(4)], format="{n} / {total}", pages="2-", start=1)
    assert reopen(answer.file)[1] == ["page 1", "page 2\n1 / 3", "page 3\n2 / 3",
                                      "page 4\n3 / 3"]
    braces = call("number", [C], format="p. {n}")
    assert reopen(braces.file)[1] == ["C page 1\np. 1"]


def test_flatten_draws_fields_into_pages(call):
    answer = call("flatten", [pdfs.make_form_pdf()])
    pdf, texts = reopen(answer.file)
    assert texts == ["page 1\nFIELDVALUE"]
    assert "/Annots" not in pdf.pages[0].obj or len(pdf.pages[0].obj.Annots) == 0
    assert "/AcroForm" not in pdf.Root
    assert answer.report == {"flattened": 2, "remaining": 0}


def test_images_and_from_images(call):
    inputs = [pdfs.make_image_png(40, 30), pdfs.make_image_jpeg(50, 20),
              pdfs.make_image_png(10, 10, mode="RGBA"), pdfs.make_image_png(8, 8, mode="L",
                                                                           dpi=144)]
    made = call("from-images", inputs)
    pdf, texts = reopen(made.file)
    assert texts == ["", "", "", ""]
    assert [[float(v) for v in p.mediabox] for p in pdf.pages] == [
        [0, 0, 40, 30], [0, 0, 50, 20], [0, 0, 10, 10], [0, 0, 4.000206, 4.000206]]
    jpeg = next(iter(pdf.pages[1].get_images().values()))
    assert jpeg.read_raw_bytes() == inputs[1]  # embedded as is
    assert "/SMask" in next(iter(pdf.pages[2].get_images().values()))
    out = call("images", [made.file])
    assert out.names == [
        "page-1-image-1.png", "page-2-image-1.jpg", "page-3-image-1.png", "page-4-image-1.png"]
    assert out.files[1] == inputs[1]
    assert all(f.startswith(b"\x89PNG") for i, f in enumerate(out.files) if i != 1)
    assert call("images", [made.file], pages="2").names == \
        ["page-2-image-1.jpg"]
    a4 = call("from-images", [inputs[0]], page_size="a4")
    a4_pdf = pdfs.open_any(a4.file)
    assert [round(float(v)) for v in a4_pdf.pages[0].mediabox] == [0, 0, 842, 595]


@pytest.mark.parametrize("data, problem", [
    (b"GIF89a\x01\x00\x01\x00", "unsupported_image"),
    (b"BM" + b"\x00" * 60, "unsupported_image"),
    (b"\x89PNG\r\n\x1a\nbroken", "malformed"),
    (b"\xff\xd8\xff\xe0broken", "malformed"),
])
def test_from_images_rejects(call, data, problem):
    answer = call("from-images", [pdfs.make_image_png(), data])
    assert answer.problem == problem
    assert "input 2" in answer.manifest["detail"]


def test_page_limit_applies_to_every_reader(call):
    for op, raw in (("info", {}), ("text", {}), ("rotate", {"angle": 90}), ("crop", {}),
                    ("sanitize", {}), ("split", {"every": 1})):
        answer = call(op, [A], max_pages=2, **raw)
        assert answer.problem == "too_many_pages", op
        assert answer.manifest["detail"] == "the document has 3 pages; the limit is 2"


def _pdf_without_pages() -> bytes:
    out = io.BytesIO()
    pikepdf.new().save(out)
    return out.getvalue()


@pytest.mark.parametrize("data, detail", [
    (b"%PDF-1.7\n", "the document is damaged or uses something this service cannot process"),
    (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj trailer << /Root 1 0 R >>"
     b" %%EOF", "the document is damaged or uses something this service cannot process"),
    (_pdf_without_pages(), "the document has no page")])
def test_garbage_with_a_header_is_malformed_not_a_crash(call, data, detail):
    for op in ("info", "repair", "text", "sanitize"):
        answer = call(op, [data])
        assert (answer.problem, answer.manifest["detail"]) == ("malformed", detail), op


@pytest.mark.parametrize("data, detail", [
    (b"", "nothing of a PDF was found in the document"),
    (b"not a pdf at all\n" * 100, "nothing of a PDF was found in the document"),
    (b"1 0 obj << /Type /Catalog >> endobj trailer << /Root 1 0 R >> %%EOF",
     "nothing of a PDF was found in the document"),
    (pdfs.make_image_png(4, 4), "the document is another kind of file, not a PDF"),
    (pdfs.make_image_jpeg(4, 4), "the document is another kind of file, not a PDF"),
    (b"PK\x03\x04" + A, "the document is another kind of file, not a PDF")])
def test_a_body_without_anything_of_a_pdf_is_not_a_pdf(call, data, detail):
    for op in ("info", "repair", "sanitize"):
        answer = call(op, [data])
        assert (answer.problem, answer.manifest["detail"]) == ("not_a_pdf", detail), op
    answer = call("merge", [A, data])
    assert answer.problem == "not_a_pdf" and "input 2" in answer.manifest["detail"]


@pytest.mark.parametrize("data", [A[A.index(b"\n") + 1:], b"x" * 3000 + A,
                                  b"junk before\n" * 200 + A.replace(b"%PDF-", b"%XXX-", 1)],
                         ids=["no-header", "header-after-3000-bytes", "junk-and-no-header"])
def test_a_pdf_qpdf_recovers_is_processed(call, data):
    """No `%PDF-` in the first 1024 bytes, but qpdf finds the pages: processed."""
    assert bytes(data[:1024]).find(b"%PDF-") == -1
    assert call("info", [data]).json()["pages"] == 3
    assert reopen(call("repair", [data]).file)[1] == ["A page 1", "A page 2", "A page 3"]


def test_unparseable_xmp_is_replaced_or_dropped(call):
    pdf = pdfs.open_any(A)
    pdf.Root.Metadata = pdf.make_stream(b"<x:xmpmeta><unclosed", Type=pikepdf.Name.Metadata,
                                        Subtype=pikepdf.Name.XML)
    out = io.BytesIO()
    pdf.save(out)
    answer = call("metadata", [out.getvalue()], title="T")
    # pikepdf replaces an unparseable packet by a fresh one; if it ever refuses, we drop it
    result, _ = reopen(answer.file)
    if answer.report["xmp"] == "updated":
        with result.open_metadata() as xmp:
            assert xmp["dc:title"] == "T"
        assert b"unclosed" not in plain(answer.file)
    else:
        assert answer.report["xmp"] == "dropped_unreadable"
        assert "/Metadata" not in result.Root
