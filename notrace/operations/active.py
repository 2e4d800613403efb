"""Finding active content (actions, JavaScript, embedded files, form fields) in a
document. Runs in the CHILD; shared by `info` (reports) and `sanitize` (removes).

Every walk is bounded (visited sets and a node budget): hostile files have cyclic field
trees, outlines whose /Next is themselves, and action chains that loop.
"""
from __future__ import annotations

from typing import Iterator

import pikepdf

#: Upper bound on nodes visited by one walk (fields, outline items, name-tree nodes,
#: chained actions); beyond it the rest of a hostile structure is ignored.
WALK_BUDGET = 200_000
#: Action types sanitize removes: they run code, open or fetch other files, or send data.
#: GoTo and URI are ordinary navigation (links: see sanitize's remove_links).
DANGEROUS_ACTIONS = frozenset({
    "/JavaScript", "/Launch", "/ImportData", "/SubmitForm", "/GoToE", "/GoToR",
    "/Rendition", "/RichMediaExecute", "/Sound", "/Movie", "/Hide"})
#: Annotations that carry embedded files or media.
FILE_ANNOTATIONS = frozenset({"/FileAttachment", "/RichMedia"})


class _Visited:
    """Visited set over indirect objects (by object number). Direct objects cannot form
    cycles, and pikepdf makes a new wrapper per access (so id() means nothing): they are
    never "seen", only counted against the budget."""

    def __init__(self) -> None:
        self.indirect: set[tuple[int, int]] = set()
        self.count = 0

    def first_time(self, obj) -> bool:
        """True (and remember it) unless obj was visited or the budget is spent."""
        if self.count >= WALK_BUDGET:
            return False
        if obj.is_indirect:
            if obj.objgen in self.indirect:
                return False
            self.indirect.add(obj.objgen)
        self.count += 1
        return True


def _dict(obj) -> pikepdf.Dictionary | None:
    """obj as a dictionary (a stream's dictionary counts), else None."""
    if isinstance(obj, (pikepdf.Dictionary, pikepdf.Stream)):
        return obj
    return None


def annotations(pdf: pikepdf.Pdf) -> Iterator[tuple[pikepdf.Page, pikepdf.Dictionary]]:
    """(page, annotation dictionary) for every annotation of every page."""
    for page in pdf.pages:
        obj = page.obj
        annots = obj.get("/Annots") if "/Annots" in obj else None  # see _common.page_box
        if isinstance(annots, pikepdf.Array):
            for annot in annots:
                if _dict(annot) is not None:
                    yield page, annot


def fields(pdf: pikepdf.Pdf) -> Iterator[pikepdf.Dictionary]:
    """Every node of the AcroForm field tree (fields and their widget kids)."""
    acroform = _dict(pdf.Root.get("/AcroForm"))
    top = acroform.get("/Fields") if acroform is not None else None
    if not isinstance(top, pikepdf.Array):
        return
    stack, seen = list(top), _Visited()
    while stack:
        node = _dict(stack.pop())
        if node is None or not seen.first_time(node):
            continue
        yield node
        kids = node.get("/Kids")
        if isinstance(kids, pikepdf.Array):
            stack.extend(kids)


def outline_items(pdf: pikepdf.Pdf) -> Iterator[pikepdf.Dictionary]:
    """Every outline (bookmark) item, following /First and /Next."""
    root = _dict(pdf.Root.get("/Outlines"))
    if root is None:
        return
    stack, seen = [root.get("/First")], _Visited()
    while stack:
        node = _dict(stack.pop())
        if node is None or not seen.first_time(node):
            continue
        yield node
        stack.extend((node.get("/Next"), node.get("/First")))


def action_types(action) -> set[str]:
    """The /S names of an action and of every action chained after it with /Next.
    A Rendition carrying /JS counts as JavaScript too."""
    types: set[str] = set()
    stack, seen = [action], _Visited()
    while stack:
        node = stack.pop()
        if isinstance(node, pikepdf.Array):
            if seen.first_time(node):
                stack.extend(node)
            continue
        node = _dict(node)
        if node is None or not seen.first_time(node):
            continue
        kind = node.get("/S")
        if isinstance(kind, pikepdf.Name):
            types.add(str(kind))
        if "/JS" in node:
            types.add("/JavaScript")
        if "/Next" in node:
            stack.append(node.get("/Next"))
    return types


def action_holders(pdf: pikepdf.Pdf) -> Iterator[tuple[str, pikepdf.Dictionary]]:
    """(where, dictionary) for everything that may carry /A, /AA or /OpenAction: the
    catalog, pages, annotations, form fields, outline items. Each dictionary once."""
    seen = _Visited()

    def once(where: str, node) -> Iterator[tuple[str, pikepdf.Dictionary]]:
        node = _dict(node)
        if node is not None and seen.first_time(node):
            yield where, node

    yield from once("catalog", pdf.Root)
    for page in pdf.pages:
        yield from once("page", page.obj)
    for _page, annot in annotations(pdf):
        yield from once("annotation", annot)
    for field in fields(pdf):
        yield from once("field", field)
    for item in outline_items(pdf):
        yield from once("outline", item)


def name_tree_size(node) -> int:
    """Number of entries in a name tree (/Names pairs, through /Kids)."""
    count, stack, seen = 0, [node], _Visited()
    while stack:
        item = _dict(stack.pop())
        if item is None or not seen.first_time(item):
            continue
        names = item.get("/Names")
        if isinstance(names, pikepdf.Array):
            count += len(names) // 2
        kids = item.get("/Kids")
        if isinstance(kids, pikepdf.Array):
            stack.extend(kids)
    return count


def names_entry(pdf: pikepdf.Pdf, key: str):
    """The catalog's /Names/<key> name tree, or None."""
    names = _dict(pdf.Root.get("/Names"))
    return names.get(key) if names is not None else None


def xfa_present(pdf: pikepdf.Pdf) -> bool:
    acroform = _dict(pdf.Root.get("/AcroForm"))
    return acroform is not None and "/XFA" in acroform
