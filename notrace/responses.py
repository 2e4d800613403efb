"""HTTP answers: a result streamed from its memfd, a JSON document, or an RFC 9457 problem.

Runs in the server loop. Small bodies are built in memory; a job's result is never read
whole: it goes from the job's output memfd to the socket in CHUNK_BYTES pieces, each
write waiting for the client (a slow reader holds one chunk, not the body). Nothing here
touches a disk.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct

from aiohttp import web

from notrace.admission import AnswerTicket
from notrace.jobs import Answer, report_header
from notrace.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE, HttpProblem

__all__ = ["stream_answer", "json_response", "problem_response", "REPORT_HEADER"]

REPORT_HEADER = "X-Notrace-Report"
# Answers after which the rest of the request body is not worth reading: the connection
# is closed once aiohttp has drained at most its lingering time of it.
_CLOSE_AFTER = (408, 413)


async def stream_answer(request: web.Request, answer: Answer, ticket: AnswerTicket,
                        stall_s: float) -> tuple[web.StreamResponse, bool]:
    """Send `answer`, then close it (its memfd) whether the client read it all, went away
    mid-answer, read nothing for `stall_s` or was dropped for room (`ticket`, see
    notrace.admission): the connection is then aborted. Returns the (already sent)
    response and whether all of it went."""
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
        async with asyncio.timeout(stall_s):
            await response.prepare(request)
        for chunk in answer.body.chunks():
            ticket.writing()
            async with asyncio.timeout(stall_s):     # no progress for stall_s: dropped
                await response.write(chunk)
            ticket.wrote()
        await response.write_eof()
    except (ConnectionError, TimeoutError):
        # The client went away mid-answer, stopped reading, or was dropped for room.
        # Aborted, not closed: a close would wait to flush what the client never reads.
        response.force_close()
        abort_connection(request)
        return response, False
    finally:
        ticket.release()
        answer.close()
    return response, True


def abort_connection(request: web.Request) -> None:
    """Drop the client's connection now, unsent data and all (idempotent).

    SO_LINGER 0 makes the close a reset: the megabytes the kernel still holds in the
    socket's send buffer are discarded at once, not trickled to a client that stalls."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data, ensure_ascii=True).encode(),
                        content_type="application/json", status=status)


def problem_response(problem: HttpProblem, request_id: str) -> web.Response:
    response = web.Response(body=problem.body(request_id), status=problem.status,
                            content_type=PROBLEM_MEDIA_TYPE, headers=problem.headers)
    if problem.status in _CLOSE_AFTER:
        response.force_close()
    return response
