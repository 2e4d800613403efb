"""Bookmarks (bookmarks, set-bookmarks, merge's outline, split by bookmarks or size) and
what is taken out of pages (remove-annotations, remove-blank), in-process; results
reopened with pikepdf and pypdf."""
from __future__ import annotations

import io
import json
import random
import string

import pikepdf
import pypdf
import pytest

from notrace.operations import OPERATIONS
from notrace.operations.outline_data import MAX_DEPTH, MAX_ITEMS, parse_outline
from notrace.operations.spec import ParamError
from tests.pdfs import make_active_pdf, make_form_pdf, make_pdf

OUTLINE = [{"title": "Chapter é 1", "page": 1, "level": 1, "children": [
               {"title": "1.1", "page": 2, "level": 2, "children": []}]},
           {"title": "No page", "page": None, "level": 1, "children": []},
           {"title": "Chapter 2", "page": 3, "level": 1, "children": []}]


def pypdf_outline(data: bytes) -> list:
    """(title, 1-based page, depth) of each item, as pypdf reads the outline."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    out = []

    def walk(items, depth):
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            else:
                page = reader.get_destination_page_number(item)
                out.append((item.title, None if page is None or page < 0 else page + 1, depth))
    walk(reader.outline, 1)
    return out


def with_outline(call, pages: int = 3, outline=OUTLINE, **make) -> bytes:
    return call("set-bookmarks", [make_pdf(pages, **make)], bookmarks=json.dumps(outline)).file


def test_set_bookmarks_then_bookmarks_is_the_identity(call):
    data = with_outline(call)
    assert call("bookmarks", [data]).json() == {"bookmarks": OUTLINE, "truncated": False}
    assert pypdf_outline(data) == [("Chapter é 1", 1, 1), ("1.1", 2, 2), ("No page", None, 1),
                                   ("Chapter 2", 3, 1)]
    # the answer of bookmarks is accepted as it is, and append adds after what was there
    again = call("set-bookmarks", [data], bookmarks=json.dumps(call("bookmarks", [data]).json()),
                 mode="append").file
    assert call("bookmarks", [again]).json()["bookmarks"] == OUTLINE + OUTLINE


def test_set_bookmarks_refusals(call):
    assert call("set-bookmarks", [make_pdf(2)],
                bookmarks='[{"title": "x", "page": 3}]').problem == "page_out_of_range"
    deep: list = []
    for _ in range(MAX_DEPTH + 1):
        deep = [{"title": "x", "page": 1, "children": deep}]
    for text, where in [("[", "JSON"), ("[" * 100000, "JSON"), ('{"a": 1}', "list"),
                        ('[{"title": 1}]', "[0].title"), ('[{"title": "x", "page": 0}]', "page"),
                        ('[{"title": "x", "page": true}]', "page"),
                        ('[{"title": "x", "level": 2}]', "level"),
                        ('[{"title": "x", "url": "u"}]', "unknown"),
                        ('[{"title": "x", "children": [{"title": 2}]}]', "[0].children[0]"),
                        (json.dumps(deep), "deeper"),
                        (json.dumps([{"title": ""}] * (MAX_ITEMS + 1)), "more than")]:
        with pytest.raises(ParamError) as info:
            parse_outline(text)
        assert info.value.param == "bookmarks" and where in info.value.message, text[:40]
    with pytest.raises(ParamError):
        OPERATIONS["set-bookmarks"].validate({"bookmarks": "x" * 20000})


def test_bookmarks_of_a_hostile_outline_are_bounded(call):
    pdf = pikepdf.open(io.BytesIO(make_pdf(2)))
    a = pdf.make_indirect(pikepdf.Dictionary(Title=pikepdf.String("a"),
                                             Dest=[pdf.pages[1].obj, pikepdf.Name.Fit]))
    b = pdf.make_indirect(pikepdf.Dictionary(Title=pikepdf.String("b"), Next=a, First=a,
                                             A=pikepdf.Dictionary(S=pikepdf.Name.GoTo,
                                                                  D=pikepdf.String("named"))))
    a.Next = b  # a cycle: a -> b -> a, and b is its own grandparent
    pdf.Root.Outlines = pdf.make_indirect(pikepdf.Dictionary(First=a))
    pdf.Root.Names = pikepdf.Dictionary(Dests=pikepdf.Dictionary(Names=pikepdf.Array(
        [pikepdf.String("named"), pikepdf.Array([pdf.pages[0].obj, pikepdf.Name.Fit])])))
    out = io.BytesIO()
    pdf.save(out)
    answer = call("bookmarks", [out.getvalue()]).json()
    assert [(b["title"], b["page"]) for b in answer["bookmarks"]] == [("a", 2), ("b", 1)]
    assert answer["bookmarks"][1]["children"] == []  # a was seen already


def test_merge_keeps_outlines_and_adds_one_per_file(call):
    a = with_outline(call, marker="A")
    merged = call("merge", [a, make_pdf(2), a], bookmark_per_file="true")
    tree = call("bookmarks", [merged.file]).json()["bookmarks"]
    assert [(t["title"], t["page"]) for t in tree] == [("Document 1", 1), ("Document 2", 4),
                                                        ("Document 3", 6)]
    third = tree[2]["children"]
    assert [(t["title"], t["page"], t["level"]) for t in third] == [
        ("Chapter é 1", 6, 2), ("No page", None, 2), ("Chapter 2", 8, 2)]
    assert third[0]["children"][0]["page"] == 7
    assert merged.report == {"bookmarks": 11}
    plain = call("merge", [a, a]).file
    assert [b["page"] for b in call("bookmarks", [plain]).json()["bookmarks"]] == [1, None, 3,
                                                                                   4, None, 6]
    none = call("merge", [a, a], outline="none").file
    assert call("bookmarks", [none]).json()["bookmarks"] == []
    assert pypdf.PdfReader(io.BytesIO(none)).outline == []


def test_split_by_bookmarks_and_by_size(call):
    data = with_outline(call, pages=5, outline=[{"title": "b", "page": 3},
                                                {"title": "a", "page": 2}])
    answer = call("split", [data], by_bookmarks="1")
    assert answer.report["parts"] == [[1], [2], [3, 4, 5]]
    assert [len(pypdf.PdfReader(io.BytesIO(f)).pages) for f in answer.files] == [1, 1, 3]
    assert call("split", [make_pdf(2)], by_bookmarks="1").problem == "bad_parameter"
    with pytest.raises(ParamError):
        OPERATIONS["split"].validate({"by_bookmarks": "2"})
    # pages of ~3 KB (text that does not compress), parts under 10 KiB: a few pages each
    noise = "".join(random.Random(1).choices(string.ascii_letters, k=4000))
    big = make_pdf(12, text="page {n} " + noise)
    sized = call("split", [big], max_mb="0.01")
    parts = sized.report["parts"]
    assert [p for part in parts for p in part] == list(range(1, 13)) and len(parts) > 2
    assert all(len(f) <= 10 * 1024 for f in sized.files) and sized.report["over_limit"] == []
    assert max(len(part) for part in parts) > 1


# -- remove-annotations, remove-blank ---------------------------------------------------------

def subtypes(data: bytes) -> list[list[str]]:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return [[str(a.Subtype)[1:] for a in page.obj.get("/Annots", [])] for page in pdf.pages]


def test_remove_annotations_keeps_links_unless_named(call):
    original = subtypes(make_active_pdf())[0]
    assert sorted(original) == ["FileAttachment", "Link", "Link", "Widget"]
    answer = call("remove-annotations", [make_active_pdf()])
    assert subtypes(answer.file)[0] == ["Link", "Link"]
    assert answer.report == {"removed": {"FileAttachment": 1, "Widget": 1}, "fields_removed": 1}
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        assert len(pdf.Root.AcroForm.Fields) == 0  # no field points at a removed widget
    links = call("remove-annotations", [make_active_pdf()], types="link")
    assert sorted(subtypes(links.file)[0]) == ["FileAttachment", "Widget"]
    assert len(pypdf.PdfReader(io.BytesIO(links.file)).pages) == 2


def test_remove_annotations_on_selected_pages(call):
    form = make_form_pdf()
    assert call("remove-annotations", [form], pages="2-").problem == "page_out_of_range"
    answer = call("remove-annotations", [form], types="Square,Ink")
    assert subtypes(answer.file) == [["Widget"]]
    with pytest.raises(ParamError):
        OPERATIONS["remove-annotations"].validate({"types": "Link,/JavaScript"})


def _with_pages(contents: list[bytes | None], **extra) -> bytes:
    pdf = pikepdf.open(io.BytesIO(make_pdf(len(contents))))
    for page, content in zip(pdf.pages, contents):
        if content is None:
            del page.obj["/Contents"]
        elif content != b"keep":
            page.obj.Contents = pdf.make_stream(content)
    form = pdf.make_stream(b"0 0 m 10 10 l S", Type=pikepdf.Name.XObject,
                           Subtype=pikepdf.Name.Form, BBox=[0, 0, 10, 10])
    empty_form = pdf.make_stream(b"q Q", Type=pikepdf.Name.XObject,
                                 Subtype=pikepdf.Name.Form, BBox=[0, 0, 10, 10])
    for page in pdf.pages:
        page.obj.Resources.XObject = pikepdf.Dictionary(Fx=form, Fe=empty_form)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def test_remove_blank(call):
    data = _with_pages([b"keep", None, b"q 0 0 10 10 re W n Q", b"/Fx Do", b"/Fe Do /Nope Do",
                        b"0 0 10 10 re f", b"keep"])
    answer = call("remove-blank", [data])
    assert answer.report == {"removed": [2, 3, 5], "kept": 4}
    reader = pypdf.PdfReader(io.BytesIO(answer.file))
    assert [p.extract_text() for p in reader.pages][::3] == ["page 1", "page 7"]
    assert call("remove-blank", [data], pages="1-3").report["removed"] == [2, 3]
    assert call("remove-blank", [_with_pages([None, b""])]).problem == "bad_parameter"
