"""Declarations: Param parsing, Operation.validate, catalogue and schema (server side)."""
from __future__ import annotations

import importlib
import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from notrace.operations import OPERATIONS, REQUIRED, Inputs, Operation, Param, ParamError
from notrace.operations.problems import PROBLEMS, Problem

EXPECTED = {"merge", "split", "select", "delete", "rotate", "compress", "linearize", "info",
            "metadata", "sanitize", "encrypt", "decrypt", "watermark", "number", "flatten",
            "repair", "text", "images", "from-images", "crop", "overlay", "scale", "nup",
            "booklet", "remove-annotations", "remove-blank", "bookmarks", "set-bookmarks",
            "stamp-image", "form-fields", "fill-form", "attachments", "attach", "redact",
            "render",
            "thumbnail", "safe"}
#: ocr is declared where its extra is installed, as wherever the tests run (.ci/run);
#: test_ocr.py checks the registry without it.
EXPECTED = EXPECTED | {"ocr"}


def test_registry_is_complete_and_resolvable():
    assert set(OPERATIONS) == EXPECTED
    for name, op in OPERATIONS.items():
        assert op.name == name
        module, _, function = op.function.partition(":")
        assert module.startswith("notrace.operations.")
        assert callable(getattr(importlib.import_module(module), function))
        json.dumps(op.describe())  # the catalogue is JSON
        for p in op.params:
            json.dumps(p.json_schema())
            if not p.required and p.default is not None:
                assert p.parse(p.json_schema()["default"]) == p.default, (name, p.name)


def test_every_pdf_reader_takes_a_password():
    for op in OPERATIONS.values():
        if "application/pdf" in op.inputs.media_types:
            assert {"password", "current_password"} & {p.name for p in op.params}, op.name
            assert all(p.secret for p in op.params if "password" in p.name)


def test_from_images_and_merge_inputs():
    assert OPERATIONS["from-images"].inputs.media_types == ("image/jpeg", "image/png")
    assert OPERATIONS["merge"].inputs.min == 2


@pytest.mark.parametrize("op, raw, message", [
    ("rotate", {}, "angle: is required"),
    ("rotate", {"angle": "45"}, "angle: must be one of 90, 180, 270"),
    ("rotate", {"angle": "ninety"}, 'angle: "ninety" is not an integer'),
    ("rotate", {"angle": "90", "colour": "red"}, "colour: unknown parameter"),
    ("rotate", {"angle": "90", "pages": "5-x"}, 'pages: "5-x" is not a page or range'),
    ("split", {}, "ranges: give exactly one of ranges or every or max_mb or by_bookmarks"),
    ("split", {"ranges": "1", "every": "2"},
     "every: give exactly one of ranges or every or max_mb or by_bookmarks"),
    ("split", {"every": "0"}, "every: must be at least 1"),
    ("watermark", {"text": "x", "opacity": "1.5"}, "opacity: must be at most 1"),
    ("watermark", {"text": "x", "opacity": "nan"}, 'opacity: "nan" is not a number'),
    ("watermark", {"text": "x", "size": "1e3"}, 'size: "1e3" is not a number'),
    ("watermark", {"text": "x", "position": "middle"},
     'position: "middle" is not one of center, top, bottom, top-left, top-right, '
     'bottom-left, bottom-right'),
    ("watermark", {"text": "x" * 201}, "text: is longer than 200 characters"),
    ("watermark", {"text": "a\x00b"}, "text: contains a NUL character"),
    ("sanitize", {"remove_links": "maybe"}, 'remove_links: "maybe" is not a boolean (true or false)'),
    ("number", {"format": "{n} of {pages}"}, 'format: "{n} of {pages}" is not in the accepted form'),
    ("number", {"format": "{0.__class__}"}, 'format: "{0.__class__}" is not in the accepted form'),
    ("decrypt", {}, "password: is required"),
    ("decrypt", {"password": ""}, "password: must not be empty"),
    ("compress", {"image_dpi": "10"}, "image_dpi: must be at least 36"),
    ("crop", {"left": "-1"}, "left: must be at least 0"),
    ("crop", {"box": "0,0,100"}, 'box: "0,0,100" is not in the accepted form'),
    ("crop", {"box": "0,0,100,0.5"}, "box: leaves an empty box: each side must be at least "
                                     "1 point"),
    ("crop", {"box": "0,0,200000,10"}, "box: coordinates must be within -100000 and 100000 "
                                       "points"),
    ("crop", {"box": "0,0,100,100", "top": "5"}, "top: give either box or margins, not both"),
])
def test_validate_errors(op, raw, message):
    with pytest.raises(ParamError) as caught:
        OPERATIONS[op].validate(raw)
    assert str(caught.value) == message
    assert caught.value.param == message.split(":")[0]


def test_validate_fills_defaults_and_types():
    assert OPERATIONS["watermark"].validate({"text": "hi", "size": " 12.5 "}) == {
        "text": "hi", "size": 12.5, "opacity": 0.3, "angle": 45.0, "position": "center",
        "pages": "all", "password": None}
    assert OPERATIONS["select"].validate({"pages": " 3 , 1,1"})["pages"] == "3,1,1"
    assert OPERATIONS["sanitize"].validate({"remove_links": "YES"})["remove_links"] is True
    assert OPERATIONS["split"].validate({"every": "+2"})["every"] == 2
    assert OPERATIONS["crop"].validate({"box": "0,0, 10,10", "left": "0"}) == {
        "left": 0.0, "right": 0.0, "top": 0.0, "bottom": 0.0, "box": "0,0, 10,10",
        "mode": "crop", "pages": "all", "password": None}


def test_secrets_are_never_echoed():
    p = Param("password", "password", "pw", max_length=4)
    with pytest.raises(ParamError) as caught:
        p.parse("hunter2")
    assert "hunter2" not in str(caught.value)
    secret_int = Param("pin", "integer", "pin", secret=True)
    with pytest.raises(ParamError) as caught:
        secret_int.parse("12ab")
    assert "12ab" not in str(caught.value)


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError):
        Param("x", "colour", "?")
    with pytest.raises(ValueError):
        Param("x", "enum", "?")
    with pytest.raises(ValueError):
        Inputs(min=2, max=1)
    with pytest.raises(ValueError):
        Operation("x", "x", Inputs(), (Param("a", "string", "a"),), "pdf", "m:f", one_of=("a",))
    assert repr(REQUIRED) == "REQUIRED"


def test_problem_codes_are_closed():
    with pytest.raises(ValueError):
        Problem("oops")
    assert all(kind.code == code for code, kind in PROBLEMS.items())
    assert Problem("malformed").detail == PROBLEMS["malformed"].title


_NUMBER_PARAM = OPERATIONS["watermark"].param("size")
_INT_PARAM = OPERATIONS["split"].param("every")


# The same examples every run and no per-example deadline (a loaded machine is slow).
@settings(deadline=None, derandomize=True)
@given(st.text(max_size=24))
def test_number_and_integer_schemas_agree_with_parse(text):
    """Where the JSON Schema pattern matches, parsing fails only on bounds, and the reverse."""
    for p in (_NUMBER_PARAM, _INT_PARAM):
        matches = re.fullmatch(p.json_schema()["pattern"], text) is not None
        try:
            p.parse(text)
            parsed = True
        except ParamError as exc:
            parsed = False
            assert matches == ("must be" in exc.message), (text, exc.message)
        if parsed:
            assert matches


def test_every_declared_example_is_valid():
    """A Param's example is what docs and fuzzers send: it must pass its own parser."""
    examples = [(op, p) for op in OPERATIONS.values() for p in op.params if p.example is not None]
    assert examples
    for op, param in examples:
        param.parse(param.example)
