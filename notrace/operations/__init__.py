"""Operations: declarations (spec, registry, pages, problems: server and child) and their
in-child implementations (child.py and the modules it imports; child only).

Importing this package is cheap and PDF-library free; `notrace.operations.child` is the
heavy entry module the fork server imports once.
"""
from notrace.operations.problems import PROBLEMS, Problem
from notrace.operations.registry import OPERATIONS
from notrace.operations.spec import REQUIRED, Inputs, Operation, Param, ParamError

__all__ = ["OPERATIONS", "PROBLEMS", "Problem", "REQUIRED", "Inputs", "Operation", "Param",
           "ParamError"]
