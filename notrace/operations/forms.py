"""Form fields: form-fields (read) and fill-form (write). Runs in the CHILD.

Fields are those of the AcroForm, through pikepdf.form (qpdf's form helper: field names
fully qualified, inherited values resolved, loops in the field tree cut by qpdf). A
field is described by its kind (text, checkbox, radio, choice, button, signature), its
value, its options (a radio group's states, a choice's export values, a checkbox's on
state), and whether it is required or read-only; a choice field also by whether it is a
multi-select list box, whose value is then the list of its selected options. fill-form
sets the values given and generates text and choice appearances (pikepdf's default
generator; a multi-select list box's by listbox.py, which qpdf's does not draw); a name
the form lacks, a value of the wrong kind or a choice outside the options is a 400
naming the field. flatten=true then draws the fields into the pages as the flatten
operation does.
"""
from __future__ import annotations

import pikepdf
import pikepdf.form
from pikepdf import Name

from notrace.operations._common import OUR_BUGS, Output, json_output, open_pdf, pdf_output
from notrace.operations.flatten import flatten_document
from notrace.operations.form_data import parse_values
from notrace.operations.listbox import draw_list, select_options
from notrace.operations.problems import Problem
from notrace.operations.spec import quote

__all__ = ["MAX_LISTED", "form_fields", "fill_form"]

#: Fields listed at most (more: the answer says "truncated").
MAX_LISTED = 5000
_KINDS = {pikepdf.form.TextField: "text", pikepdf.form.CheckboxField: "checkbox",
          pikepdf.form.RadioButtonGroup: "radio", pikepdf.form.ChoiceField: "choice",
          pikepdf.form.PushbuttonField: "button", pikepdf.form.SignatureField: "signature"}


def _kind(field) -> str:
    return _KINDS.get(type(field), "other")


def _state(name) -> str | None:
    """A state name as text without its slash; None for /Off or no value."""
    if not isinstance(name, Name) or name == Name.Off:
        return None
    return str(name)[1:]


def _terminal(field) -> pikepdf.Dictionary:
    """The field dictionary that holds /V and /Opt: qpdf hands a field with one widget
    kid and no name of its own as that kid (pikepdf's options then come out empty)."""
    obj = field._field.obj
    for _ in range(32):
        parent = obj.get("/Parent")
        if "/T" in obj or not isinstance(parent, pikepdf.Dictionary):
            break
        obj = parent
    return obj


def _choices(field) -> list[tuple[str, str]]:
    """A choice field's options as (export value, display text): each /Opt entry is a
    text or an [export, display] pair."""
    out = []
    opt = _terminal(field).get("/Opt")
    for item in opt if isinstance(opt, pikepdf.Array) else ():
        if isinstance(item, pikepdf.Array) and len(item) == 2:
            out.append((str(item[0]), str(item[1])))
        elif isinstance(item, pikepdf.String):
            out.append((str(item), str(item)))
    return out


def _options(field, kind: str) -> list[str] | None:
    if kind == "radio":
        return sorted(s for s in (_state(n) for n in field.states) if s is not None)
    if kind == "choice":
        return [export for export, _display in _choices(field)]
    if kind == "checkbox":
        return [_state(field.on_value)]
    return None


def _chosen(field) -> list[str]:
    """A multi-select list box's selected values (its /V: one text or an array)."""
    value = field._field.value
    items = value if isinstance(value, pikepdf.Array) else [value]
    return [str(v) for v in items if isinstance(v, pikepdf.String)]


def _value(field, kind: str):
    if kind == "choice" and field.is_multiselect:
        return _chosen(field)
    if kind == "checkbox":
        return bool(field.checked)
    if kind == "radio":
        return _state(field.value)
    if kind in ("text", "choice"):
        value = field.value
        return None if value is None else str(value)
    return None


def _describe(name: str, field) -> dict:
    kind = _kind(field)
    entry = {"name": name, "type": kind, "value": None, "options": None,
             "required": False, "read_only": False}
    try:
        entry.update(value=_value(field, kind), options=_options(field, kind),
                     required=bool(field.is_required), read_only=bool(field.is_read_only))
        if kind == "choice":
            entry["multiselect"] = bool(field.is_multiselect)
    except (MemoryError, *OUR_BUGS):
        raise
    except Exception:  # noqa: BLE001  a damaged field: listed with what is known
        entry["type"] = "unreadable"
    return entry


def form_fields(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """{"fields": [...], "truncated": bool}: every field of the form, in its order."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    fields, truncated = [], False
    if "/AcroForm" in pdf.Root:
        for name, field in pikepdf.form.Form(pdf).items():
            if len(fields) >= MAX_LISTED:
                truncated = True
                break
            fields.append(_describe(str(name), field))
    return json_output("form-fields.json", {"fields": fields, "truncated": truncated})


def _refuse(name: str, why: str) -> Problem:
    return Problem("bad_parameter", f"values: field {quote(name)} {why}")


def _widgets(field) -> list:
    """The widget annotations of a terminal field: itself (merged) or its kids."""
    obj = field._field.obj
    if obj.get("/Subtype") == Name.Widget:
        return [obj]
    kids = obj.get("/Kids")
    return [k for k in kids if isinstance(k, pikepdf.Dictionary)] if isinstance(kids, pikepdf.Array) else []


def _blank_appearances(pdf: pikepdf.Pdf, field) -> None:
    """Empty the text field's appearances, with the form's resources: qpdf's generator
    replaces only what is marked /Tx BMC ... EMC and appends otherwise, so an old
    unmarked value would stay visible under the new one."""
    shared = pdf.Root.AcroForm.get("/DR")  # the form's fonts, which the /DA names
    for widget in _widgets(field):
        rect = widget.get("/Rect")
        if not isinstance(rect, pikepdf.Array) or len(rect) != 4:
            continue
        x0, y0, x1, y1 = (float(v) for v in rect)
        widget.AP = pikepdf.Dictionary(N=pdf.make_stream(
            b"/Tx BMC\nEMC\n", Type=Name.XObject, Subtype=Name.Form,
            BBox=[0, 0, abs(x1 - x0), abs(y1 - y0)]))
        if isinstance(shared, pikepdf.Dictionary):
            widget.AP.N.Resources = shared


def _select(pdf: pikepdf.Pdf, name: str, field, values: list[str]) -> None:
    """A multi-select list box: the options given (each one of its options), selected."""
    choices = _choices(field)
    exports = [export for export, _display in choices]
    for value in values:
        if value not in exports:
            raise _refuse(name, f"has no option {quote(value)}")
    indices = sorted({exports.index(value) for value in values})
    terminal = _terminal(field)
    select_options(terminal, indices, exports)
    widgets = _widgets(field)
    for widget in widgets:  # a kid's own /V would hide the field's (V is inherited)
        if widget.objgen != terminal.objgen:
            select_options(widget, [], exports)
    draw_list(pdf, terminal, widgets, [display for _export, display in choices],
              set(indices))


def _set(pdf: pikepdf.Pdf, name: str, field, value) -> None:
    kind = _kind(field)
    if kind == "choice" and field.is_multiselect and isinstance(value, (list, str)):
        _select(pdf, name, field, [value] if isinstance(value, str) else value)
    elif kind == "text" and isinstance(value, str):
        _blank_appearances(pdf, field)
        field.value = value
    elif kind == "checkbox" and isinstance(value, bool):
        field.checked = value
    elif kind == "radio" and isinstance(value, str):
        if value not in _options(field, kind):
            raise _refuse(name, f"has no option {quote(value)}")
        field.value = Name("/" + value)
    elif kind == "choice" and isinstance(value, str):
        if value not in _options(field, kind) and not field.allow_edit:
            raise _refuse(name, f"has no option {quote(value)}")
        field.value = value
    elif kind in ("text", "checkbox", "radio", "choice"):
        want = {"text": "text", "checkbox": "true or false", "radio": "one option's name",
                "choice": "one option (a list only in a multi-select list box)"}[kind]
        raise _refuse(name, f"is a {kind} field: its value is {want}")
    else:
        raise _refuse(name, f"is a {kind} field, which cannot be filled")


def fill_form(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Set the fields named in `values`; with `flatten`, burn the form into the pages."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    values = parse_values(params["values"])
    if "/AcroForm" not in pdf.Root:
        raise Problem("bad_parameter", "values: the document has no form")
    form = pikepdf.form.Form(pdf, pikepdf.form.DefaultAppearanceStreamGenerator)
    fields = {}
    for name, field in form.items():
        fields.setdefault(str(name), field)
    for name, value in values.items():
        field = fields.get(name)
        if field is None:
            raise _refuse(name, "is not in the form")
        _set(pdf, name, field, value)
    report: dict = {"filled": len(values)}
    if params["flatten"]:
        report.update(flatten_document(pdf))
    return pdf_output(pdf, report)
