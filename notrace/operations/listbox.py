"""A list box's selection and its appearance: what fill-form writes for a multi-select
choice field (qpdf's appearance generator, which pikepdf.form uses, draws one value).
Runs in the CHILD.

The field gets /V (one text, or an array of them, in the order of the options; none
selected: no /V) and /I, the sorted indices of the selected options (PDF 32000 12.7.4.4:
required when several are selected). Each widget gets a new normal appearance: the
options one per line from /TI (the top one shown), the selected ones on a highlight,
with the field's /DA font and colour and the form's resources; text is written in the
font's single-byte encoding (characters outside Latin-1 print as ?), as qpdf does.
"""
from __future__ import annotations

import pikepdf
from pikepdf import Name, Operator, String

__all__ = ["select_options", "draw_list"]

#: Acrobat's highlight of a selected line, and the size used when /DA's is 0 (auto).
_HIGHLIGHT = (0.6, 0.75, 0.85)
_AUTO_SIZE = 12.0
_LINE = 1.15  # line height / font size
_PAD = 2.0


def select_options(field: pikepdf.Dictionary, indices: list[int],
                   exports: list[str]) -> None:
    """Set the terminal field's /V and /I to the options at `indices` (sorted)."""
    if not indices:
        for key in ("/V", "/I"):
            if key in field:
                del field[key]
        return
    values = [String(exports[i]) for i in indices]
    field.V = values[0] if len(values) == 1 else pikepdf.Array(values)
    field.I = pikepdf.Array(indices)


def _default_appearance(pdf: pikepdf.Pdf, field: pikepdf.Dictionary) -> list:
    """The /DA operators (inherited, else the form's), the font size made explicit."""
    node, da, depth = field, None, 0
    while isinstance(node, pikepdf.Dictionary) and da is None and depth < 32:
        da, node, depth = node.get("/DA"), node.get("/Parent"), depth + 1
    if da is None:
        da = pdf.Root.AcroForm.get("/DA")
    if not isinstance(da, pikepdf.String):
        return []
    ops = []
    for operands, operator in pikepdf.parse_content_stream(pdf.make_stream(bytes(da))):
        if operator == Operator("Tf") and len(operands) == 2:
            size = float(operands[1]) if float(operands[1]) > 0 else _AUTO_SIZE
            operands = [operands[0], size]
        ops.append((list(operands), operator))
    return ops


def _size(ops: list) -> float:
    for operands, operator in ops:
        if operator == Operator("Tf"):
            return float(operands[1])
    return _AUTO_SIZE


def draw_list(pdf: pikepdf.Pdf, field: pikepdf.Dictionary, widgets: list,
              displays: list[str], selected: set[int]) -> None:
    """A new normal appearance for each widget of the list box."""
    da = _default_appearance(pdf, field)
    size = _size(da)
    line = size * _LINE
    top_index = field.get("/TI", 0)
    first = top_index if isinstance(top_index, int) and 0 <= top_index < len(displays) else 0
    shared = pdf.Root.AcroForm.get("/DR")
    for widget in widgets:
        rect = widget.get("/Rect")
        if not isinstance(rect, pikepdf.Array) or len(rect) != 4:
            continue
        x0, y0, x1, y1 = (float(v) for v in rect)
        w, h = abs(x1 - x0), abs(y1 - y0)
        ops: list = [([], Operator("q")), ([1, 1, max(w - 2, 0), max(h - 2, 0)], Operator("re")),
                     ([], Operator("W")), ([], Operator("n"))]
        rows = list(range(first, len(displays)))[:max(1, int((h - _PAD) // line) + 1)]
        for row, k in enumerate(rows):
            if k in selected:
                ops += [(list(_HIGHLIGHT), Operator("rg")),
                        ([1, h - _PAD / 2 - (row + 1) * line, max(w - 2, 0), line],
                         Operator("re")), ([], Operator("f"))]
        ops += [([], Operator("BT")), *da]
        for row, k in enumerate(rows):
            baseline = h - _PAD / 2 - (row + 1) * line + (line - size) / 2 + size * 0.22
            text = displays[k].encode("latin-1", "replace")
            ops += [([1, 0, 0, 1, _PAD, baseline], Operator("Tm")), ([String(text)], Operator("Tj"))]
        ops += [([], Operator("ET")), ([], Operator("Q"))]
        content = b"/Tx BMC\n" + pikepdf.unparse_content_stream(ops) + b"\nEMC\n"
        widget.AP = pikepdf.Dictionary(N=pdf.make_stream(
            content, Type=Name.XObject, Subtype=Name.Form, BBox=[0, 0, w, h]))
        if isinstance(shared, pikepdf.Dictionary):
            widget.AP.N.Resources = shared
