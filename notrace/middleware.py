"""Request ids, the access log line and metrics, failures as problems, security headers.

Runs in the server loop, around every handler. Two middlewares, outermost first:
`access` (request id, timing, one log line and the request metrics, whatever happens
inside) and `errors` (the ONE place where exceptions become problem+json answers).
`security_headers` runs on every response as it is prepared, problems included.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from notrace import keys
from notrace.clients import client_address
from notrace.logs import logger
from notrace.problems import HttpProblem
from notrace.responses import problem_response

__all__ = ["access", "errors", "security_headers", "answer_protocol_errors_as_problems",
           "REQUEST_ID", "LOG", "CSP"]

#: request[REQUEST_ID]: this request's id; request[LOG]: fields for its access line.
REQUEST_ID = "notrace.request_id"
LOG = "notrace.log"
# A sane incoming id is echoed; anything else is replaced (never echoed, never logged).
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def request_id_of(request: web.Request) -> str:
    incoming = request.headers.get("X-Request-ID", "")
    return incoming if _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex


def _route_name(request: web.Request) -> str:
    """The route template (never the raw path, which may hold anything)."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def access(request: web.Request, handler) -> web.StreamResponse:
    request[REQUEST_ID] = request_id_of(request)
    fields: dict = {"request_id": request[REQUEST_ID], "method": request.method,
                    "route": _route_name(request)}
    request[LOG] = fields
    settings = request.app[keys.SETTINGS]
    if settings.log_client_ip:
        fields["client_ip"] = client_address(request, settings.trusted_proxies)
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        elapsed = time.monotonic() - started
        fields["status"] = status
        fields["duration_ms"] = round(elapsed * 1000, 1)
        label = fields.get("operation") or fields.get("endpoint") or "other"
        metrics = request.app[keys.METRICS]
        metrics.requests.labels(label, str(status)).inc()
        metrics.duration.labels(label).observe(elapsed)
        level = logging.WARNING if fields.get("possible_bug") else logging.INFO
        logger.log(level, "request", extra={"fields": fields})


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    """Every failure becomes problem+json; a 500 only for an exception of ours."""
    try:
        return await handler(request)
    except HttpProblem as problem:
        return _answer(request, problem)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return _answer(request, HttpProblem("method-not-allowed", headers={"Allow": allowed}))
    except web.HTTPNotFound:
        return _answer(request, HttpProblem("not-found"))
    except web.HTTPRequestEntityTooLarge:
        return _answer(request, HttpProblem("upload-too-large"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects are answers, not failures
        return _answer(request, HttpProblem("bad-request"))
    except asyncio.CancelledError:
        raise
    except Exception:
        # Our bug. Logged with its class and code locations only (logs.JsonFormatter).
        request[LOG]["possible_bug"] = True
        logger.error("unhandled exception", exc_info=True,
                     extra={"fields": {"request_id": request[REQUEST_ID]}})
        return _answer(request, HttpProblem("internal-error"))


def _answer(request: web.Request, problem: HttpProblem) -> web.Response:
    request[LOG]["problem"] = problem.type.slug
    if problem.status == 503:
        retry = str(request.app[keys.SETTINGS].retry_after_s)
        problem.headers.setdefault("Retry-After", retry)
    return problem_response(problem, request[REQUEST_ID])


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the same protective headers on every answer."""
    for name, value in _SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Request-ID"] = request.get(REQUEST_ID) or request_id_of(request)
    response.headers["Server"] = "notrace"


class _ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering HTTP-level errors (a request line or
    header too long, a malformed message) as problem+json with the security headers.

    These errors happen before any route or middleware runs, so aiohttp would otherwise
    answer its own text/plain page without our headers.
    """

    def handle_error(self, request, status: int = 500, exc=None, message=None):
        super().handle_error(request, status, exc, message)  # logs it, checks the writer
        slug = ("upload-too-large" if status == 413 else
                "internal-error" if status >= 500 else "bad-request")
        request_id = uuid.uuid4().hex
        response = problem_response(HttpProblem(slug), request_id)
        for name, value in _SECURITY_HEADERS.items():
            response.headers[name] = value
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Request-ID"] = request_id
        response.headers["Server"] = "notrace"
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


def answer_protocol_errors_as_problems(server: web.Server) -> None:
    """Make `server` (AppRunner.server, after setup) use _ProblemRequestHandler.

    web.Server has no hook for its handler class; it only adds __call__, so swapping the
    instance's class to this subclass keeps every other behaviour."""
    server.__class__ = _ProblemServer
