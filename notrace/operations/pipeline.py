"""A pipeline's steps, one after the other in ONE child. Runs in the CHILD (child.run).

The server validated every step (notrace/pipeline.py): the first takes the job's inputs,
every later one the single PDF the step before answered, and only the last may answer
something else (several files, JSON). Each step is its operation's own function, called
exactly as for its single endpoint, and its output is checked as a single job's is
(body.check_pdfs: every PDF reopened, with that step's password), so a step fails with
the problem it would answer alone. Between steps the document travels as the bytes the
step wrote (a memoryview of them, no copy): the step functions take bytes, and a step's
save is part of its meaning (compress's object streams, encrypt's encryption).

`failed` is filled with the running step's index and operation before it starts, so
child.run can name the step in the problem it answers.
"""
from __future__ import annotations

from typing import Callable

from notrace.operations._common import PDF, Output
from notrace.operations.body import check_pdfs

__all__ = ["run_steps"]


def run_steps(inputs: list[memoryview], params: dict, *, functions: dict[str, Callable],
              failed: dict) -> tuple[str, Output]:
    """(the last step's operation name, its Output with every step's report in order:
    {"steps": [{"operation": NAME, "report": {...}}, ...]})."""
    steps = params["steps"]
    reports = []
    current = inputs
    output = Output([])
    for index, step in enumerate(steps):
        name, step_params = step["operation"], step["params"]
        failed.update(step=index, operation=name)
        output = functions[name](current, step_params, max_pages=params["max_pages"])
        check_pdfs(output, step_params.get("password"))
        reports.append({"operation": name, "report": output.report or {}})
        if index + 1 < len(steps):
            files = output.files
            if len(files) != 1 or files[0].media_type != PDF:  # the server checked: our bug
                raise ValueError(f"step {index} ({name}) answered no single PDF")
            current = [memoryview(files[0].data)]
            output = Output([])  # the bytes live on in `current` only
    failed.clear()  # what follows (the final body) is our own code, not a step's
    output.report = {"steps": reports}
    return steps[-1]["operation"], output
