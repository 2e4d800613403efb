"""Outlines (bookmarks): read as data, written from data. Runs in the CHILD.

Reading walks the /Outlines dictionaries itself, iteratively: siblings by /Next and
children by /First, each item once (a cycle ends where it closes), at most MAX_READ
items and outline_data.MAX_DEPTH levels (more is cut and the answer says "truncated"). An item's
page comes from its /Dest or its GoTo action, through named destinations (the /Dests
dictionary or the /Names /Dests tree); one that leads to no page of the document has
page null. Writing makes items with a plain [page /Fit] destination and nothing else
(no action, no JavaScript, no style), with pikepdf's outline writer.
merge uses both: each input's outline, its pages moved by the pages before it.
"""
from __future__ import annotations

import pikepdf
from pikepdf import Name

from notrace.operations._common import Output, json_output, open_pdf, pdf_output
from notrace.operations.outline_data import MAX_DEPTH, MAX_TITLE, Item, parse_outline, to_json
from notrace.operations.problems import Problem

__all__ = ["MAX_READ", "read_outline", "write_outline", "bookmarks",
           "set_bookmarks"]

MAX_READ = 20000
#: pikepdf's outline reader depth, for set-bookmarks' append (deeper: malformed).
_APPEND_DEPTH = 32


class _Destinations:
    """Page index (0-based) of an outline item's destination, or None."""

    def __init__(self, pdf: pikepdf.Pdf) -> None:
        self.pdf = pdf
        self.index = {page.obj.objgen: i for i, page in enumerate(pdf.pages)}
        self._tree = None

    def _named(self, name):
        if isinstance(name, Name):
            dests = self.pdf.Root.get("/Dests")
            return dests.get(name) if isinstance(dests, pikepdf.Dictionary) else None
        names = self.pdf.Root.get("/Names")
        tree = names.get("/Dests") if isinstance(names, pikepdf.Dictionary) else None
        if not isinstance(tree, pikepdf.Dictionary):
            return None
        if self._tree is None:
            self._tree = pikepdf.NameTree(tree)
        try:
            return self._tree[str(name)]
        except (KeyError, pikepdf.PdfError, ValueError, TypeError):
            return None

    def page_of(self, item: pikepdf.Dictionary) -> int | None:
        dest = item.get("/Dest")
        action = item.get("/A")
        if dest is None and isinstance(action, pikepdf.Dictionary) and action.get("/S") == Name.GoTo:
            dest = action.get("/D")
        if isinstance(dest, (Name, pikepdf.String)):
            dest = self._named(dest)
        if isinstance(dest, pikepdf.Dictionary):
            dest = dest.get("/D")
        if isinstance(dest, pikepdf.Array) and len(dest) > 0:
            target = dest[0]
            if isinstance(target, pikepdf.Dictionary):
                return self.index.get(target.objgen)
        return None


def read_outline(pdf: pikepdf.Pdf, limit: int = MAX_READ) -> tuple[list[Item], bool]:
    """(items with 1-based pages, whether anything was cut). See the module doc."""
    root = pdf.Root.get("/Outlines")
    if not isinstance(root, pikepdf.Dictionary):
        return [], False
    dests = _Destinations(pdf)
    out: list[Item] = []
    stack = [(root.get("/First"), out, 1)]
    seen: set = set()
    count, truncated = 0, False
    while stack:
        node, into, depth = stack.pop()
        while isinstance(node, pikepdf.Dictionary):
            if node.is_indirect:
                if node.objgen in seen:
                    break
                seen.add(node.objgen)
            if count >= limit:
                return out, True
            count += 1
            title = node.get("/Title")
            text = str(title) if isinstance(title, pikepdf.String) else ""
            page = dests.page_of(node)
            into.append((text[:MAX_TITLE], None if page is None else page + 1, []))
            first = node.get("/First")
            if isinstance(first, pikepdf.Dictionary):
                if depth < MAX_DEPTH:
                    stack.append((first, into[-1][2], depth + 1))
                else:
                    truncated = True
            node = node.get("/Next")
    return out, truncated


def _items(items: list[Item]) -> list[pikepdf.OutlineItem]:
    """pikepdf items (recursive: the depth is at most outline_data.MAX_DEPTH)."""
    return [_item(title, page, children) for title, page, children in items]


def _item(title: str, page: int | None, children: list) -> pikepdf.OutlineItem:
    item = pikepdf.OutlineItem(title, None if page is None else page - 1)
    item.children.extend(_items(children))
    return item


def _check_pages(items: list[Item], count: int, param: str) -> None:
    stack = [items]
    while stack:
        for title, page, children in stack.pop():
            if page is not None and page > count:
                raise Problem("page_out_of_range", f"{param}: an item names page {page}; "
                                                   f"the document has {count}")
            stack.append(children)


def write_outline(pdf: pikepdf.Pdf, items: list[Item], *, replace: bool = True) -> None:
    """Replace the outline with `items`, or append them to the existing one."""
    if replace and "/Outlines" in pdf.Root:
        del pdf.Root["/Outlines"]
    with pdf.open_outline(max_depth=_APPEND_DEPTH) as outline:
        outline.root.extend(_items(items))


def bookmarks(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """The outline as JSON: {"bookmarks": [...], "truncated": bool}."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    items, truncated = read_outline(pdf)
    return json_output("bookmarks.json", {"bookmarks": to_json(items), "truncated": truncated})


def set_bookmarks(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Write the outline given as JSON (the form `bookmarks` answers)."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    items = parse_outline(params["bookmarks"])
    _check_pages(items, len(pdf.pages), "bookmarks")
    write_outline(pdf, items, replace=params["mode"] == "replace")
    return pdf_output(pdf)
