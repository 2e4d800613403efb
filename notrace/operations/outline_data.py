"""The JSON form of an outline (bookmarks): parsed and bounded once, for both sides.

Pure Python: runs in the SERVER (set-bookmarks' parameter check, at validation) and in
the CHILD (the same parsing, then writing). An outline is a list of items
{"title": text, "page": 1-based number or null, "level": 1.., "children": [...]};
`bookmarks` answers {"bookmarks": [...], "truncated": bool}, `set-bookmarks` takes that
object or its list ("level" optional and, when given, the item's depth; "children"
optional). Bounds: MAX_TEXT characters of JSON (the
size of a text part), MAX_ITEMS items, MAX_DEPTH levels, MAX_TITLE characters a title.
Checking is iterative (no recursion on client data); json.loads' own recursion limit on
deep nesting is a ParamError like any bad text.
"""
from __future__ import annotations

import json

from notrace.operations.spec import ParamError

__all__ = ["MAX_TEXT", "MAX_ITEMS", "MAX_DEPTH", "MAX_TITLE", "Item", "parse_outline",
           "count_items", "to_json"]

MAX_TEXT = 16000
MAX_ITEMS = 2000
MAX_DEPTH = 16
MAX_TITLE = 500
_KEYS = {"title", "page", "level", "children"}

#: (title, page (1-based) or None, children)
Item = tuple[str, "int | None", list]


def parse_outline(text: str, *, param: str = "bookmarks") -> list[Item]:
    """JSON text -> items. Raises ParamError naming `param` and where it is wrong."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise ParamError(param, "is not JSON (or is nested too deeply)") from None
    if isinstance(value, dict) and "bookmarks" in value:  # the answer of `bookmarks`
        value = value["bookmarks"]
    out: list[Item] = []
    stack = [(value, out, 1, "")]
    count = 0
    while stack:
        items, into, depth, where = stack.pop()
        if not isinstance(items, list):
            raise ParamError(param, f"{where or 'the outline'} must be a list of items")
        if depth > MAX_DEPTH:
            raise ParamError(param, f"is deeper than {MAX_DEPTH} levels")
        for k, item in enumerate(items):
            path = f"{where}[{k}]"
            count += 1
            if count > MAX_ITEMS:
                raise ParamError(param, f"has more than {MAX_ITEMS} items")
            into.append(_item(item, depth, path, param))
            children = item.get("children", [])
            if children:
                stack.append((children, into[-1][2], depth + 1, f"{path}.children"))
            elif not isinstance(children, list):
                raise ParamError(param, f"{path}.children must be a list of items")
    return out


def _item(item, depth: int, path: str, param: str) -> Item:
    if not isinstance(item, dict):
        raise ParamError(param, f"{path} must be an object")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise ParamError(param, f"{path} has an unknown member (known: title, page, "
                                "level, children)")
    title = item.get("title")
    if not isinstance(title, str) or len(title) > MAX_TITLE:
        raise ParamError(param, f"{path}.title must be text of at most {MAX_TITLE} characters")
    page = item.get("page")
    if page is not None and (type(page) is not int or not 1 <= page <= 10**9):
        raise ParamError(param, f"{path}.page must be a page number (from 1) or null")
    level = item.get("level", depth)
    if type(level) is not int or level != depth:
        raise ParamError(param, f"{path}.level must be {depth}, its depth (or absent)")
    return title, page, []


def count_items(items: list[Item]) -> int:
    """How many items, at every level. Iterative."""
    count, stack = 0, [items]
    while stack:
        level = stack.pop()
        count += len(level)
        stack.extend(children for _title, _page, children in level)
    return count


def to_json(items: list[Item]) -> list[dict]:
    """Items -> the JSON form, every member present. Iterative."""
    out: list[dict] = []
    stack = [(items, out, 1)]
    while stack:
        source, into, level = stack.pop()
        for title, page, children in source:
            entry = {"title": title, "page": page, "level": level, "children": []}
            into.append(entry)
            if children:
                stack.append((children, entry["children"], level + 1))
    return out
