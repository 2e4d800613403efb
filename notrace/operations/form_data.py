"""fill-form's `values`: a JSON object of field name -> value, parsed and bounded once.

Pure Python: runs in the SERVER (the parameter check, at validation) and in the CHILD.
A value is text (text fields, a radio button's or a choice's option), true/false
(checkboxes), or a list of texts (the options of a multi-select list box, any number from
none). Bounds: MAX_TEXT characters of JSON (the size of a text part), MAX_FIELDS names,
MAX_VALUE characters a text, MAX_CHOSEN texts a list; json.loads' own recursion limit is
a ParamError like any bad text.
"""
from __future__ import annotations

import json

from notrace.operations.spec import ParamError, quote

__all__ = ["MAX_TEXT", "MAX_FIELDS", "MAX_VALUE", "MAX_CHOSEN", "parse_values"]

MAX_TEXT = 16000
MAX_FIELDS = 500
MAX_VALUE = 4000
MAX_CHOSEN = 500


def _text(item) -> bool:
    return isinstance(item, str) and len(item) <= MAX_VALUE


def parse_values(text: str, *, param: str = "values") -> dict:
    """JSON text -> {name: str | bool | list[str]}. Raises ParamError naming the field."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise ParamError(param, "is not JSON (or is nested too deeply)") from None
    if not isinstance(value, dict):
        raise ParamError(param, 'must be a JSON object: {"field name": value, ...}')
    if len(value) > MAX_FIELDS:
        raise ParamError(param, f"names more than {MAX_FIELDS} fields")
    for name, item in value.items():
        chosen = isinstance(item, list) and len(item) <= MAX_CHOSEN and all(map(_text, item))
        if not (isinstance(item, bool) or _text(item) or chosen):
            raise ParamError(param, f"field {quote(name)}: a value is text (at most "
                                    f"{MAX_VALUE} characters), true/false, or a list of at "
                                    f"most {MAX_CHOSEN} texts (a multi-select list box)")
    return value
