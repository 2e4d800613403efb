"""Things taken out of pages: remove-annotations, remove-blank. Runs in the CHILD.

remove-annotations edits in place: annotations leave the pages' /Annots, and removed
widgets leave the form's field tree too (a field left with no widget is dropped), so no
field points at an annotation no page shows.
remove-blank builds a new document of the pages kept (as delete does: see pagework).
A page is blank when nothing in its content, or in the form XObjects it draws, shows
text, an image or a painted path or shading, and it has no annotation but links and
popups. What cannot be read is not called blank: a page is only dropped on evidence.
"""
from __future__ import annotations

import pikepdf
from pikepdf import Name

from notrace.operations._common import Output, open_pdf, pdf_output
from notrace.operations.pagework import assemble
from notrace.operations.pages import parse_pages
from notrace.operations.problems import Problem

__all__ = ["remove_annotations", "remove_blank", "draws_something", "MAX_FIELD_DEPTH"]

#: Operators that paint: text showing, path painting (not `n`), shadings, inline images.
PAINTING = frozenset(["Tj", "TJ", "'", '"', "S", "s", "f", "F", "f*", "B", "B*", "b", "b*",
                      "sh", "INLINE IMAGE"])
#: Form XObjects inside form XObjects deeper than this are taken as drawing something.
MAX_FORM_DEPTH = 12
#: Field tree levels walked when removing widgets (deeper ones are left as they are).
MAX_FIELD_DEPTH = 32
_INVISIBLE = ("/Link", "/Popup")  # annotations that do not make a page non-blank


def _subtype(annot) -> str:
    value = annot.get("/Subtype") if isinstance(annot, pikepdf.Dictionary) else None
    return str(value) if isinstance(value, Name) else "?"


def _prune_fields(pdf: pikepdf.Pdf, removed: set) -> int:
    """Take the removed widgets (objgens) out of the AcroForm field tree; drop fields
    left without widgets. Returns the number of fields dropped. Iterative and bounded."""
    form = pdf.Root.get("/AcroForm")
    if not isinstance(form, pikepdf.Dictionary) or not isinstance(form.get("/Fields"), pikepdf.Array):
        return 0
    dropped = 0
    # Post-order over (array holding the kids, depth): children first, then the parent.
    order, stack, seen = [], [(form.Fields, 0)], set()
    while stack:
        kids, depth = stack.pop()
        order.append(kids)
        for kid in kids:
            if (isinstance(kid, pikepdf.Dictionary) and depth < MAX_FIELD_DEPTH
                    and isinstance(kid.get("/Kids"), pikepdf.Array)
                    and kid.objgen not in seen):
                seen.add(kid.objgen)
                stack.append((kid.Kids, depth + 1))
    for kids in reversed(order):
        keep = []
        for kid in kids:
            gone = isinstance(kid, pikepdf.Dictionary) and (
                kid.objgen in removed or (isinstance(kid.get("/Kids"), pikepdf.Array)
                                          and len(kid.Kids) == 0))
            if gone:
                dropped += 1
            else:
                keep.append(kid)
        if len(keep) != len(kids):
            kids[:] = keep  # in place: the array object stays where it is referenced
    return dropped


def remove_annotations(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Remove the annotations of the named subtypes (`types`, any case), or every
    annotation but links, from the selected pages."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    chosen = sorted(parse_pages(params["pages"]).resolve_set(len(pdf.pages)))
    named = None
    if params["types"] is not None:
        named = {t.strip().lower() for t in params["types"].split(",")}
    counts: dict[str, int] = {}
    widgets: set = set()
    pages = list(pdf.pages)  # list once: pdf.pages[i] copies every page (see pagework)
    for i in chosen:
        page = pages[i].obj
        annots = page.get("/Annots")
        if not isinstance(annots, pikepdf.Array):
            continue
        keep = []
        for annot in annots:
            kind = _subtype(annot)
            wanted = kind != "/Link" if named is None else kind[1:].lower() in named
            if not wanted:
                keep.append(annot)
                continue
            counts[kind[1:]] = counts.get(kind[1:], 0) + 1
            if kind == "/Widget" and annot.is_indirect:
                widgets.add(annot.objgen)
        if keep:
            page.Annots = pikepdf.Array(keep)
        else:
            del page["/Annots"]
    fields = _prune_fields(pdf, widgets) if widgets else 0
    return pdf_output(pdf, {"removed": dict(sorted(counts.items())),
                                      "fields_removed": fields})


def _paints(stream, resources, depth: int, seen: set) -> bool:
    """Whether a content stream (a page, or a form XObject) paints anything."""
    for operands, operator in pikepdf.parse_content_stream(stream):
        op = str(operator)
        if op in PAINTING:
            return True
        if op != "Do" or not operands:
            continue
        xobjects = resources.get("/XObject") if isinstance(resources, pikepdf.Dictionary) else None
        target = xobjects.get(operands[0]) if isinstance(xobjects, pikepdf.Dictionary) else None
        if not isinstance(target, pikepdf.Stream):
            continue  # a name that draws nothing (viewers skip it too)
        if target.get("/Subtype") != Name.Form:
            return True  # an image (or something a viewer may draw)
        if depth >= MAX_FORM_DEPTH:
            return True
        if target.objgen in seen and target.is_indirect:
            continue  # drawn already, found blank
        seen.add(target.objgen)
        inner = target.get("/Resources", resources)
        if _paints(target, inner, depth + 1, seen):
            return True
    return False


def draws_something(page: pikepdf.Page) -> bool:
    """False only when the page shows nothing (see the module doc); True on doubt."""
    annots = page.obj.get("/Annots")
    if isinstance(annots, pikepdf.Array) and any(_subtype(a) not in _INVISIBLE for a in annots):
        return True
    if "/Contents" not in page.obj:
        return False
    try:
        return _paints(page, page.obj.get("/Resources"), 0, set())
    except (pikepdf.PdfError, ValueError, TypeError):  # unreadable content: keep the page
        return True


def remove_blank(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Drop the blank pages among the selected ones; refuse to drop every page."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    count = len(pdf.pages)
    chosen = parse_pages(params["pages"]).resolve_set(count)
    pages = list(pdf.pages)  # list once: pdf.pages[i] copies every page (see pagework)
    blank = {i for i in sorted(chosen) if not draws_something(pages[i])}
    if len(blank) == count:
        raise Problem("bad_parameter", "every page is blank: nothing would be left")
    kept = [i for i in range(count) if i not in blank]
    data = assemble((pages[i] for i in kept), pdf.pdf_version)
    return pdf_output(data, {"removed": [i + 1 for i in sorted(blank)], "kept": len(kept)})
