"""The application factory. Runs in the server process.

State lives under typed AppKeys (notrace.keys). The Sandbox is the one long-lived
resource, owned by ONE cleanup context: started before the server accepts requests,
closed after in-flight requests have drained (aiohttp runs cleanup after shutdown).
Before it, notrace.hygiene hardens the process (no core dumps, not dumpable) and bounds
the library caches that would keep request data. Access control (API keys, rate limits,
CORS) is off unless its settings turn it on; then its middlewares run inside `errors`.
"""
from __future__ import annotations

import json
from typing import AsyncIterator

from aiohttp import web

from notrace import auth, cors, hygiene, keys, pipeline, ratelimit
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


#: Run once in the fork server before any child exists: the operations' first-use imports
#: and caches (and whatever a confined child could not load itself: it opens no file).
WARMUP = "notrace.operations.child:warm_up"
#: The job of dummy data every warm child runs, confined, before it is ready.
CANARY = "notrace.canary:canary"


def make_sandbox(settings: Settings) -> Sandbox:
    """The one Sandbox that runs every operation (server and CLI alike)."""
    return Sandbox(ENTRY, limits=sandbox_limits(settings), workers=settings.workers,
                   queue=settings.queue, warmup=WARMUP, canary=CANARY)


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


def _access_control(settings: Settings) -> list:
    """The middlewares inside `errors` (their problems become answers), in order: CORS
    preflights (they carry no key), the API key, the rate limits (they need the key's
    name). All run before a handler reads a byte of the body."""
    keyring = auth.read_keys_file(settings.api_keys_file) if settings.api_keys_file else None
    limiter = ratelimit.Limiter(per_min=settings.rate_per_min, burst=settings.rate_burst,
                                max_jobs=settings.max_jobs_per_key,
                                retry_after_s=settings.retry_after_s)
    chain = [cors.preflight(settings.cors_origins)] if settings.cors_origins else []
    if keyring is not None:
        chain.append(auth.middleware(keyring, protect_monitoring=settings.protect_monitoring))
    if limiter.enabled:
        chain.append(ratelimit.middleware(limiter, settings.trusted_proxies))
    return chain


def make_app(settings: Settings) -> web.Application:
    """A ready-to-run application for these settings."""
    app = web.Application(middlewares=[access, errors, *_access_control(settings)],
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
        {"operations": [op.describe() for op in OPERATIONS.values()],
         "pipeline": pipeline.describe()},
        ensure_ascii=True).encode()
    app.on_response_prepare.append(security_headers)
    if settings.cors_origins:
        app.on_response_prepare.append(cors.add_headers(settings.cors_origins))
    app.cleanup_ctx.append(_hygiene_ctx)
    app.cleanup_ctx.append(_sandbox_ctx)
    add_routes(app)
    return app
