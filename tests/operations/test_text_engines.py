"""`text` with both engines: PDFium (default) and pypdf, in-process and through the real
sandbox; `layout=boxes`; the bounds; and the two engines' words compared on the corpus.

The corpus comparison (through the real sandbox, both engines on every file) is
order-insensitive and tolerant of whitespace: on a page, a word of one engine counts as
found when it occurs anywhere in the other engine's words joined without whitespace
(so "M(a" "0a1)" against "M(a0a1)" agree), after NFKC (PDFium decomposes ligatures) and
without control, format and private-use characters (pypdf keeps unmapped glyphs as
private-use code points). A page agrees when at least PAGE_AGREEMENT of each engine's
characters are found in the other's; a file when its page counts and every page agree.
"""
from __future__ import annotations

import asyncio
import io
import json
import math
import unicodedata

import pikepdf
import pytest
from pikepdf import Dictionary, Name

from notrace.jobs import interpret
from notrace.operations import OPERATIONS, ParamError
from notrace.operations import text as text_module
from notrace.problems import HttpProblem
from sandbox import Limits, Sandbox
from tests import pdfs
from tests.operations.conftest import CORPUS

ENTRY = "notrace.operations.child:run"
WARMUP = "notrace.operations.child:warm_up"
ENGINES = ("pdfium", "pypdf")
PAGE_AGREEMENT = 0.9
#: Files of the corpus both engines read on which they must agree (measured: 172 of 179).
FILE_AGREEMENT = 0.9
#: Problems that mean the sandbox ended the job, not that the document was refused.
SANDBOX_ENDED = {"isolation-violation", "processing-crashed", "memory-limit", "cpu-limit",
                 "time-limit"}


# --- documents --------------------------------------------------------------------------

LINES = ("Alpha beta gamma", "delta epsilon", "zeta eta theta iota")


def _boxed_pdf(*, rotate: int = 0) -> bytes:
    """One page whose MediaBox does not start at 0,0 and whose CropBox is smaller, with
    three lines of words inside the CropBox."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(Dictionary(Type=Name.Font, Subtype=Name.Type1,
                                        BaseFont=Name.Helvetica))
    ops = []
    for n, line in enumerate(LINES):
        ops.append(b"BT /F1 14 Tf %d %d Td (%s) Tj ET" % (150, 900 - 40 * n, line.encode()))
    page = pikepdf.Page(Dictionary(Type=Name.Page, MediaBox=[100, 200, 712, 992],
                                   CropBox=[120, 220, 700, 980], Rotate=rotate,
                                   Resources=Dictionary(Font=Dictionary(F1=font)),
                                   Contents=pdf.make_stream(b"\n".join(ops))))
    pdf.pages.append(page)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def _dense_pdf(chars: int) -> bytes:
    """One page with `chars` characters at 1 pt, in lines of at most 10,000 (PDFium keeps
    32,767 of one string), no two at one place."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(Dictionary(Type=Name.Font, Subtype=Name.Type1,
                                        BaseFont=Name.Helvetica))
    page = pikepdf.Page(Dictionary(Type=Name.Page, MediaBox=[0, 0, 612, 792],
                                   Resources=Dictionary(Font=Dictionary(F1=font)),
                                   Contents=pdf.make_stream(b"".join(
                                       b"BT /F1 1 Tf 0 %d Td (%s) Tj ET\n"
                                       % (10 + n, b"a" * min(10_000, chars - 10_000 * n))
                                       for n in range(-(-chars // 10_000))))))
    pdf.pages.append(page)
    out = io.BytesIO()
    pdf.save(out, compress_streams=True)
    return out.getvalue()


# --- in-process -------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_both_engines_give_each_page_in_the_order_asked(call, engine):
    doc = pdfs.make_pdf(4, marker="A")
    assert call("text", [doc], engine=engine, pages="4,1,1").json() == {"pages": [
        {"page": 4, "text": "A page 4"}, {"page": 1, "text": "A page 1"},
        {"page": 1, "text": "A page 1"}]}


def test_pdfium_is_the_default(call, monkeypatch):
    doc = pdfs.make_pdf(2)
    monkeypatch.setattr(text_module, "_pypdf_pages", None)  # would fail if called
    assert [p["text"] for p in call("text", [doc]).json()["pages"]] == ["page 1", "page 2"]


@pytest.mark.parametrize("engine", ENGINES)
def test_passwords_with_both_engines(call, engine):
    locked = pdfs.make_encrypted_pdf(2, user="pw", marker="S")
    assert [p["text"] for p in call("text", [locked], engine=engine,
                                    password="pw").json()["pages"]] == ["S page 1", "S page 2"]
    assert call("text", [locked], engine=engine).problem == "password_required"
    assert call("text", [locked], engine=engine, password="no").problem == "password_wrong"


@pytest.mark.parametrize("engine", ENGINES)
def test_what_every_operation_refuses(call, engine):
    assert call("text", [pdfs.make_image_png(10, 10)], engine=engine).problem == "not_a_pdf"
    assert call("text", [b"%PDF-1.7\n1 0 obj garbage"], engine=engine).problem == "malformed"
    assert call("text", [pdfs.make_pdf(6)], engine=engine, max_pages=5).problem \
        == "too_many_pages"
    assert call("text", [pdfs.make_pdf(2)], engine=engine, pages="3").problem \
        == "page_out_of_range"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_page_over_the_character_bound_is_too_large(call, engine):
    limit = text_module.MAX_PAGE_CHARS
    answer = call("text", [_dense_pdf(limit + 1)], engine=engine)
    assert answer.problem == "too_large" and str(limit) in answer.manifest["detail"]
    assert len(call("text", [_dense_pdf(1000)], engine=engine).json()["pages"][0]["text"]) \
        == 1000


@pytest.mark.parametrize("engine", ENGINES)
def test_the_answer_has_a_character_bound_too(call, engine, monkeypatch):
    monkeypatch.setattr(text_module, "MAX_TEXT_CHARS", 20)   # "page N" is 6 characters
    assert call("text", [pdfs.make_pdf(3)], engine=engine).problem is None
    assert call("text", [pdfs.make_pdf(4)], engine=engine).problem == "too_large"


def test_boxes_need_pdfium():
    with pytest.raises(ParamError) as caught:
        OPERATIONS["text"].validate({"engine": "pypdf", "layout": "boxes"})
    assert caught.value.param == "layout"
    with pytest.raises(ParamError):
        OPERATIONS["text"].validate({"engine": "pymupdf"})
    assert OPERATIONS["text"].validate({}) == {"pages": "all", "engine": "pdfium",
                                               "layout": "text", "password": None}


@pytest.mark.parametrize("rotate", (0, 90))
def test_boxes_are_words_within_the_page_box(call, rotate):
    page = call("text", [_boxed_pdf(rotate=rotate)], layout="boxes").json()["pages"][0]
    assert page["box"] == [120, 220, 700, 980] and page["rotate"] == rotate
    words = page["words"]
    # In reading order as the page is shown: rotated, the lines are columns, last first.
    lines = LINES if rotate == 0 else LINES[::-1]
    assert [w["text"] for w in words] == " ".join(lines).split() == page["text"].split()
    x0, y0, x1, y1 = page["box"]
    for word in words:
        assert x0 <= word["x0"] < word["x1"] <= x1 and y0 <= word["y0"] < word["y1"] <= y1
    # Each line starts at its Td, in the page's own (unrotated) coordinates; the words
    # of a line share a baseline band and follow each other left to right.
    starts = {w["text"]: w for w in words}
    for n, line in enumerate(LINES):
        word = starts[line.split()[0]]
        assert abs(word["x0"] - 150) < 2 and word["y0"] < 900 - 40 * n < word["y1"]
    first_line = [w for w in words if w["text"] in LINES[0].split()]
    assert first_line[0]["x1"] < first_line[1]["x0"] < first_line[1]["x1"] < first_line[2]["x0"]
    assert len({(w["y0"], w["y1"]) for w in first_line}) == 1


def test_a_hyphen_that_breaks_a_word_stays_on_its_line(call):
    pdf = pikepdf.new()
    font = pdf.make_indirect(Dictionary(Type=Name.Font, Subtype=Name.Type1,
                                        BaseFont=Name.Helvetica))
    content = b"BT /F1 12 Tf 72 700 Td (one exam-) Tj 0 -14 Td (ple two) Tj ET"
    pdf.pages.append(pikepdf.Page(Dictionary(Type=Name.Page, MediaBox=[0, 0, 612, 792],
                                             Resources=Dictionary(Font=Dictionary(F1=font)),
                                             Contents=pdf.make_stream(content))))
    out = io.BytesIO()
    pdf.save(out)
    page = call("text", [out.getvalue()], layout="boxes").json()["pages"][0]
    assert "\r" not in page["text"] and "\ufffe" not in page["text"]
    assert page["text"].split() == ["one", "exam-", "ple", "two"]
    assert [w["text"] for w in page["words"]] == ["one", "exam-", "ple", "two"]


# --- through the real sandbox ---------------------------------------------------------

async def _run_all(jobs: list[tuple[bytes, dict]], *, max_pages: int = 2000,
                   concurrency: int = 4) -> list:
    """Each (document, raw params) through a real Sandbox and the server's own answer
    mapping: the decoded JSON of a 2xx, else the HttpProblem (its status says 4xx/5xx)."""
    gate = asyncio.Semaphore(concurrency)
    limits = Limits(memory_mb=512, cpu_s=20, wall_s=30, output_mb=64)
    op = OPERATIONS["text"]

    async def one(sb: Sandbox, data: bytes, raw: dict):
        params = {"operation": "text", "params": op.validate(raw), "max_pages": max_pages}
        async with gate:
            result = await sb.run([data], params)
        try:
            with interpret(op, result, max_pages=max_pages) as answer:
                return json.loads(answer.body.read())
        except HttpProblem as problem:
            return problem

    async with Sandbox(ENTRY, limits=limits, workers=2, queue=16, warmup=WARMUP) as sb:
        return await asyncio.gather(*(one(sb, data, raw) for data, raw in jobs))


@pytest.mark.timeout(120)
async def test_both_engines_and_boxes_through_the_sandbox(call):
    doc, locked, boxed = (pdfs.make_pdf(3, marker="B"),
                          pdfs.make_encrypted_pdf(2, user="pw"), _boxed_pdf(rotate=90))
    jobs = [(doc, {"engine": "pdfium"}), (doc, {"engine": "pypdf"}),
            (locked, {"password": "pw"}), (locked, {"engine": "pypdf", "password": "pw"}),
            (boxed, {"layout": "boxes"}), (locked, {})]
    answers = await _run_all(jobs)
    # The sandbox answers exactly what the in-process call answers.
    for (data, raw), answer in zip(jobs[:-1], answers[:-1]):
        assert answer == call("text", [data], **raw).json(), raw
    assert answers[0]["pages"][2] == {"page": 3, "text": "B page 3"}
    assert answers[4]["pages"][0]["words"][0]["text"] == "zeta"   # rotated: last line first
    assert isinstance(answers[5], HttpProblem) and answers[5].type.status == 422


@pytest.mark.timeout(60)
async def test_pdfium_out_of_memory_is_the_memory_limit():
    """PDFium aborts (SIGABRT) when an allocation fails under RLIMIT_AS: the sandbox
    classifies it by its peak memory, and the service answers 422 memory-limit."""
    from tests.service.builders import slow_text_pdf
    bomb = slow_text_pdf(1_000_000)   # 78 kB; PDFium holds ~290 MB of page objects
    op = OPERATIONS["text"]
    limits = Limits(memory_mb=64, cpu_s=20, wall_s=30, output_mb=16)
    async with Sandbox(ENTRY, limits=limits, workers=1, queue=2, warmup=WARMUP) as sb:
        result = await sb.run([bomb], {"operation": "text", "params": op.validate({}),
                                       "max_pages": 10})
        with pytest.raises(HttpProblem) as caught:
            interpret(op, result, max_pages=10)
        assert caught.value.type.slug == "memory-limit", result.reason
        after = await sb.run([pdfs.make_pdf(1)], {"operation": "text",
                                                  "params": op.validate({}),
                                                  "max_pages": 10})
        assert after.status == "ok"
        after.close()


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text)
    return "".join(c for c in text
                   if c.isspace() or not unicodedata.category(c).startswith("C")).split()


def _found(words: list[str], other: list[str]) -> float:
    """Share of the characters of `words` in words that occur in `other` joined."""
    joined = "".join(other)
    total = sum(map(len, words))
    return 1.0 if not total else sum(len(w) for w in words if w in joined) / total


def _page_agreement(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    return min(_found(wa, wb), _found(wb, wa))


@pytest.mark.timeout(600)
async def test_the_engines_agree_on_the_corpus_and_never_fail():
    files = sorted(CORPUS.glob("*.pdf"))
    if not files:
        pytest.skip(f"no corpus at {CORPUS}")
    variants = [{"engine": engine} for engine in ENGINES] + [{"layout": "boxes"}]
    jobs = [(path.read_bytes(), raw) for path in files for raw in variants]
    answers = await _run_all(jobs)
    n = len(variants)
    by_file = {path.name: dict(zip(ENGINES, answers[n * i:n * i + 2]))
               for i, path in enumerate(files)}
    boxes = {path.name: answers[n * i + 2] for i, path in enumerate(files)}
    for name, answer in boxes.items():
        if isinstance(answer, HttpProblem):
            assert answer.type.status < 500, (name, answer.type.slug)
            assert isinstance(by_file[name]["pdfium"], HttpProblem), name
            continue
        assert [p["text"] for p in answer["pages"]] == [
            p["text"] for p in by_file[name]["pdfium"]["pages"]], name
        for word in (w for p in answer["pages"] for w in p["words"]):
            assert word["x0"] <= word["x1"] and word["y0"] <= word["y1"], (name, word)
            assert all(math.isfinite(word[k]) for k in ("x0", "y0", "x1", "y1")), name
    failures = {(name, engine): f"{a.type.status} {a.type.slug}"
                for name, got in by_file.items() for engine, a in got.items()
                if isinstance(a, HttpProblem) and a.type.status >= 500}
    assert failures == {}, failures
    # Nor a job the sandbox ended: a SIGSYS (a call PDFium makes that seccomp refuses) is
    # isolation-violation, a crash processing-crashed; both 422s, both bugs here.
    ended = {(path.name, json.dumps(raw)): a.type.slug
             for i, path in enumerate(files) for raw, a in zip(variants, answers[n * i:])
             if isinstance(a, HttpProblem) and a.type.slug in SANDBOX_ENDED}
    assert ended == {}, ended
    both = {name: got for name, got in by_file.items()
            if not any(isinstance(a, HttpProblem) for a in got.values())}
    disagree = {}
    for name, got in both.items():
        pages = [(p["text"], q["text"]) for p, q in zip(got["pdfium"]["pages"],
                                                        got["pypdf"]["pages"])]
        if len(got["pdfium"]["pages"]) != len(got["pypdf"]["pages"]):
            disagree[name] = "page counts differ"
            continue
        scores = [_page_agreement(a, b) for a, b in pages]
        worst = min(scores, default=1.0)
        if worst < PAGE_AGREEMENT:
            disagree[name] = f"page {scores.index(worst) + 1}: {worst:.2f}"
    print(f"\nboth engines read {len(both)} of {len(files)} files; they disagree on "
          f"{len(disagree)}:")
    for name, why in sorted(disagree.items()):
        print(f"  {name}: {why}")
    only = {name: [e for e, a in got.items() if not isinstance(a, HttpProblem)]
            for name, got in by_file.items() if name not in both}
    print("read by one engine only:", {n: e for n, e in only.items() if e})
    assert len(both) >= 0.7 * len(files)
    assert len(disagree) <= (1 - FILE_AGREEMENT) * len(both), disagree
