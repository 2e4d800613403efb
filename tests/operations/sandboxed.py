"""One operation through a real Sandbox and the server's own answer mapping (shared by
the tests that run operations in confined children)."""
from __future__ import annotations

from notrace.jobs import interpret
from notrace.operations import OPERATIONS
from notrace.problems import HttpProblem
from sandbox import Sandbox


async def answer(sb: Sandbox, name: str, data: bytes, raw: dict, *,
                 max_pages: int) -> tuple[str, bytes] | HttpProblem:
    """(media type, body) of a 2xx for operation `name` on `data` with the raw text
    params `raw`, else the HttpProblem the server would answer."""
    op = OPERATIONS[name]
    result = await sb.run([data], {"operation": name, "params": op.validate(raw),
                                   "max_pages": max_pages})
    try:
        with interpret(op, result, max_pages=max_pages) as reply:
            return reply.media_type, reply.body.read()
    except HttpProblem as problem:
        return problem
