"""A pipeline's steps, one after the other in ONE child. Runs in the CHILD (child.run).

The server validated every step (notrace/pipeline.py): the first takes the job's inputs,
every later one the single PDF the step before answered, and only the last may answer
something else (several files, JSON). Each step is its operation's own function, called
exactly as for its single endpoint, so a step fails with the problem it would answer
alone.

Between two steps the document travels OPEN when both ends allow it: the step before
answered its pikepdf.Pdf unsaved (pdf_output(pdf): its save is plain, it means nothing)
and the step after reads its input only through open_pdf (TAKES_OPEN). Then nothing is
saved, checked or parsed between them: the next step gets an OpenDocument and changes
that very object (the step before's answer is emptied first: take_document). Otherwise
the step's answer is saved and checked as a single job's is (body.check_pdfs: reopened,
with that step's password) and the next step reads those bytes (a memoryview, no copy):
after a step whose save has a meaning of its own (encrypt's encryption, compress's
object streams and recompression, linearize), which answers bytes, and before a step that
reads bytes (TAKES_OPEN says which do not). The last step's answer is always saved and
checked.

`failed` is filled with the running step's index and operation before it starts, so
child.run can name the step in the problem it answers.
"""
from __future__ import annotations

from typing import Callable

from notrace.operations._common import PDF, OpenDocument, Output
from notrace.operations.body import check_pdfs

__all__ = ["TAKES_OPEN", "run_steps"]

#: Operations whose function reads its (one) input only through open_pdf, and whose
#: answer is the same whether that input was parsed from a step's saved bytes or handed
#: over open. Not in it: text, render and thumbnail (PDFium reads bytes), info (it
#: describes the file: version, linearized, encrypted), repair (it counts what reading
#: the bytes repaired), decrypt (it refuses an input that is not encrypted, which a
#: handed-over document may still say it is), and the operations that only come first.
#: Nor compress: its answer is its bytes, and qpdf writes a document it parsed otherwise
#: than one a step built (an object stream's dictionaries keep their keys in the order a
#: step added them, its objects are grouped by their numbers, which only a save gives in
#: traversal order): after watermark, metadata or flatten answered open, compress's
#: output came out 1 to 4 bytes off the chain's (its report's output_bytes too).
TAKES_OPEN = frozenset({
    "sanitize", "select", "delete", "rotate", "crop", "split", "linearize",
    "metadata", "encrypt", "watermark", "number", "flatten", "images", "scale", "nup",
    "booklet", "form-fields", "fill-form", "attachments", "remove-annotations",
    "remove-blank", "bookmarks", "set-bookmarks"})


def run_steps(inputs: list[memoryview], params: dict, *, functions: dict[str, Callable],
              failed: dict) -> tuple[str, Output]:
    """(the last step's operation name, its Output with every step's report in order:
    {"steps": [{"operation": NAME, "report": {...}}, ...]})."""
    steps = params["steps"]
    reports = []
    current: list = inputs
    output = Output([])
    for index, step in enumerate(steps):
        name, step_params = step["operation"], step["params"]
        failed.update(step=index, operation=name)
        output = functions[name](current, step_params, max_pages=params["max_pages"])
        reports.append({"operation": name, "report": output.report or {}})
        if index + 1 == len(steps):
            check_pdfs(output, step_params.get("password"))
            break
        current = _handoff(index, name, output, step_params, steps[index + 1]["operation"])
        output = Output([])  # the document lives on in `current` only
    failed.clear()  # what follows (the final body) is our own code, not a step's
    output.report = {"steps": reports}
    return steps[-1]["operation"], output


def _handoff(index: int, name: str, output: Output, step_params: dict,
             following: str) -> list:
    """The next step's input: the document open when both steps allow it, else the
    step's answer saved and checked."""
    files = output.files
    if len(files) != 1 or files[0].media_type != PDF:  # the server checked: our bug
        raise ValueError(f"step {index} ({name}) answered no single PDF")
    if following in TAKES_OPEN:
        document = files[0].take_document()
        if document is not None:
            return [OpenDocument(document)]
    check_pdfs(output, step_params.get("password"))
    return [memoryview(files[0].data)]
