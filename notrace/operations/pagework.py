"""Page assembly: merge, split, select, delete, rotate, crop. Runs in the CHILD.

merge/split/select/delete build a NEW document from copies of the chosen pages, instead
of editing the input in place. qpdf copies what a page references and turns references
to pages it did not copy (links, outline entries) into null, so a deleted page leaves no
trace in the output; an in-place deletion would keep every page still reachable from the
outline or a link (measured). The price: document-level structures (form field tree, named
destinations, page labels, document metadata) are not carried over; merge rebuilds the
inputs' outlines (titles and pages only, see outline.py).
rotate and crop only change page entries (/Rotate, the boxes), so they edit in place and
keep everything.

Pages are taken by index from `list(pdf.pages)`, never `pdf.pages[i]`: pikepdf copies the
whole page vector on every index (80 us a call at 500 pages, 0.2 ms at 2,000), so a loop
over indices was quadratic: 0.43 s of indexing alone for 2,000 pages (pikepdf 10.17).
"""
from __future__ import annotations

import copy
from typing import Iterable

import pikepdf

from notrace.operations._common import (Output, OutputFile, PDF, check_page_count, open_pdf,
                                        page_box, page_rotation, pdf_output, save_pdf)
from notrace.operations.boxes import MIN_SIDE_PT, has_area, intersect, parse_box, trim
from notrace.operations.outline import MAX_READ, read_outline, write_outline
from notrace.operations.outline_data import count_items
from notrace.operations.pages import parse_pages, parse_ranges
from notrace.operations.problems import Problem

MB = 1024 * 1024


def assemble(pages: Iterable[pikepdf.Page], version: str,
             outline: list | None = None) -> bytes:
    """A new document of copies of `pages`, with `outline` (outline.read_outline's
    items, pages numbered in the new document) when given."""
    out = pikepdf.new()
    _add_pages(out, pages)
    if outline:
        write_outline(out, outline)
    return save_pdf(out, min_version=version)


def _add_pages(out: pikepdf.Pdf, pages: Iterable[pikepdf.Page]) -> None:
    """What out.pages.extend(pages) does, in linear time: qpdf's addPage costs time in
    the pages already added (4,000 pages: 1.1-2.9 s against 0.3 s here; the qpdf CLI
    merges more slowly too). Each page is copied by qpdf's foreign-object copier, the one
    addPage uses (it follows no reference into another page: links to pages not copied
    become null, and copies no /Pages node), and the tree is built at once; a page given
    twice becomes a shallow copy, as addPage makes. On the whole corpus, every page and a
    [last, first, first] selection, the saved bytes equal extend's."""
    tree = out.Root.Pages
    kids: list = []
    seen: set[tuple[int, int]] = set()
    for page in pages:
        local = out.copy_foreign(page.obj)
        if local.objgen in seen:
            local = out.make_indirect(copy.copy(local))
        seen.add(local.objgen)
        local.Parent = tree
        kids.append(local)
    tree.Kids = pikepdf.Array(kids)
    tree.Count = len(kids)


def _newest(versions: Iterable[str]) -> str:
    def key(v: str) -> tuple:
        try:
            return tuple(int(x) for x in v.split("."))
        except ValueError:  # hostile header: fall back to the oldest
            return (1, 0)
    return max(versions, key=key, default="1.4")


def merge(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Concatenate inputs in the order given. The page limit applies to the result too."""
    sources = []  # kept open until the save: qpdf copies stream data lazily
    total = 0
    for which, data in enumerate(inputs, start=1):
        pdf = open_pdf(data, password=params.get("password"), max_pages=max_pages, which=which)
        total += len(pdf.pages)
        check_page_count(total, max_pages, "the merged document")
        sources.append(pdf)
    pages = [page for pdf in sources for page in pdf.pages]
    outline = _merged_outline(sources, params["outline"] == "keep", params["bookmark_per_file"])
    return pdf_output(assemble(pages, _newest(p.pdf_version for p in sources), outline),
                      {"bookmarks": count_items(outline)})


def _merged_outline(sources: list[pikepdf.Pdf], keep: bool, per_file: bool) -> list:
    """Each input's outline (`keep`), its pages moved by the pages before it; under one
    "Document k" item per input with `per_file` (the client's filenames are never read).
    At most MAX_READ items in all."""
    items: list = []
    offset, budget = 0, MAX_READ
    for k, pdf in enumerate(sources, start=1):
        own: list = []
        if keep and budget > 0:
            own, _cut = read_outline(pdf, budget)
            budget -= count_items(own)
            own = _shifted(own, offset)
        if per_file:
            items.append((f"Document {k}", offset + 1, own))
        else:
            items.extend(own)
        offset += len(pdf.pages)
    return items


def _shifted(items: list, offset: int) -> list:
    """Items with every page moved by `offset` (recursive: depth at most MAX_DEPTH)."""
    return [(title, None if page is None else page + offset, _shifted(children, offset))
            for title, page, children in items]


def split(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Several PDFs: one per part of `ranges`, or one per `every` pages. The pages of all
    parts together may not exceed the page limit (parts may overlap)."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    count = len(pdf.pages)
    if params.get("ranges") is not None:
        groups = parse_ranges(params["ranges"]).resolve_groups(count)
    elif params.get("every") is not None:
        every = params["every"]
        groups = [list(range(i, min(i + every, count))) for i in range(0, count, every)]
    elif params.get("max_mb") is not None:
        groups = _by_size(pdf, params["max_mb"])
    else:
        groups = _by_bookmarks(pdf)
    if any(not g for g in groups) or not groups:
        raise Problem("page_out_of_range", "ranges: a part selects no page of this document")
    check_page_count(sum(len(g) for g in groups), max_pages, "the parts together")
    pages = list(pdf.pages)
    files = [OutputFile(f"part-{k}.pdf", PDF,
                        assemble((pages[i] for i in group), pdf.pdf_version))
             for k, group in enumerate(groups, start=1)]
    report: dict = {"parts": [[i + 1 for i in g] for g in groups]}
    if params.get("max_mb") is not None:  # a page bigger than the limit is a part alone
        limit = params["max_mb"] * MB
        report["over_limit"] = [k for k, f in enumerate(files, start=1) if len(f.data) > limit]
    return Output(files, report)


def _by_size(pdf: pikepdf.Pdf, max_mb: float) -> list[list[int]]:
    """Consecutive pages in parts of at most `max_mb` MiB: each page is measured alone
    (one small document each: what it references counts in full, so shared fonts and
    images make the estimate high, never low), then pages are taken in order while the
    sum fits."""
    limit = max_mb * MB
    groups: list[list[int]] = [[]]
    total = 0
    for i, page in enumerate(pdf.pages):
        size = len(assemble([page], pdf.pdf_version))
        if groups[-1] and total + size > limit:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += size
    return groups


def _by_bookmarks(pdf: pikepdf.Pdf) -> list[list[int]]:
    """One part per first-level bookmark, from its page to the next one's (pages before
    the first bookmarked page are a part of their own)."""
    items, _cut = read_outline(pdf)
    starts = sorted({page - 1 for _title, page, _children in items if page is not None})
    if not starts:
        raise Problem("bad_parameter", "by_bookmarks: no first-level bookmark leads to a "
                                       "page of this document")
    if starts[0] != 0:
        starts.insert(0, 0)
    ends = starts[1:] + [len(pdf.pages)]
    return [list(range(a, b)) for a, b in zip(starts, ends)]


def select(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """The pages listed, in that order, duplicates kept ("3,1,1")."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    indices = parse_pages(params["pages"]).resolve(len(pdf.pages), limit=max_pages)
    if not indices:
        raise Problem("page_out_of_range", "pages: the selection holds no page of this document")
    pages = list(pdf.pages)
    return pdf_output(assemble((pages[i] for i in indices), pdf.pdf_version))


def delete(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Every page but those listed; refuses to delete all of them."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    count = len(pdf.pages)
    gone = parse_pages(params["pages"]).resolve_set(count)
    kept = [i for i in range(count) if i not in gone]
    if not kept:
        raise Problem("page_out_of_range", "pages: deleting every page would leave no document")
    pages = list(pdf.pages)
    return pdf_output(assemble((pages[i] for i in kept), pdf.pdf_version),
                      {"deleted": len(gone), "kept": len(kept)})


def rotate(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Add `angle` to each selected page's /Rotate (in place; inherited values were
    pushed down to the pages when the document was opened)."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    pages = list(pdf.pages)
    chosen = parse_pages(params["pages"]).resolve_set(len(pages))
    for i in sorted(chosen):
        page = pages[i]
        page.obj.Rotate = (page_rotation(page) + params["angle"]) % 360
    return pdf_output(pdf, {"rotated": len(chosen)})


def crop(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Set the CropBox (mode "crop"), or the MediaBox and the CropBox (mode "media"), of
    the selected pages: to `box`, or to the visible box less the margins, each margin
    taken from the side the reader sees (see boxes.trim). In mode "crop" the new box is
    kept inside the MediaBox. A page left with no area is refused ("bad_parameter"):
    server-side validation cannot know the page sizes. Content outside the box stays in
    the file (crop hides, it does not redact)."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    pages = list(pdf.pages)
    chosen = sorted(parse_pages(params["pages"]).resolve_set(len(pages)))
    box = parse_box(params["box"]) if params["box"] is not None else None
    for i in chosen:
        page = pages[i]
        new = box if box is not None else trim(page_box(page), params, page_rotation(page))
        if params["mode"] == "crop":
            new = intersect(new, page_box(page, ("/MediaBox",)))
        if not has_area(new):
            what = "box: the box leaves" if box is not None else "the margins leave"
            raise Problem("bad_parameter", f"{what} page {i + 1} less than "
                                           f"{MIN_SIDE_PT:g} point wide or high")
        page.obj.CropBox = pikepdf.Array(new)
        if params["mode"] == "media":
            page.obj.MediaBox = pikepdf.Array(new)
    return pdf_output(pdf, {"cropped": len(chosen)})
