"""Form fields: form-fields and fill-form, in-process; values read back with pikepdf and
pypdf, refusals named by field, flattening drawn into the page."""
from __future__ import annotations

import io
import json

import pikepdf
import pypdf
import pytest
from pikepdf import Array, Dictionary, Name, String

from notrace.operations import OPERATIONS
from notrace.operations.form_data import MAX_CHOSEN, MAX_FIELDS
from notrace.operations.spec import ParamError
from tests.pdfs import make_form_pdf, make_pdf


def make_fields_pdf() -> bytes:
    """make_form_pdf's text field "name", plus a required checkbox "agree", a choice
    "colour" (red, green) and a radio group "size" (S, M) whose buttons are its kids."""
    pdf = pikepdf.open(io.BytesIO(make_form_pdf()))
    page = pdf.pages[0].obj
    on = pdf.make_stream(b"0 0 1 rg 0 0 10 10 re f", Type=Name.XObject, Subtype=Name.Form,
                         BBox=[0, 0, 10, 10])
    off = pdf.make_stream(b"", Type=Name.XObject, Subtype=Name.Form, BBox=[0, 0, 10, 10])
    box = pdf.make_indirect(Dictionary(
        Type=Name.Annot, Subtype=Name.Widget, FT=Name.Btn, T=String("agree"), V=Name.Off,
        AS=Name.Off, Rect=[100, 500, 110, 510], P=page, Ff=2,
        AP=Dictionary(N=Dictionary(Yes=on, Off=off))))
    choice = pdf.make_indirect(Dictionary(
        Type=Name.Annot, Subtype=Name.Widget, FT=Name.Ch, T=String("colour"),
        Opt=Array([String("red"), String("green")]), V=String("red"), Ff=1 << 17,
        Rect=[100, 450, 200, 470], P=page, DA=String("/F1 10 Tf 0 g")))
    radio = pdf.make_indirect(Dictionary(FT=Name.Btn, T=String("size"), Ff=1 << 15,
                                         V=Name.Off, Kids=Array([])))
    kids = [pdf.make_indirect(Dictionary(
        Type=Name.Annot, Subtype=Name.Widget, Parent=radio, AS=Name.Off, P=page,
        Rect=[100 + 20 * k, 400, 110 + 20 * k, 410],
        AP=Dictionary(N=Dictionary({"/" + state: on, "/Off": off}))))
        for k, state in enumerate(("S", "M"))]
    radio.Kids = Array(kids)
    page.Annots = Array([*page.Annots, box, choice, *kids])
    pdf.Root.AcroForm.Fields = Array([*pdf.Root.AcroForm.Fields, box, choice, radio])
    pdf.Root.AcroForm.DA = String("/F1 10 Tf 0 g")
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


FIELDS = [
    {"name": "name", "type": "text", "value": "FIELDVALUE", "options": None,
     "required": False, "read_only": False},
    {"name": "agree", "type": "checkbox", "value": False, "options": ["Yes"],
     "required": True, "read_only": False},
    {"name": "colour", "type": "choice", "value": "red", "options": ["red", "green"],
     "required": False, "read_only": False, "multiselect": False},
    {"name": "size", "type": "radio", "value": None, "options": ["M", "S"],
     "required": False, "read_only": False},
]


def test_form_fields_lists_every_field(call):
    assert call("form-fields", [make_fields_pdf()]).json() == {"fields": FIELDS,
                                                               "truncated": False}
    assert call("form-fields", [make_pdf(1)]).json() == {"fields": [], "truncated": False}


def test_fill_form_values_read_back(call):
    values = {"name": "Ada (é)", "agree": True, "size": "M", "colour": "green"}
    answer = call("fill-form", [make_fields_pdf()], values=json.dumps(values))
    assert answer.report == {"filled": 4}
    got = {f["name"]: f["value"] for f in call("form-fields", [answer.file]).json()["fields"]}
    assert got == values
    fields = pypdf.PdfReader(io.BytesIO(answer.file)).get_fields()
    assert fields["name"]["/V"] == "Ada (é)" and fields["agree"]["/V"] == "/Yes"
    assert fields["size"]["/V"] == "/M" and fields["colour"]["/V"] == "green"
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        annots = pdf.pages[0].obj.Annots
        assert [str(a.AS) for a in annots[-2:]] == ["/Off", "/M"]  # the radio's buttons
        assert b"Ada" in annots[0].AP.N.read_bytes()
        assert b"FIELDVALUE" not in annots[0].AP.N.read_bytes()  # the old value is gone


def test_fill_form_then_flatten_draws_the_value(call):
    answer = call("fill-form", [make_fields_pdf()], values='{"name": "Ada"}', flatten="true")
    text = pypdf.PdfReader(io.BytesIO(answer.file)).pages[0].extract_text()
    assert "Ada" in text and "FIELDVALUE" not in text
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        assert "/AcroForm" not in pdf.Root
    assert answer.report["filled"] == 1 and answer.report["flattened"] >= 1


@pytest.mark.parametrize("values, detail", [
    ({"nope": "x"}, 'values: field "nope" is not in the form'),
    ({"size": "XL"}, 'values: field "size" has no option "XL"'),
    ({"colour": "blue"}, 'values: field "colour" has no option "blue"'),
    ({"agree": "yes"}, 'values: field "agree" is a checkbox field: its value is true or false'),
    ({"name": True}, 'values: field "name" is a text field: its value is text'),
])
def test_fill_form_refusals_name_the_field(call, values, detail):
    answer = call("fill-form", [make_fields_pdf()], values=json.dumps(values))
    assert (answer.problem, answer.manifest["detail"]) == ("bad_parameter", detail)


def test_fill_form_parameter_checks():
    op = OPERATIONS["fill-form"]
    for text, where in [("[]", "object"), ("{", "JSON"), ("[" * 20000, "longer"),
                        ('{"a": 1}', '"a"'), ('{"a": [1]}', '"a"'), ('{"a": [["x"]]}', '"a"'),
                        (json.dumps({"a": ["x"] * (MAX_CHOSEN + 1)}), '"a"'),
                        (json.dumps({str(k): "" for k in range(MAX_FIELDS + 1)}), "more than")]:
        with pytest.raises(ParamError) as info:
            op.validate({"values": text})
        assert info.value.param == "values" and where in info.value.message, text[:30]
    assert op.validate({"values": "{}"})["flatten"] is False


def test_fill_form_on_a_document_without_a_form(call):
    assert call("fill-form", [make_pdf(1)], values="{}").problem == "bad_parameter"


# -- multi-select list boxes -----------------------------------------------------------------

MULTI_SELECT = 1 << 21  # /Ff bit 22


def make_listbox_pdf() -> bytes:
    """make_fields_pdf's fields and a multi-select list box "toppings" whose options are
    (export, display) pairs, "ch" (cheese) selected, and a field-and-kid widget."""
    pdf = pikepdf.open(io.BytesIO(make_fields_pdf()))
    page = pdf.pages[0].obj
    box = pdf.make_indirect(Dictionary(
        FT=Name.Ch, T=String("toppings"), Ff=MULTI_SELECT, V=Array([String("ch")]),
        I=Array([0]), DA=String("/F1 0 Tf 0 g"),
        Opt=Array([Array([String(e), String(d)]) for e, d in
                   (("ch", "cheese"), ("ol", "olives"), ("mu", "mushrooms"))])))
    widget = pdf.make_indirect(Dictionary(Type=Name.Annot, Subtype=Name.Widget, Parent=box,
                                          Rect=[300, 400, 400, 460], P=page))
    box.Kids = Array([widget])
    page.Annots = Array([*page.Annots, widget])
    pdf.Root.AcroForm.Fields = Array([*pdf.Root.AcroForm.Fields, box])
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


TOPPINGS = {"name": "toppings", "type": "choice", "value": ["ch"], "options": ["ch", "ol", "mu"],
            "required": False, "read_only": False, "multiselect": True}


def test_form_fields_lists_a_multi_select_list_box_with_its_values():
    assert call_json("form-fields", make_listbox_pdf()) == {"fields": [*FIELDS, TOPPINGS],
                                                             "truncated": False}


def call_json(operation, data, **raw):
    from notrace.operations.child import run
    params = OPERATIONS[operation].validate({k: str(v) for k, v in raw.items()})
    answer = run([memoryview(data)], {"operation": operation, "params": params,
                                      "max_pages": 10})
    return json.loads(bytes(answer[1]))


def highlights(appearance: pikepdf.Stream) -> int:
    """How many lines the list box's appearance draws on a highlight."""
    ops = [(operands, str(op)) for operands, op in pikepdf.parse_content_stream(appearance)]
    return sum(1 for (_a, op), (_b, nxt) in zip(ops, ops[1:]) if op == "re" and nxt == "f")


@pytest.mark.parametrize("chosen, stored, indices", [
    (["mu", "ch"], ["ch", "mu"], [0, 2]),  # kept in the options' order
    (["ol"], "ol", [1]), ("ol", "ol", [1]),  # one: /V a text
    (["ol", "ol", "mu"], ["ol", "mu"], [1, 2]),
    ([], None, None)])  # none: no /V, no /I
def test_fill_form_selects_several_options_of_a_list_box(call, chosen, stored, indices):
    answer = call("fill-form", [make_listbox_pdf()], values=json.dumps({"toppings": chosen}))
    assert answer.report == {"filled": 1}
    expected = [] if stored is None else [stored] if isinstance(stored, str) else stored
    listed = {f["name"]: f for f in call("form-fields", [answer.file]).json()["fields"]}
    assert listed["toppings"]["value"] == expected and listed["colour"]["value"] == "red"
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        (box,) = [f for f in pdf.Root.AcroForm.Fields if f.get("/T") == "toppings"]
        value = box.get("/V")
        assert (None if value is None else str(value) if isinstance(value, String)
                else [str(v) for v in value]) == stored
        assert (None if "/I" not in box else [int(i) for i in box.I]) == indices
        appearance = box.Kids[0].AP.N
        assert highlights(appearance) == len(expected)
        assert all(name in appearance.read_bytes()
                   for name in (b"cheese", b"olives", b"mushrooms"))
    got = pypdf.PdfReader(io.BytesIO(answer.file)).get_fields()["toppings"].get("/V")
    assert (got if got is None or isinstance(got, str) else list(got)) == stored


def test_fill_form_list_box_refusals_name_the_field(call):
    for values, detail in [
            ({"toppings": ["ch", "xx"]}, 'values: field "toppings" has no option "xx"'),
            ({"toppings": "cheese"}, 'values: field "toppings" has no option "cheese"'),
            ({"colour": ["red"]}, 'values: field "colour" is a choice field: its value is one '
                                  "option (a list only in a multi-select list box)"),
            ({"name": ["x"]}, 'values: field "name" is a text field: its value is text')]:
        answer = call("fill-form", [make_listbox_pdf()], values=json.dumps(values))
        assert (answer.problem, answer.manifest["detail"]) == ("bad_parameter", detail)


def test_fill_form_list_box_then_flatten_draws_the_options(call):
    answer = call("fill-form", [make_listbox_pdf()], values='{"toppings": ["mu"]}',
                  flatten="true")
    text = pypdf.PdfReader(io.BytesIO(answer.file)).pages[0].extract_text()
    assert all(name in text for name in ("cheese", "olives", "mushrooms"))
    with pikepdf.open(io.BytesIO(answer.file)) as pdf:
        assert "/AcroForm" not in pdf.Root
