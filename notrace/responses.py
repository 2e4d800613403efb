"""HTTP answers: a result streamed from its memfd, a JSON document, or an RFC 9457 problem.

Runs in the server loop. Small bodies are built in memory; a job's result is never read
whole: it goes from the job's output memfd to the socket in CHUNK_BYTES pieces, each
write waiting for the client (a slow reader holds one chunk, not the body). Nothing here
touches a disk.
"""
from __future__ import annotations

import json

from aiohttp import web

from notrace.jobs import Answer, report_header
from notrace.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE, HttpProblem

__all__ = ["stream_answer", "json_response", "problem_response", "REPORT_HEADER"]

REPORT_HEADER = "X-Notrace-Report"
# Answers after which the rest of the request body is not worth reading: the connection
# is closed once aiohttp has drained at most its lingering time of it.
_CLOSE_AFTER = (408, 413)


async def stream_answer(request: web.Request,
                        answer: Answer) -> tuple[web.StreamResponse, bool]:
    """Send `answer`, then close it (its memfd) whether the client read it all or went
    away mid-answer. Returns the (already sent) response and whether all of it went."""
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
        await response.prepare(request)
        for chunk in answer.body.chunks():
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:  # the client went away mid-answer: nothing more to send
        response.force_close()
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
