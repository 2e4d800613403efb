"""One form control per declared parameter, as HTML. Runs in the server at start-up.

Each Param becomes a labelled control whose type, bounds, allowed values and default come
from the declaration itself (notrace.operations.spec), with the declaration's description
as its help text. The control's `name` is the parameter's name; `data-default` holds the
default's TEXT form (the same text the JSON Schema gives, Param.json_schema()), so app.js
sends a parameter only when its value differs from it: an untouched parameter stays
absent and the server applies its own default (and `one_of` counts only what is given).
Secrets are password inputs (never autocompleted) and go in the multipart body, never in
the URL. An optional text parameter for which an empty value means something other than
absence (the declaration accepts "" and has no default: metadata's "an empty value
deletes it") also gets a checkbox that sends it empty.
"""
from __future__ import annotations

from html import escape

from notrace.operations.spec import Operation, Param, ParamError

__all__ = ["control", "control_id"]


def control_id(op: Operation, param: Param) -> str:
    return f"p-{op.name}-{param.name}"


def _attrs(**attrs: object) -> str:
    """HTML attributes; True is a bare attribute, None/False are left out."""
    out = []
    for key, value in attrs.items():
        name = key.rstrip("_").replace("_", "-")
        if value is True:
            out.append(f" {name}")
        elif value is not None and value is not False:
            out.append(f' {name}="{escape(str(value))}"')
    return "".join(out)


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _select(ident: str, common: dict, choices, default: str | None, required: bool) -> str:
    options = []
    if required:
        options.append('<option value="" disabled selected>Choose…</option>')
    elif default is None:
        options.append('<option value="">(not set)</option>')
    for choice in choices:
        text = str(choice)
        options.append(f"<option{_attrs(value=text, selected=text == default)}>"
                       f"{escape(text)}</option>")
    return f"<select{_attrs(id=ident, **common)}>{''.join(options)}</select>"


def _input(param: Param, ident: str, common: dict, default: str | None) -> str:
    kind = param.kind
    if kind == "boolean":
        attrs = dict(type="checkbox", checked=default == "true")
    elif kind in ("integer", "number"):
        attrs = dict(type="number", value=default,
                     step="1" if kind == "integer" else "any",
                     min=_number(param.minimum), max=_number(param.maximum))
    elif kind == "password":
        attrs = dict(type="password", maxlength=param.max_length, autocomplete="off")
    else:  # string, pages, ranges: text the server parses (and explains when wrong)
        attrs = dict(type="text", value=default, maxlength=param.max_length,
                     autocomplete="off")
    if kind != "boolean":
        attrs["spellcheck"] = "false"
    return f"<input{_attrs(id=ident, **attrs, **common)}>"


def _empty_is_a_value(param: Param) -> bool:
    """Whether "" is a value of its own for `param` (accepted, and not its default)."""
    if param.kind != "string" or param.default is not None:
        return False
    try:
        param.parse("")
    except ParamError:
        return False
    return True


def _empty_switch(ident: str, param: Param) -> str:
    label = escape(f"Send {param.name.replace('_', ' ')} empty")
    return (f'<div class="check empty">'
            f'<input{_attrs(type="checkbox", id=f"{ident}-empty", data_empty_for=ident)}>'
            f'<label for="{ident}-empty">{label}</label></div>')


def control(op: Operation, param: Param) -> str:
    """The labelled control of `param`, with its help text."""
    ident = control_id(op, param)
    schema = param.json_schema()
    default = schema.get("default")  # its text form; absent when there is none
    help_id = f"{ident}-help"
    common = {"name": param.name, "data_default": default if default is not None else "",
              "data_secret": "true" if param.secret else None,
              "required": param.required and param.kind != "boolean",
              "aria_describedby": help_id}
    if param.choices is not None:
        widget = _select(ident, common, param.choices, default, param.required)
    else:
        widget = _input(param, ident, common, default)
    hints = []
    if param.required:
        hints.append("Required.")
    elif default is None:
        hints.append("Optional.")
    if param.kind in ("integer", "number") and param.choices is None:
        if param.minimum is not None and param.maximum is not None:
            hints.append(f"From {_number(param.minimum)} to {_number(param.maximum)}.")
    label = escape(param.name.replace("_", " "))
    kind_class = "check" if param.kind == "boolean" else "field"
    help_text = escape(f"{param.description} {' '.join(hints)}".strip())
    if param.kind == "boolean":
        return (f'<div class="{kind_class}">{widget}<label for="{ident}">{label}</label>'
                f'<p class="help" id="{help_id}">{help_text}</p></div>')
    switch = _empty_switch(ident, param) if _empty_is_a_value(param) else ""
    return (f'<div class="{kind_class}"><label for="{ident}">{label}</label>{widget}'
            f'{switch}<p class="help" id="{help_id}">{help_text}</p></div>')
