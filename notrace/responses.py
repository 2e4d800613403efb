"""HTTP answers: a result streamed from its memfd, a JSON document, or an RFC 9457 problem.

Runs in the server loop. Small bodies are built in memory; a job's result is never read
whole: it goes from the job's output memfd to the socket in CHUNK_BYTES pieces, each
write waiting for the client (a slow reader holds one chunk, not the body). Nothing here
touches a disk.
"""
from __future__ import annotations

import asyncio
import json

from aiohttp import web

from notrace.jobs import Answer, report_header
from notrace.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE, HttpProblem

__all__ = ["stream_answer", "json_response", "problem_response", "REPORT_HEADER"]

REPORT_HEADER = "X-Notrace-Report"
# Answers after which the rest of the request body is not worth reading: the connection
# is closed once aiohttp has drained at most its lingering time of it.
_CLOSE_AFTER = (408, 413)


async def stream_answer(request: web.Request, answer: Answer,
                        timeout_s: float) -> tuple[web.StreamResponse, bool]:
    """Send `answer` within `timeout_s`, then close it (its memfd) whether the client read
    it all, went away mid-answer or read too slowly (the connection is then closed).
    Returns the (already sent) response and whether all of it went."""
    headers = {}
    report = report_header(answer.report)
    if report is not None:
        headers[REPORT_HEADER] = report
    if answer.filename is not None:
        # The name is our own (checked against SAFE_FILENAME), so no quoting issue.
        headers["Content-Disposition"] = f'attachment; filename="{answer.filename}"'
    response = web.StreamResponse(headers=headers)
    response.content_type = answer.media_type
    response.content_length = answer.body.size
    try:
        async with asyncio.timeout(timeout_s):
            await response.prepare(request)
            for chunk in answer.body.chunks():
                await response.write(chunk)
            await response.write_eof()
    except (ConnectionError, TimeoutError):
        # The client went away mid-answer, or stopped reading: nothing more to send.
        # Aborted, not closed: a close would wait to flush what the client never reads.
        response.force_close()
        if request.transport is not None:
            request.transport.abort()
        return response, False
    finally:
        answer.close()
    return response, True


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data, ensure_ascii=True).encode(),
                        content_type="application/json", status=status)


def problem_response(problem: HttpProblem, request_id: str) -> web.Response:
    response = web.Response(body=problem.body(request_id), status=problem.status,
                            content_type=PROBLEM_MEDIA_TYPE, headers=problem.headers)
    if problem.status in _CLOSE_AFTER:
        response.force_close()
    return response
