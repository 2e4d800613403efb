"""The pipeline in-process: the child's steps (notrace/operations/pipeline.py through
child.run) and the server's validation (notrace/pipeline.py), without HTTP or sandbox.
The corpus runs through a three-step pipeline in the confined-like worker."""
from __future__ import annotations

import io
import json

import pikepdf
import pytest

from notrace import pipeline
from notrace.operations import OPERATIONS
from notrace.operations._common import PDF, OpenDocument, OutputFile, open_pdf
from notrace.operations.child import FUNCTIONS, run
from notrace.operations.pipeline import TAKES_OPEN, run_steps
from notrace.operations.problems import Problem
from notrace.problems import HttpProblem
from tests.operations.test_corpus import check, corpus_files, run_worker
from tests.operations.test_forms import make_fields_pdf
from tests.pdfs import make_encrypted_pdf, make_image_png, make_pdf, open_any, page_texts

pytestmark = pytest.mark.timeout(60)
MAX_PAGES = 1000


def run_pipeline(steps: list, inputs: list[bytes]) -> tuple[dict, bytes | None]:
    """(manifest, body) of the steps run in-process, validated as the server does."""
    job = pipeline.parse(json.dumps(steps), len(inputs)).job_params(MAX_PAGES)
    raw = run([memoryview(i) for i in inputs], job)
    return json.loads(raw[0]), (bytes(raw[1]) if len(raw) > 1 else None)


def run_one(operation: str, inputs: list[bytes], params: dict) -> tuple[dict, bytes | None]:
    validated = OPERATIONS[operation].validate({k: str(v) for k, v in params.items()})
    raw = run([memoryview(i) for i in inputs],
              {"operation": operation, "params": validated, "max_pages": MAX_PAGES})
    return json.loads(raw[0]), (bytes(raw[1]) if len(raw) > 1 else None)


def chain(steps: list, inputs: list[bytes]) -> tuple[list[dict], bytes]:
    """The same steps as single operations, each on the answer of the one before."""
    manifests = []
    for step in steps:
        manifest, body = run_one(step["operation"], inputs, step.get("params", {}))
        assert "problem" not in manifest, manifest
        manifests.append(manifest)
        inputs = [body]
    return manifests, body


def rotations(data: bytes, password: str = "") -> list[int]:
    with open_any(data, password) as pdf:
        return [int(page.obj.get("/Rotate", 0)) for page in pdf.pages]


def test_result_equals_the_chain_of_single_operations():
    doc = make_pdf(4, "page {n} of the chain")
    steps = [{"operation": "sanitize"}, {"operation": "rotate", "params": {"angle": 90, "pages": "odd"}},
             {"operation": "delete", "params": {"pages": "2"}}, {"operation": "compress"},
             {"operation": "encrypt", "params": {"password": "pw", "allow_print": False}}]
    manifest, body = run_pipeline(steps, [doc])
    singles, expected = chain(steps, [doc])
    assert manifest["media_type"] == "application/pdf"
    assert page_texts(body, "pw") == page_texts(expected, "pw")
    assert rotations(body, "pw") == rotations(expected, "pw") == [90, 90, 0]
    with pikepdf.open(io.BytesIO(body), password="pw") as pdf:
        assert pdf.is_encrypted and pdf.encryption.R == 6
        assert not pdf.allow.print_highres
    with pytest.raises(pikepdf.PasswordError):
        pikepdf.open(io.BytesIO(body))
    # each step's report, in order, as the single operations report it (compress's
    # sizes aside: its input is the same bytes, so even those agree)
    assert [s["operation"] for s in manifest["report"]["steps"]] == [s["operation"] for s in steps]
    assert [s["report"] for s in manifest["report"]["steps"]] == [m["report"] for m in singles]


def handed_inputs(steps: list, inputs: list[bytes]) -> list[str]:
    """What each step's function was given as its first input: "bytes" (a memoryview of
    a saved answer, or of the upload) or "open" (the document the step before left
    open), from run_steps with each function wrapped to look."""
    seen: list[str] = []

    def looking(function):
        def look(given, params, *, max_pages):
            seen.append("open" if isinstance(given[0], OpenDocument) else "bytes")
            return function(given, params, max_pages=max_pages)
        return look

    job = pipeline.parse(json.dumps(steps), len(inputs)).job_params(MAX_PAGES)
    run_steps([memoryview(i) for i in inputs], job, failed={},
              functions={name: looking(f) for name, f in FUNCTIONS.items()})
    return seen


def form_and_pages_pdf() -> bytes:
    """make_fields_pdf's form page, then two text pages: every operation has something
    to do on it (a form to fill, pages to select, delete, split...)."""
    with pikepdf.open(io.BytesIO(make_fields_pdf())) as pdf, \
            pikepdf.open(io.BytesIO(make_pdf(2, "text page {n}"))) as more:
        pdf.pages.extend(more.pages)
        out = io.BytesIO()
        pdf.save(out)
        return out.getvalue()


#: A step of each operation that takes a document handed over open.
OPEN_STEPS = {
    "select": {"pages": "3,1"}, "delete": {"pages": "2"}, "rotate": {"angle": 90},
    "crop": {"left": 10, "top": 20}, "split": {"every": 2}, "encrypt": {"password": "pw"},
    "watermark": {"text": "W"}, "number": {"format": "{n}/{total}"},
    "metadata": {"title": "T"}, "scale": {"size": "A5"}, "nup": {"per_sheet": 2},
    "fill-form": {"values": '{"name": "Ada", "agree": true}', "flatten": True},
    "set-bookmarks": {"bookmarks": '[{"title": "a", "page": 2}]'},
    "remove-annotations": {"types": "Widget"}}


def test_every_operation_that_takes_an_open_document_is_tested_here():
    assert TAKES_OPEN <= set(OPERATIONS)
    assert set(OPEN_STEPS) <= TAKES_OPEN
    assert not TAKES_OPEN & set(pipeline.FIRST_ONLY)


@pytest.mark.parametrize("operation", sorted(TAKES_OPEN))
def test_a_document_handed_over_open_gives_the_chains_answer(operation):
    """sanitize answers its document unsaved and each of these takes it open: the answer
    is the chain's, byte for byte (qpdf's save numbers objects the same way either way),
    but encrypt's (random salts: the same pages and text)."""
    doc = form_and_pages_pdf()
    steps = [{"operation": "sanitize"},
             {"operation": operation, "params": OPEN_STEPS.get(operation, {})}]
    assert handed_inputs(steps, [doc]) == ["bytes", "open"]
    manifest, body = run_pipeline(steps, [doc])
    singles, expected = chain(steps, [doc])
    assert "problem" not in manifest, manifest
    assert {k: v for k, v in manifest.items() if k != "report"} == \
        {k: v for k, v in singles[-1].items() if k != "report"}
    piped = [s["report"] for s in manifest["report"]["steps"]]
    alone = [m["report"] for m in singles]
    assert piped == alone
    if operation == "encrypt":
        assert page_texts(body, "pw") == page_texts(expected, "pw")
        assert open_any(body, "pw").is_encrypted
    else:
        assert body == expected


#: A first step of each operation that answers its document open (pdf_output(pdf)): its
#: params and its inputs after the document (the upload's files).
ANSWERS_OPEN = {
    "sanitize": ({}, []), "scale": ({"factor": 0.5}, []), "rotate": ({"angle": 90}, []),
    "crop": ({"left": 10}, []), "metadata": ({"title": "T"}, []), "flatten": ({}, []),
    "watermark": ({"text": "W"}, []), "number": ({}, []), "decrypt": ({"password": "pw"}, []),
    "remove-annotations": ({"types": "Widget"}, []),
    "set-bookmarks": ({"bookmarks": '[{"title": "a", "page": 2}]'}, []),
    "fill-form": ({"values": '{"name": "Ada"}'}, []),
    "overlay": ({}, [make_pdf(1, "over")]), "attach": ({}, [b"attached text"]),
    "stamp-image": ({}, [make_image_png()])}


@pytest.mark.parametrize("operation", sorted(ANSWERS_OPEN))
def test_an_answer_left_open_gives_the_next_step_the_chains_answer(operation):
    """Each of these answers its document unsaved and rotate (TAKES_OPEN) takes it open:
    every report is the chain's and the answer has the chain's objects, numbered alike.
    Only the order of a stream's keys may differ: qpdf writes /Length first in a stream
    made or decrypted in the same run, and in name order once read back from a file
    (the chain's step reads it back), so both answers are compared as qpdf reads them."""
    params, extra = ANSWERS_OPEN[operation]
    doc = form_and_pages_pdf()
    if operation == "decrypt":
        doc = run_one("encrypt", [doc], {"password": "pw"})[1]
    steps = [{"operation": operation, "params": params},
             {"operation": "rotate", "params": {"angle": 90}}]
    assert handed_inputs(steps, [doc, *extra]) == ["bytes", "open"]
    manifest, body = run_pipeline(steps, [doc, *extra])
    singles, expected = chain(steps, [doc, *extra])
    assert "problem" not in manifest, manifest
    assert [s["report"] for s in manifest["report"]["steps"]] == [m["report"] for m in singles]
    assert page_texts(body) == page_texts(expected) and not open_any(body).is_encrypted
    assert as_read(body) == as_read(expected)


def as_read(data: bytes) -> bytes:
    """The document saved again as qpdf read it: each dictionary's keys in name order."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        out = io.BytesIO()
        pdf.save(out, deterministic_id=True)
        return out.getvalue()


@pytest.mark.parametrize("steps, given", [
    # a step whose save means something answers bytes; text and info read bytes
    ([{"operation": "sanitize"}, {"operation": "scale", "params": {"factor": 2}},
      {"operation": "compress"}, {"operation": "encrypt", "params": {"password": "pw"}},
      {"operation": "watermark", "params": {"text": "W", "password": "pw"}}],
     ["bytes", "open", "bytes", "bytes", "bytes"]),
    ([{"operation": "scale", "params": {"factor": 2}}, {"operation": "text"}],
     ["bytes", "bytes"]),
    ([{"operation": "rotate", "params": {"angle": 90}}, {"operation": "sanitize"},
      {"operation": "info"}], ["bytes", "open", "bytes"]),
    ([{"operation": "encrypt", "params": {"password": "pw"}},
      {"operation": "decrypt", "params": {"password": "pw"}},
      {"operation": "rotate", "params": {"angle": 90}}],
     ["bytes", "bytes", "open"]),
])
def test_what_each_step_is_handed(steps, given):
    doc = make_pdf(2, "handed page {n}")
    assert handed_inputs(steps, [doc]) == given
    manifest, body = run_pipeline(steps, [doc])
    _singles, expected = chain(steps, [doc])
    if steps[-1]["operation"] in ("text", "info"):
        assert body == expected
    else:
        assert page_texts(body, "pw") == page_texts(expected, "pw")


def test_an_encrypted_upload_is_handed_over_open_decrypted():
    """Step 0 opens it with its password; the next takes it open and, like the chain's
    step after a plain save, answers it unencrypted (the same objects; qpdf writes the
    keys of the streams it decrypted in another order)."""
    steps = [{"operation": "sanitize", "params": {"password": "secret"}},
             {"operation": "rotate", "params": {"angle": 90}}]
    doc = make_encrypted_pdf(2, user="secret")
    assert handed_inputs(steps, [doc]) == ["bytes", "open"]
    manifest, body = run_pipeline(steps, [doc])
    _singles, expected = chain(steps, [doc])
    assert page_texts(body) == page_texts(expected) and not open_any(body).is_encrypted
    assert rotations(body) == rotations(expected) == [90, 90]


def test_a_handed_over_answer_keeps_nothing_of_the_document():
    """The step after changes the document it was handed: the answer it came from must not
    be saved afterwards (it would show the next step's changes as its own)."""
    document = pikepdf.open(io.BytesIO(make_pdf(1)))
    part = OutputFile("document.pdf", PDF, document=document)
    assert part.take_document() is document and part.take_document() is None
    with pytest.raises(ValueError):
        part.data
    handed = OpenDocument(document)
    handed.take()
    with pytest.raises(ValueError):
        handed.take()
    saved = OutputFile("document.pdf", PDF, document=pikepdf.open(io.BytesIO(make_pdf(1))))
    data = saved.data
    assert data.startswith(b"%PDF-") and saved.take_document() is None and saved.data is data


def test_open_pdf_counts_the_pages_of_a_document_handed_over_open():
    with pytest.raises(Problem) as info:
        open_pdf(OpenDocument(pikepdf.open(io.BytesIO(make_pdf(3)))), password=None,
                 max_pages=2)
    assert info.value.code == "too_many_pages"
    with pytest.raises(Problem) as info:
        open_pdf(OpenDocument(pikepdf.new()), password=None, max_pages=2)
    assert info.value.code == "malformed"
    given = pikepdf.open(io.BytesIO(make_pdf(2)))
    assert open_pdf(OpenDocument(given), password="unneeded", max_pages=2) is given


@pytest.mark.parametrize("operation, params", [
    ("sanitize", {}), ("rotate", {"angle": 180}), ("compress", {}), ("info", {}),
    ("split", {"every": 1}), ("text", {"engine": "pypdf"})])
def test_a_pipeline_of_one_step_equals_that_step(operation, params):
    doc = make_pdf(3)
    manifest, body = run_pipeline([{"operation": operation, "params": params}], [doc])
    alone, alone_body = run_one(operation, [doc], params)
    assert body == alone_body
    assert manifest["report"] == {"steps": [{"operation": operation,
                                             "report": alone["report"]}]}
    assert {k: v for k, v in manifest.items() if k != "report"} == \
        {k: v for k, v in alone.items() if k != "report"}


def test_first_step_takes_every_input_and_last_may_answer_several_files():
    manifest, body = run_pipeline([{"operation": "merge"}, {"operation": "split",
                                                            "params": {"every": 2}}],
                                  [make_pdf(3), make_pdf(2)])
    assert manifest["media_type"] == "application/zip" and manifest["files"] == 3


def test_a_failing_middle_step_names_itself_with_the_problem_it_has_alone():
    doc = make_pdf(3)
    steps = [{"operation": "sanitize"}, {"operation": "select", "params": {"pages": "7"}},
             {"operation": "compress"}]
    manifest, body = run_pipeline(steps, [doc])
    sanitized = run_one("sanitize", [doc], {})[1]
    alone, _ = run_one("select", [sanitized], {"pages": "7"})
    assert body is None
    assert manifest == {**alone, "step": 1, "operation": "select"}
    assert manifest["problem"] == "page_out_of_range"


def test_a_step_after_encrypt_needs_the_password_like_it_would_alone():
    steps = [{"operation": "encrypt", "params": {"password": "pw"}},
             {"operation": "watermark", "params": {"text": "W"}}]
    manifest, _ = run_pipeline(steps, [make_pdf(2)])
    assert (manifest["problem"], manifest["step"], manifest["operation"]) == \
        ("password_required", 1, "watermark")
    steps[1]["params"]["password"] = "pw"
    manifest, body = run_pipeline(steps, [make_pdf(2)])
    assert "problem" not in manifest and len(page_texts(body)) == 2


def test_a_bad_first_input_is_the_first_steps_problem():
    manifest, _ = run_pipeline([{"operation": "rotate", "params": {"angle": 90}},
                                {"operation": "compress"}], [make_encrypted_pdf()])
    assert (manifest["problem"], manifest["step"]) == ("password_required", 0)


# -- validation (server side, before any work) -------------------------------------------

def problem(text: str, files: int = 1) -> HttpProblem:
    with pytest.raises(HttpProblem) as info:
        pipeline.parse(text, files)
    assert info.value.status == 400
    return info.value


@pytest.mark.parametrize("text, members", [
    ("not json", {"param": "steps"}),
    ("[]", {"param": "steps"}),
    (json.dumps([{"operation": "sanitize"}] * 17), {"param": "steps"}),
    ('{"operation": "sanitize"}', {"param": "steps"}),
    ('[{"operation": "sanitize", "operation": "info"}]', {"param": "steps"}),
    ('[{"operation": "sanitize"}, "rotate"]', {"param": "steps", "step": 1}),
    ('[{"operation": "sanitize"}, {"operation": "nope"}]', {"param": "operation", "step": 1}),
    ('[{"operation": "sanitize"}, {"operation": "rotate", "params": {"angle": 45}}]',
     {"param": "angle", "step": 1, "operation": "rotate"}),
    ('[{"operation": "rotate", "params": {"angle": [90]}}]',
     {"param": "angle", "step": 0, "operation": "rotate"}),
    ('[{"operation": "rotate"}]', {"param": "angle", "step": 0, "operation": "rotate"}),
    ('[{"operation": "sanitize", "params": {"bogus": "1"}}]',
     {"param": "bogus", "step": 0, "operation": "sanitize"}),
    ('[{"operation": "split", "params": {"every": 1}}, {"operation": "compress"}]',
     {"param": "operation", "step": 0, "operation": "split"}),
    ('[{"operation": "info"}, {"operation": "compress"}]',
     {"param": "operation", "step": 0, "operation": "info"}),
    ('[{"operation": "sanitize"}, {"operation": "merge"}]',
     {"param": "operation", "step": 1, "operation": "merge"}),
    ('[{"operation": "sanitize"}, {"operation": "from-images"}]',
     {"param": "operation", "step": 1, "operation": "from-images"}),
    # safe's phases are separate children by design: one job cannot hold them
    ('[{"operation": "sanitize"}, {"operation": "safe"}]', {"param": "operation", "step": 1}),
    ('[{"operation": "safe"}]', {"param": "operation", "step": 0}),
])
def test_a_bad_step_is_a_400_naming_it(text, members):
    found = problem(text)
    assert found.type.slug == "bad-parameter"
    assert {k: found.extra.get(k) for k in members} == members
    if "step" in members:
        assert found.detail.startswith(f"steps[{members['step']}]")


def test_a_first_step_that_cannot_take_the_files_is_a_wrong_file_count():
    found = problem('[{"operation": "merge"}, {"operation": "compress"}]', files=1)
    assert found.type.slug == "wrong-file-count"
    assert found.extra == {"param": "file", "step": 0, "operation": "merge"}
    found = problem('[{"operation": "compress"}]', files=2)
    assert found.type.slug == "wrong-file-count"


def test_secrets_are_never_echoed():
    secret = "hunter2-very-secret"
    texts = [json.dumps([{"operation": "encrypt", "params": {"password": secret,
                                                             "owner_password": ""}}]),
             json.dumps([{"operation": "nope", "params": {"password": secret}}]),
             json.dumps([{"operation": "encrypt", "params": {"password": secret}},
                         {"operation": "rotate", "params": {"angle": 1}}]),
             '[{"operation": "encrypt", "params": {"password": "' + secret + '"}]']
    for text in texts:
        found = problem(text)
        assert secret not in found.detail and secret not in json.dumps(found.extra)


def test_json_numbers_and_booleans_are_the_endpoints_texts():
    steps = pipeline.parse('[{"operation": "watermark", "params": {"text": "W", "size": 20, '
                           '"opacity": 0.5, "pages": "1"}}, {"operation": "sanitize", '
                           '"params": {"remove_links": true}}]', 1).steps
    assert steps[0].params["size"] == 20.0 and steps[0].params["opacity"] == 0.5
    assert steps[1].params["remove_links"] is True


def test_the_header_report_keeps_steps_whole_and_marks_those_that_do_not_fit():
    small = {"operation": "sanitize", "report": {"removed": {}}}
    big = {"operation": "split", "report": {"parts": [[n] for n in range(2000)]}}
    report = {"steps": [small, big, small]}
    fitted = pipeline.fit_report(report)
    assert fitted == {"steps": [small, {"operation": "split", "omitted": True}, small]}
    assert pipeline.fit_report({"steps": [small]}) == {"steps": [small]}
    worst = {"steps": [big] * pipeline.MAX_STEPS}
    assert len(json.dumps(pipeline.fit_report(worst))) < 4096


# -- the corpus ----------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_corpus_through_three_steps_never_raises():
    steps = json.dumps([{"operation": "sanitize"}, {"operation": "rotate",
                                                    "params": {"angle": 90}},
                        {"operation": "compress"}])
    results, violations = run_worker({"pipeline": {"steps": steps}}, corpus_files(),
                                     timeout_s=280)
    check(results, violations)
    assert any(r["outcome"] == "ok" for r in results)
