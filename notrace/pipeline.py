"""The pipeline: several operations in one request, run as ONE job. Runs in the SERVER
loop (and the CLI); the steps themselves run in one child (notrace/operations/pipeline.py).

`POST /api/v1/pipeline` takes the input files as any operation does (parts named `file`,
order kept) and a `steps` text part: a JSON list of {"operation": NAME, "params": {...}},
1 to MAX_STEPS steps. Every step is checked here, before any work, by its operation's own
declaration (`Operation.validate`, the code path of its single endpoint) and against what
its input will be: the first step takes the uploaded files, every later step the one PDF
the step before made, so a step answering several files or data (split, images, info,
text) may only be last. A problem is a 400 naming the step: `step` (its index in the
list, from 0) and `param` members.

Parameter values are the texts an operation's endpoint takes; JSON numbers and booleans
are accepted too and turned into that text (90 -> "90", true -> "true"). Secret values
(passwords) travel only in this part, never in a URL; they are never echoed (ParamError
hides them) and never logged (the log names the steps' operations only).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from notrace import safe
from notrace.jobs import report_header, report_text
from notrace.operations.registry import OPERATIONS
from notrace.operations.spec import Inputs, Operation, Param, ParamError
from notrace.problems import HttpProblem
from notrace.uploads import SNIFF_BYTES, check_kind, max_files
from sandbox import Limits, MemFile

__all__ = ["MAX_STEPS", "PIPELINE", "Step", "Pipeline", "parse", "validate", "check_files",
           "describe", "fit_report", "steps_schema", "ONLY_LAST", "FIRST_ONLY", "NOT_STEPS",
           "STEP_OPERATIONS"]

MAX_STEPS = 16
#: The `steps` part's longest text (the upload reader's bound on any text part).
MAX_STEPS_CHARS = 16 * 1024
NAME = "pipeline"
_PDF = "application/pdf"


#: Operations that cannot be a step, and why (the 400's words). safe's guarantee IS its
#: boundaries: the document's child, the server's check of the pixels, a fresh child that
#: never saw the document; one pipeline job is one child, which would hold all three.
NOT_STEPS = {safe.NAME: "safe runs its two phases in separate children, which one "
                        "pipeline job cannot; send it on its own (its answer can be the "
                        "next request's upload)"}
STEP_OPERATIONS = {name: op for name, op in OPERATIONS.items() if name not in NOT_STEPS}


def _only_last(op: Operation) -> bool:
    """Its answer is not one PDF, so no step can follow it."""
    return op.output != "pdf"


def _first_only(op: Operation) -> bool:
    """It cannot take the one PDF a step before it made."""
    return _PDF not in op.inputs.media_types or op.inputs.min > 1


ONLY_LAST = tuple(name for name, op in STEP_OPERATIONS.items() if _only_last(op))
FIRST_ONLY = tuple(name for name, op in STEP_OPERATIONS.items() if _first_only(op))

STEPS_PARAM = Param(
    "steps", "string",
    f"JSON list of 1 to {MAX_STEPS} steps, each {{\"operation\": NAME, \"params\": "
    "{...}}, run in order in one job: each step's output is the next one's input. Params "
    "are those of the operation's own endpoint (text, or JSON numbers and booleans). The "
    "first step takes the uploaded files; the others take the one PDF the step before "
    f"made, so {', '.join(FIRST_ONLY)} can only be first and {', '.join(ONLY_LAST)} only "
    f"last; {', '.join(sorted(NOT_STEPS))} cannot be a step.", max_length=MAX_STEPS_CHARS, secret=True)

#: What the upload reader needs to read a pipeline request: the most files any first
#: step takes, of every type an operation takes (each file is checked again against the
#: first step's declaration once the steps are known), and the one `steps` parameter,
#: secret so that it is refused in a query string.
PIPELINE = Operation(
    NAME, "Run several operations in one request and one job (sanitize, then compress, "
    "then encrypt...).",
    Inputs(min=1, max=max(op.inputs.max for op in STEP_OPERATIONS.values()),
           media_types=tuple(dict.fromkeys(m for op in STEP_OPERATIONS.values()
                                           for m in op.inputs.media_types))),
    (STEPS_PARAM,), "pdf_or_archive", "notrace.operations.pipeline:run_steps")


@dataclasses.dataclass(frozen=True)
class Step:
    index: int
    op: Operation
    params: dict  # Operation.validate's output: what the child receives


@dataclasses.dataclass(frozen=True)
class Pipeline:
    steps: tuple[Step, ...]

    @property
    def last(self) -> Operation:
        """The operation whose answer is the pipeline's (its media types are checked)."""
        return self.steps[-1].op

    @property
    def first(self) -> Operation:
        return self.steps[0].op

    def names(self) -> list[str]:
        return [step.op.name for step in self.steps]

    def job_params(self, max_pages: int) -> dict:
        """The params dict the child entry receives (notrace.operations.child.run)."""
        return {"operation": NAME, "max_pages": max_pages,
                "steps": [{"operation": s.op.name, "params": s.params} for s in self.steps]}

    def limits(self) -> Limits | None:
        """The sandbox limits of the ONE job: the server's (the caller's default), tightened
        by every step that tightens them (each field the smallest any step asks)."""
        declared = [s.op.limits for s in self.steps if s.op.limits is not None]
        if not declared:
            return None
        fields = {f.name: min(getattr(lim, f.name) for lim in declared)
                  for f in dataclasses.fields(Limits)}
        return Limits(**fields)

    def manifest_pages(self, max_pages: int) -> int:
        """The page budget of the child's manifest: it carries every step's report."""
        return max_pages * len(self.steps)


def _bad(detail: str, *, param: str = "steps", step: int | None = None,
         op: Operation | None = None, slug: str = "bad-parameter") -> HttpProblem:
    extra: dict[str, Any] = {"param": param}
    if step is not None:
        extra["step"] = step
        detail = f"steps[{step}]" + (f" ({op.name})" if op is not None else "") + ": " + detail
    if op is not None:
        extra["operation"] = op.name
    return HttpProblem(slug, detail, extra=extra)


def _no_twins(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("a name is given twice")
        out[key] = value
    return out


def _text(value: Any) -> str | None:
    """A JSON parameter value as the text an endpoint takes; None when it has none."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return None


def _step(index: int, item: Any, count: int) -> Step:
    """One step, validated by its operation's own declaration; `count` is how many files
    it takes (the upload's for the first step, 1 after)."""
    if not isinstance(item, dict) or not isinstance(item.get("operation"), str) \
            or not set(item) <= {"operation", "params"}:
        raise _bad('must be an object {"operation": NAME, "params": {...}}', step=index)
    if item["operation"] in NOT_STEPS:
        raise _bad(NOT_STEPS[item["operation"]], param="operation", step=index)
    op = OPERATIONS.get(item["operation"])
    if op is None:
        raise _bad("no operation of that name; GET /api/v1/operations lists them",
                   param="operation", step=index)
    raw = item.get("params", {})
    if not isinstance(raw, dict):
        raise _bad("params must be an object of parameter names and values", param="params",
                   step=index, op=op)
    texts: dict[str, str] = {}
    for name, value in raw.items():
        text = _text(value)
        if text is None:
            raise _bad("must be text, a number or a boolean", param=name, step=index, op=op)
        texts[name] = text
    try:
        params = op.validate(texts)
    except ParamError as exc:  # the declaration's own wording; secrets never echoed
        raise _bad(str(exc), param=exc.param, step=index, op=op) from None
    if index == 0:
        if not op.inputs.min <= count <= max_files(op):
            wanted = (f"exactly {op.inputs.min}" if op.inputs.min == max_files(op)
                      else f"{op.inputs.min} to {max_files(op)}")
            raise _bad(f"takes {wanted} parts named 'file', not {count}", param="file",
                       step=0, op=op, slug="wrong-file-count")
    elif _first_only(op):
        raise _bad("a step after the first takes the one PDF the step before made; "
                   f"{op.name} can only be the first step", param="operation", step=index,
                   op=op)
    return Step(index, op, params)


def parse(text: str, files: int) -> Pipeline:
    """The steps of a `steps` text for a request of `files` files, or the HttpProblem
    (400) that names what is wrong: nothing has run yet."""
    try:
        items = json.loads(text, object_pairs_hook=_no_twins)
    except (ValueError, RecursionError):  # our words: the decoder's quote the text
        raise _bad("is not JSON (or a name is given twice in one object)") from None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_STEPS:
        raise _bad(f"must be a JSON list of 1 to {MAX_STEPS} steps")
    steps: list[Step] = []
    for index, item in enumerate(items):  # in order: the first wrong step is named
        if steps and _only_last(steps[-1].op):
            before = steps[-1]
            raise _bad(f"{before.op.name} answers {_answers(before.op)}, not one PDF: it "
                       "may only be the last step", param="operation", step=before.index,
                       op=before.op)
        steps.append(_step(index, item, files if index == 0 else 1))
    return Pipeline(tuple(steps))


def _answers(op: Operation) -> str:
    return {"json": "JSON", "archive": "several files",
            "pdf_or_archive": "several files"}.get(op.output, op.output)


def validate(params: Mapping[str, str], files: int) -> Pipeline:
    """The request's parameters (the `steps` part only) -> its Pipeline, or a 400."""
    try:
        raw = PIPELINE.validate(params)
    except ParamError as exc:
        raise HttpProblem("bad-parameter", str(exc), extra={"param": exc.param}) from None
    return parse(raw["steps"], files)


def check_files(pipeline: Pipeline, files: list[MemFile]) -> None:
    """Each uploaded file checked against the FIRST step's declaration (the upload reader
    only knew that some operation takes it): the 415 its own endpoint answers, naming
    step 0."""
    for mem in files:
        try:
            check_kind(pipeline.first, mem.read(0, min(mem.size, SNIFF_BYTES)))
        except HttpProblem as problem:
            problem.extra.update(step=0, operation=pipeline.first.name)
            raise


def fit_report(report: dict, limit: int = 4096) -> dict:
    """The pipeline's report ({"steps": [{"operation", "report"}, ...]}) cut to fit the
    X-Notrace-Report header: steps are kept whole, in order, while they fit; a step that
    does not is shown as {"operation": NAME, "omitted": true} (its report is in the CLI's
    output, or from the operation alone). 16 omitted steps fit well within 4096 bytes."""
    steps = report.get("steps")
    # The report is the child's (untrusted) bytes: only a list of at most MAX_STEPS
    # objects is cut (anything else raised AttributeError, a 500; and 4000 claimed steps
    # cost the loop 8 s, cutting being quadratic). Any other report goes as it is, so
    # without the header if it is too big for it.
    if (report_header(report, limit) is not None or not isinstance(steps, list)
            or len(steps) > MAX_STEPS or not all(isinstance(s, dict) for s in steps)):
        return report
    # Each step is encoded once: the header's length is the frame plus the entries and
    # the commas between them, so trying a step is arithmetic, not a new encoding of the
    # whole report (whose steps may each be a manifest's size).
    kept: list = [{"operation": s.get("operation"), "omitted": True} for s in steps]
    sizes = [len(report_text(entry)) for entry in kept]
    total = len(report_text({"steps": []})) + sum(sizes) + len(steps) - 1
    for i, step in enumerate(steps):
        size = len(report_text(step))
        if total - sizes[i] + size <= limit:
            kept[i], total, sizes[i] = step, total - sizes[i] + size, size
    return {"steps": kept}


def describe() -> dict:
    """The catalogue's description of the pipeline (GET /api/v1/operations)."""
    return {"endpoint": f"/api/v1/{NAME}", "summary": PIPELINE.summary,
            "max_steps": MAX_STEPS, "param": STEPS_PARAM.describe(),
            "first_only": list(FIRST_ONLY), "only_last": list(ONLY_LAST),
            "not_steps": sorted(NOT_STEPS)}


def _typed_schema(param: Param) -> dict | None:
    """The JSON (non-text) form a step may give this parameter's value in, if any."""
    if param.kind == "boolean":
        return {"type": "boolean"}
    if param.kind not in ("integer", "number"):
        return None
    limits = {"enum": list(param.choices) if param.choices is not None else None,
              "minimum": param.minimum, "maximum": param.maximum}
    return {"type": param.kind, **{k: v for k, v in limits.items() if v is not None}}


def _step_schema(op: Operation) -> dict:
    props = {}
    for p in op.params:
        text = p.json_schema()
        typed = _typed_schema(p)
        props[p.name] = {"anyOf": [text, typed]} if typed is not None else text
    params = {"type": "object", "properties": props, "additionalProperties": False,
              "required": [p.name for p in op.params if p.required]}
    return {"type": "object", "title": op.name, "description": op.summary,
            "required": ["operation"] + (["params"] if params["required"] else []),
            "properties": {"operation": {"const": op.name}, "params": params},
            "additionalProperties": False}


def steps_schema(operations: Mapping[str, Operation] = STEP_OPERATIONS) -> dict:
    """JSON Schema of the `steps` list, generated from the declarations: one alternative
    per operation with its own parameters (OpenAPI; the cross-step rules are in words)."""
    return {"type": "array", "minItems": 1, "maxItems": MAX_STEPS,
            "description": STEPS_PARAM.description, "x-notrace-kind": "steps",
            "items": {"oneOf": [_step_schema(op) for op in operations.values()]}}
