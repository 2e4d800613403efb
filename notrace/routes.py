"""Request handlers, one per endpoint. Runs in the server loop.

The operation handler is the only one that reads a body; the rest answer from state
built at start-up (catalogue, OpenAPI, docs) or from the sandbox's live state.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable

from aiohttp import web

from notrace import keys, pipeline, safe
from notrace.docs import PAGE_CSP, render_problem
from notrace.jobs import BadManifest, interpret, job_params
from notrace.logs import logger
from notrace.middleware import LOG, REQUEST_ID
from notrace.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from notrace.operations import OPERATIONS, Operation, ParamError, ocr_engine
from notrace.problems import TYPES, HttpProblem
from notrace.responses import abort_connection, json_response, stream_answer
from notrace.uploads import Upload, read_upload
from notrace.web import ASSET_TYPES, PAGE_CSP as WEB_PAGE_CSP
from sandbox import Result

__all__ = ["add_routes"]

_ERROR_CLASS = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")


def _endpoint(request: web.Request, name: str) -> None:
    request[LOG]["endpoint"] = name


async def health(request: web.Request) -> web.Response:
    _endpoint(request, "health")
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    _endpoint(request, "ready")
    sandbox = request.app.get(keys.SANDBOX)
    is_ready = sandbox is not None and sandbox.ready
    layers = [layer.to_dict() for layer in sandbox.layers()] if sandbox is not None else []
    ocr_available, ocr_detail = ocr_engine.available()  # the ocr extra, installed or not
    response = json_response({"status": "ready" if is_ready else "not ready",
                              "layers": layers,
                              "ocr": {"available": ocr_available, "detail": ocr_detail}},
                             status=200 if is_ready else 503)
    if not is_ready:
        response.headers["Retry-After"] = str(request.app[keys.SETTINGS].retry_after_s)
    return response


async def metrics(request: web.Request) -> web.Response:
    _endpoint(request, "metrics")
    body = request.app[keys.METRICS].render()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def catalogue(request: web.Request) -> web.Response:
    _endpoint(request, "catalogue")
    return web.Response(body=request.app[keys.CATALOGUE], content_type="application/json")


async def openapi(request: web.Request) -> web.Response:
    _endpoint(request, "openapi")
    return web.Response(body=request.app[keys.OPENAPI], content_type="application/json")


async def docs(request: web.Request) -> web.Response:
    _endpoint(request, "docs")
    return web.Response(text=request.app[keys.DOCS], content_type="text/html",
                        headers={"Content-Security-Policy": PAGE_CSP})


async def page(request: web.Request) -> web.Response:
    """GET /: the web page (built at start-up from the declarations; notrace.web)."""
    _endpoint(request, "page")
    return web.Response(text=request.app[keys.PAGE].html, content_type="text/html",
                        headers={"Content-Security-Policy": WEB_PAGE_CSP})


async def page_asset(request: web.Request) -> web.Response:
    """GET /app.js, /app.css: the page's script and stylesheet, from memory."""
    _endpoint(request, "page-asset")
    asset = request.app[keys.PAGE].assets[request.path.lstrip("/")]
    return web.Response(body=asset.body, headers={"Content-Type": asset.content_type})


async def problem_doc(request: web.Request) -> web.Response:
    _endpoint(request, "problem-doc")
    problem = TYPES.get(request.match_info["slug"])
    if problem is None:
        raise HttpProblem("not-found")
    return web.Response(text=render_problem(problem), content_type="text/html",
                        headers={"Content-Security-Policy": PAGE_CSP})


async def run_operation(request: web.Request) -> web.StreamResponse:
    """POST /api/v1/{operation}: stream the upload in, run the job, answer its result."""
    fields = request[LOG]
    op = OPERATIONS.get(request.match_info["operation"])
    if op is None:
        fields["endpoint"] = "unknown-operation"
        raise HttpProblem("unknown-operation", "No operation of that name; "
                          "GET /api/v1/operations lists them.")
    settings = request.app[keys.SETTINGS]
    with await _read_upload(request, op) as upload:
        try:
            validated = op.validate(upload.params)
        except ParamError as exc:
            # str(exc) is the declarations' own wording; secrets are never echoed in it.
            raise HttpProblem("bad-parameter", str(exc), extra={"param": exc.param}) from None
        sandbox = request.app[keys.SANDBOX]
        if op.name == safe.NAME:   # two phases, several jobs (notrace/safe.py)
            result = await safe.run(sandbox, upload.files, validated, settings)
        else:
            result = await sandbox.run(upload.files, job_params(op, validated, settings),
                                       limits=op.limits)
    return await _answer_job(request, op.name, op, result, max_pages=settings.max_pages)


async def run_pipeline(request: web.Request) -> web.StreamResponse:
    """POST /api/v1/pipeline: every step checked before any work (notrace.pipeline), then
    all of them in ONE job; the answer is the last step's, with every step's report."""
    settings = request.app[keys.SETTINGS]
    with await _read_upload(request, pipeline.PIPELINE) as upload:
        steps = pipeline.validate(upload.params, len(upload.files))
        pipeline.check_files(steps, upload.files)
        request[LOG]["steps"] = steps.names()  # operation names only: never a parameter
        result = await request.app[keys.SANDBOX].run(
            upload.files, steps.job_params(settings.max_pages), limits=steps.limits())
    return await _answer_job(request, pipeline.PIPELINE.name, steps.last, result,
                             max_pages=steps.manifest_pages(settings.max_pages),
                             report=pipeline.fit_report)


async def _read_upload(request: web.Request, op: Operation) -> Upload:
    """The request's upload for `op` (503 before a byte is read when the sandbox is not
    ready), counted in the log and the metrics."""
    fields = request[LOG]
    fields["operation"] = op.name
    app = request.app
    settings = app[keys.SETTINGS]
    if not app[keys.SANDBOX].ready:  # before reading a byte of the upload
        raise HttpProblem("not-ready")
    upload = await read_upload(request, op, max_bytes=settings.max_upload_mb << 20,
                               timeout_s=settings.upload_timeout_s,
                               admission=app[keys.ADMISSION])  # 503 beyond its bounds
    fields["upload_bytes"] = upload.size
    fields["files"] = len(upload.files)
    app[keys.METRICS].upload_bytes.labels(op.name).observe(upload.size)
    return upload


async def _answer_job(request: web.Request, label: str, op: Operation, result: Result, *,
                      max_pages: int,
                      report: Callable[[dict], dict] | None = None) -> web.StreamResponse:
    """Log and count the job's end, then answer its result as `op`'s (`label` names the
    endpoint in the metrics; `report` may reshape the answer's report for its header)."""
    fields = request[LOG]
    app = request.app
    settings, metrics_ = app[keys.SETTINGS], app[keys.METRICS]
    fields.update(job_status=result.status, job_wall_s=round(result.stats.wall_s, 3),
                  job_cpu_s=round(result.stats.cpu_s, 3),
                  job_rss_mb=round(result.stats.max_rss_mb, 1))
    metrics_.children_ended.labels(result.status).inc()
    if result.status not in ("busy", "restarting"):   # those never ran in a child
        metrics_.job_duration.labels(label).observe(result.stats.wall_s)
    if result.status == "error":
        # An exception escaped the entry: the document's fault as far as the client is
        # concerned (422), but maybe our bug. Only the exception's class is logged.
        fields["possible_bug"] = True
        error_class = (result.error or "").split(":", 1)[0].strip()
        if _ERROR_CLASS.fullmatch(error_class):
            fields["error_type"] = error_class
    try:
        answer = interpret(op, result, max_pages=max_pages)
    except BadManifest as exc:
        # The child's bytes do not fit the contract: that child went wrong (a bug of
        # ours, or attacker code in it), so the job crashed; never a 500 for child bytes.
        fields["possible_bug"] = True
        logger.error("bad manifest from child: %s", exc,
                     extra={"fields": {"request_id": request[REQUEST_ID]}})
        raise HttpProblem("processing-crashed") from None
    try:
        if report is not None:
            answer = dataclasses.replace(answer, report=report(answer.report))
    except BaseException:
        answer.close()          # from here on stream_answer closes it, on every path
        raise
    fields["output_bytes"] = answer.body.size
    # The answer's bytes stay counted while it streams (see notrace.admission).
    ticket = app[keys.ADMISSION].hold_answer(answer.body.size,
                                             drop=lambda: abort_connection(request))
    response, complete = await stream_answer(request, answer, ticket,
                                             stall_s=settings.answer_stall_s)
    if not complete:
        fields["client_gone"] = True
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/operations", catalogue)
    app.router.add_post("/api/v1/pipeline", run_pipeline)  # before {operation}: it wins
    app.router.add_post("/api/v1/{operation}", run_operation)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
    app.router.add_get("/problems/{slug}", problem_doc)
    app.router.add_get("/", page)
    for name in ASSET_TYPES:
        app.router.add_get(f"/{name}", page_asset)

