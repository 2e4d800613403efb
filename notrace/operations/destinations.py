"""Explicit destinations ([page /XYZ left top zoom], [page /FitH top]...) of a document,
each once, and how one moves with its page's content. Runs in the CHILD.

Where they are: links' /Dest, GoTo actions (/A /D) of annotations, outline items (/Dest,
/A /D), named destinations (the /Dests dictionary and the /Names /Dests tree, an array
or a dictionary with /D), and the catalog's /OpenAction. A name or string destination
is left alone: the named destination it names is moved instead, once. Remote (GoToR)
and embedded (GoToE) destinations name pages of other files and are not ours to move.
"""
from __future__ import annotations

import math
from typing import Iterator

import pikepdf
from pikepdf import Matrix, Name

__all__ = ["explicit_destinations", "move_destination"]

#: Each destination type's operands after the type: x or y coordinates, or the zoom.
_OPERANDS = {"/XYZ": "xyz", "/FitH": "y", "/FitBH": "y", "/FitV": "x", "/FitBV": "x",
             "/FitR": "xyxy", "/Fit": "", "/FitB": ""}


def _target(holder: pikepdf.Dictionary):
    """The destination of a link, outline item or named destination's dictionary."""
    dest = holder.get("/Dest")
    action = holder.get("/A")
    if dest is None and isinstance(action, pikepdf.Dictionary) and action.get("/S") == Name.GoTo:
        dest = action.get("/D")
    if dest is None:  # a named destination's dictionary form: << /D [...] >>
        dest = holder.get("/D")
    return dest


def _holders(pdf: pikepdf.Pdf) -> Iterator:
    """Every object that may hold an explicit destination (a dictionary or the array)."""
    for page in pdf.pages:
        annots = page.obj.get("/Annots")
        if isinstance(annots, pikepdf.Array):
            yield from annots
    outlines = pdf.Root.get("/Outlines")
    if isinstance(outlines, pikepdf.Dictionary):
        stack, seen = [outlines.get("/First")], set()
        while stack:  # children by /First, siblings by /Next; a cycle ends where it closes
            item = stack.pop()
            if not isinstance(item, pikepdf.Dictionary) or item.objgen in seen:
                continue
            if item.is_indirect:
                seen.add(item.objgen)
            yield item
            stack += [item.get("/Next"), item.get("/First")]
    dests = pdf.Root.get("/Dests")
    if isinstance(dests, pikepdf.Dictionary):
        yield from (dests.get(key) for key in dests.keys())
    names = pdf.Root.get("/Names")
    tree = names.get("/Dests") if isinstance(names, pikepdf.Dictionary) else None
    if isinstance(tree, pikepdf.Dictionary):
        yield from (value for _name, value in pikepdf.NameTree(tree).items())
    yield pdf.Root.get("/OpenAction")


def explicit_destinations(pdf: pikepdf.Pdf) -> Iterator[pikepdf.Array]:
    """Each explicit destination array once (one that several holders share, too);
    changing one in place changes it in the document."""
    seen: set = set()
    for holder in _holders(pdf):
        if isinstance(holder, pikepdf.Dictionary):
            if holder.is_indirect and ("holder", holder.objgen) in seen:
                continue  # an annotation on two pages, a shared named destination
            if holder.is_indirect:
                seen.add(("holder", holder.objgen))
            dest = _target(holder)
        else:
            dest = holder
        if isinstance(dest, pikepdf.Dictionary):  # a named destination's << /D [...] >>
            dest = dest.get("/D")
        if not isinstance(dest, pikepdf.Array) or len(dest) < 2:
            continue
        if dest.is_indirect:
            if dest.objgen in seen:
                continue
            seen.add(dest.objgen)
        yield dest


def _number(value) -> float | None:
    """An operand as a number (pikepdf gives int or Decimal); None for null and others."""
    if value is None or isinstance(value, (bool, str, bytes, pikepdf.Object)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def move_destination(dest: pikepdf.Array, m: Matrix) -> None:
    """Move `dest`'s coordinates through `m` (scale and translation only, as scale's
    matrices are) and divide its zoom by the scale, so the view shows what it showed, at
    the same size on screen. null coordinates and a zoom of null or 0 mean "as it is" to
    a viewer and stay so; an unknown type is left alone."""
    layout = _OPERANDS.get(str(dest[1])) if isinstance(dest[1], Name) else None
    if layout is None:
        return
    factor = math.sqrt(abs(m.a * m.d))  # stretch scales each side by its own factor
    for k, role in enumerate(layout, start=2):
        if k >= len(dest):
            break
        value = _number(dest[k])
        if value is None:
            continue
        if role == "x":
            dest[k] = m.a * value + m.e
        elif role == "y":
            dest[k] = m.d * value + m.f
        elif value > 0:
            dest[k] = value / factor
