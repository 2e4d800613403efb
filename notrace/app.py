"""The application factory. Runs in the server process.

State lives under typed AppKeys (notrace.keys). The Sandbox is the one long-lived
resource, owned by ONE cleanup context: started before the server accepts requests,
closed after in-flight requests have drained (aiohttp runs cleanup after shutdown).
Before it, notrace.hygiene hardens the process (no core dumps, not dumpable) and bounds
the library caches that would keep request data.
"""
from __future__ import annotations

import json
from typing import AsyncIterator

from aiohttp import web

from notrace import hygiene, keys
from notrace.admission import Admission
from notrace.docs import render_docs
from notrace.jobs import ENTRY, sandbox_limits
from notrace.logs import logger
from notrace.metrics import Metrics
from notrace.middleware import access, errors, security_headers
from notrace.openapi import build as build_openapi
from notrace.operations import OPERATIONS
from notrace.routes import add_routes
from notrace.settings import Settings
from notrace.web import build as build_page
from sandbox import Sandbox

__all__ = ["make_app", "make_sandbox"]


def make_sandbox(settings: Settings) -> Sandbox:
    """The one Sandbox that runs every operation (server and CLI alike)."""
    return Sandbox(ENTRY, limits=sandbox_limits(settings), workers=settings.workers,
                   queue=settings.queue)


async def _hygiene_ctx(app: web.Application) -> AsyncIterator[None]:
    """Before anything else starts: no core dumps, not dumpable, no request caches."""
    hygiene.apply()
    yield


async def _sandbox_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    sandbox = make_sandbox(settings)
    await sandbox.start()
    app[keys.SANDBOX] = sandbox
    app[keys.METRICS].watch(sandbox)
    logger.info("sandbox ready", extra={"fields": {
        "workers": settings.workers, "queue": settings.queue,
        "layers": {layer.name: layer.available for layer in sandbox.layers()}}})
    try:
        yield
    finally:
        await sandbox.close()
        logger.info("sandbox closed")


def make_app(settings: Settings) -> web.Application:
    """A ready-to-run application for these settings."""
    app = web.Application(middlewares=[access, errors],
                          # Only request.read()/post() use this; we stream, but keep the
                          # same bound in case anything ever reads a body whole.
                          client_max_size=settings.max_upload_mb << 20)
    app[keys.SETTINGS] = settings
    app[keys.METRICS] = Metrics()
    app[keys.ADMISSION] = Admission.for_settings(settings)
    spec = build_openapi(OPERATIONS)
    app[keys.OPENAPI] = json.dumps(spec, ensure_ascii=True).encode()
    app[keys.DOCS] = render_docs(spec)
    app[keys.PAGE] = build_page(OPERATIONS)
    app[keys.CATALOGUE] = json.dumps(
        {"operations": [op.describe() for op in OPERATIONS.values()]},
        ensure_ascii=True).encode()
    app.on_response_prepare.append(security_headers)
    app.cleanup_ctx.append(_hygiene_ctx)
    app.cleanup_ctx.append(_sandbox_ctx)
    add_routes(app)
    return app
