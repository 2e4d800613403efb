"""The OpenAPI 3.1 document, generated from the same declarations that validate requests.

Runs in the server at start-up (built once, served as bytes) and in tests. Operations
come from notrace.operations.OPERATIONS, problem types from notrace.problems.TYPES.
"""
from __future__ import annotations

import importlib.metadata
from typing import Iterable

from notrace import pipeline
from notrace.operations.spec import OUTPUT_MEDIA_TYPES, Operation
from notrace.problems import MEDIA_TYPE as PROBLEM, TYPES
from notrace.responses import REPORT_HEADER
from notrace.uploads import max_files, secret_header, takes_raw_pdf

__all__ = ["build"]

# Statuses an operation request may answer, besides 200.
_OPERATION_FAILURES = (400, 401, 408, 413, 415, 422, 429, 500, 503)
# Every response header an operation's answer may carry, described here once; the
# responses below (and so /docs) name them. None is required: each is sent when it applies.
HEADERS = {
    REPORT_HEADER: "The operation's report as JSON (e.g. what sanitize removed), when it "
                   "fits in a header.",
    "Content-Disposition": 'On a file answer (a PDF, a zip, an image; not JSON): '
                           '`attachment; filename="NAME"`, the answer\'s own download name '
                           '(`document.pdf`, `split.zip`...).',
    "Retry-After": "Seconds to wait before trying again.",
    "WWW-Authenticate": 'The challenge: `Bearer realm="notrace"` (with '
                        '`error="invalid_token"` for a wrong key).',
    "X-Request-ID": "The request's id (the problem's `instance`; the log lines carry it): "
                    "the client's own X-Request-ID when it sent a sane one, else a new one.",
}
# Answers that carry a header of their own (401: the challenge; 429 and 503: when to retry).
_PROBLEM_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After",),
                    503: ("Retry-After",)}
# With API keys on (NOTRACE_API_KEYS_FILE), every endpoint but these needs a key.
_OPEN = [{}]
_KEYED = [{}, {"bearer": []}, {"apiKey": []}]
_BINARY = {"type": "string", "format": "binary"}


def _version() -> str:
    try:
        return importlib.metadata.version("notrace")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "0+source"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _headers(*names: str) -> dict:
    """responses.*.headers for `names`, described from HEADERS."""
    return {name: {"description": HEADERS[name], "schema": {"type": "string"}}
            for name in names}


def _problem_responses(statuses: Iterable[int]) -> dict:
    out = {}
    for status in statuses:
        slugs = sorted(t.slug for t in TYPES.values() if t.status == status)
        out[str(status)] = {
            "description": "Problem: " + ", ".join(f"`{s}`" for s in slugs),
            "headers": _headers(*_PROBLEM_HEADERS.get(status, ()), "X-Request-ID"),
            "content": {PROBLEM: {"schema": _ref("Problem")}},
        }
    return out


def _multipart_schema(op: Operation) -> dict:
    files: dict = dict(_BINARY, contentMediaType=op.inputs.media_types[0])
    if max_files(op) > 1:
        files = {"type": "array", "items": files, "minItems": op.inputs.min,
                 "maxItems": max_files(op)}
    files["description"] = ("The input files, in order (the order of the parts is the order "
                            "used). Accepted: " + ", ".join(op.inputs.media_types))
    props = {"file": files, **{p.name: p.json_schema() for p in op.params}}
    required = ["file"] + [p.name for p in op.params if p.required]
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


def _operation(op: Operation) -> dict:
    content = {"multipart/form-data": {
        "schema": _multipart_schema(op),
        "encoding": {"file": {"contentType": ", ".join(op.inputs.media_types)}},
    }}
    parameters = []
    if takes_raw_pdf(op):
        content["application/pdf"] = {"schema": _BINARY}
        # Optional here: with multipart they may come as text parts. Secrets never travel
        # in the query string (it is cached and logged): they have their own header.
        parameters = [{"name": secret_header(p.name) if p.secret else p.name,
                       "in": "header" if p.secret else "query", "required": False,
                       "schema": p.json_schema(), "description": p.description}
                      for p in op.params]
    ok_content = {m: {"schema": {"type": "object"} if m == "application/json" else _BINARY}
                  for m in OUTPUT_MEDIA_TYPES[op.output]}
    return {
        "operationId": op.name,
        "summary": op.summary,
        "tags": ["operations"],
        "parameters": parameters,
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {"description": "The result (a single document as an attachment, "
                                   "several as a zip, data as JSON).",
                    "headers": _headers(REPORT_HEADER, *_file_header(op.output),
                                        "X-Request-ID"),
                    "content": ok_content},
            **_problem_responses(_OPERATION_FAILURES),
        },
    }


def _file_header(*outputs: str) -> tuple[str, ...]:
    """Content-Disposition when one of these outputs may answer a file (not JSON)."""
    files = any(m != "application/json" for o in outputs for m in OUTPUT_MEDIA_TYPES[o])
    return ("Content-Disposition",) if files else ()


def _pipeline() -> dict:
    """POST /api/v1/pipeline: an operation request whose `steps` part is JSON, its schema
    generated from the declarations (one alternative per operation: notrace.pipeline);
    it answers whatever its last step answers."""
    post = _operation(pipeline.PIPELINE)
    post["operationId"] = pipeline.PIPELINE.name
    form = post["requestBody"]["content"]["multipart/form-data"]
    form["schema"]["properties"]["steps"] = pipeline.steps_schema()
    form["encoding"]["steps"] = {"contentType": "application/json"}
    ok = post["responses"]["200"]
    ok["description"] = "The last step's result (one document, a zip, or JSON)."
    ok["headers"] = _headers(REPORT_HEADER, *_file_header(*OUTPUT_MEDIA_TYPES),
                             "X-Request-ID")
    ok["headers"][REPORT_HEADER]["description"] = (
        'Every step\'s report in order: {"steps": [{"operation": NAME, "report": {...}}]}; '
        'a step whose report does not fit the header is {"operation": NAME, "omitted": true}.')
    ok["content"] = {m: {"schema": {"type": "object"} if m == "application/json" else _BINARY}
                     for kind in OUTPUT_MEDIA_TYPES.values() for m in kind}
    return post


def _get(summary: str, media_type: str, schema: dict, extra: dict | None = None) -> dict:
    responses = {"200": {"description": "OK", "content": {media_type: {"schema": schema}}}}
    responses.update(extra or {})
    return {"get": {"summary": summary, "tags": ["service"], "responses": responses}}


def _components() -> dict:
    param_schema = {"type": "object", "required": ["name", "type", "description", "required"],
                    "properties": {"name": {"type": "string"}, "type": {"type": "string"},
                                   "description": {"type": "string"},
                                   "required": {"type": "boolean"}}}
    return {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "An API key (`notrace keys new NAME`), needed only when the "
                                  "server runs with NOTRACE_API_KEYS_FILE."},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                   "description": "The same key in its own header."},
    }, "schemas": {
        "Problem": {
            "type": "object", "required": ["type", "title", "status", "detail", "instance"],
            "properties": {
                "type": {"type": "string", "enum": sorted(t.uri for t in TYPES.values())},
                "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"},
                "instance": {"type": "string", "description": "The request id."},
                "param": {"type": "string", "description": "The parameter at fault."},
                "step": {"type": "integer", "description": "A pipeline's step at fault "
                         "(its index in `steps`, from 0)."},
                "operation": {"type": "string", "description": "That step's operation."},
            },
        },
        "Operation": {
            "type": "object", "required": ["name", "summary", "inputs", "params", "output"],
            "properties": {
                "name": {"type": "string"}, "summary": {"type": "string"},
                "inputs": {"type": "object", "required": ["min", "max", "media_types"],
                           "properties": {"min": {"type": "integer"},
                                          "max": {"type": "integer"},
                                          "media_types": {"type": "array",
                                                          "items": {"type": "string"}}}},
                "params": {"type": "array", "items": param_schema},
                "output": {"type": "string", "enum": sorted(OUTPUT_MEDIA_TYPES)},
            },
        },
        "Layer": {"type": "object", "required": ["name", "available", "detail"],
                  "properties": {"name": {"type": "string"}, "available": {"type": "boolean"},
                                 "detail": {"type": "string"}}},
        "Readiness": {"type": "object", "required": ["status", "layers", "ocr"],
                      "properties": {"status": {"type": "string", "enum": ["ready", "not ready"]},
                                     "layers": {"type": "array", "items": _ref("Layer")},
                                     "ocr": {"type": "object", "required": ["available", "detail"],
                                             "description": "Whether the ocr operation exists here (the extra notrace[ocr]) and why not.",
                                             "properties": {"available": {"type": "boolean"},
                                                            "detail": {"type": "string"}}}}},
    }}


def build(operations: dict[str, Operation]) -> dict:
    """The whole OpenAPI 3.1 document for these operations."""
    paths = {f"/api/v1/{name}": {"post": _operation(op)} for name, op in operations.items()}
    paths["/api/v1/pipeline"] = {"post": _pipeline()}
    paths["/api/v1/operations"] = _get(
        "The catalogue of operations.", "application/json",
        {"type": "object", "required": ["operations"],
         "properties": {"operations": {"type": "array", "items": _ref("Operation")},
                        "pipeline": {"type": "object", "description": "POST /api/v1/pipeline: "
                                     "its endpoint, max_steps, steps part, and the "
                                     "operations that can only be first or last."}}})
    paths["/openapi.json"] = _get("This document.", "application/json", {"type": "object"})
    paths["/docs"] = _get("This document, as a readable page.", "text/html", {"type": "string"})
    paths["/"] = _get("The web page: every operation as a form, with its own /app.js and "
                      "/app.css.", "text/html", {"type": "string"})
    paths["/health"] = _get("Liveness: the server answers.", "application/json",
                            {"type": "object", "required": ["status"],
                             "properties": {"status": {"type": "string", "const": "ok"}}})
    paths["/ready"] = _get(
        "Readiness: the sandbox has warm children; lists the isolation layers.",
        "application/json", _ref("Readiness"),
        {"503": {"description": "Not ready (starting, restarting or stopping).",
                 "content": {"application/json": {"schema": _ref("Readiness")}}}})
    paths["/metrics"] = _get("Prometheus metrics.", "text/plain", {"type": "string"})
    for path in ("/api/v1/operations", "/ready", "/metrics"):
        paths[path]["get"]["responses"].update(_problem_responses((401,)))
    for path in ("/openapi.json", "/docs", "/", "/health"):
        paths[path]["get"]["security"] = _OPEN
    paths["/problems/{slug}"] = {"get": {
        "security": _OPEN,
        "summary": "What a problem type means.", "tags": ["service"],
        "parameters": [{"name": "slug", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "OK",
                              "content": {"text/html": {"schema": {"type": "string"}}}},
                      **_problem_responses((404,))},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "notrace", "version": _version(),
                 "description": "A zero-trace PDF service: every upload is processed in a "
                                "fresh, confined, single-use child process; nothing is "
                                "written to disk or to a log."},
        "paths": paths,
        "security": _KEYED,
        "components": _components(),
    }
