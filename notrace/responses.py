"""HTTP answers: a result document, a JSON document, or an RFC 9457 problem.

Runs in the server loop. Bodies are built in memory; nothing here touches a disk.
"""
from __future__ import annotations

import json

from aiohttp import web

from notrace.jobs import Answer, report_header
from notrace.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE, HttpProblem

__all__ = ["answer_response", "json_response", "problem_response", "REPORT_HEADER"]

REPORT_HEADER = "X-Notrace-Report"
# Answers after which the rest of the request body is not worth reading: the connection
# is closed once aiohttp has drained at most its lingering time of it.
_CLOSE_AFTER = (408, 413)


def answer_response(answer: Answer) -> web.Response:
    headers = {}
    report = report_header(answer.report)
    if report is not None:
        headers[REPORT_HEADER] = report
    if answer.filename is not None:
        # The name is our own (sanitized to [A-Za-z0-9._-]), so no quoting issue.
        headers["Content-Disposition"] = f'attachment; filename="{answer.filename}"'
    return web.Response(body=answer.body, content_type=answer.media_type, headers=headers)


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data, ensure_ascii=True).encode(),
                        content_type="application/json", status=status)


def problem_response(problem: HttpProblem, request_id: str) -> web.Response:
    response = web.Response(body=problem.body(request_id), status=problem.status,
                            content_type=PROBLEM_MEDIA_TYPE, headers=problem.headers)
    if problem.status in _CLOSE_AFTER:
        response.force_close()
    return response
