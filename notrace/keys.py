"""Typed keys of the application's state (set in app.make_app and its cleanup context).

Runs in the server loop.
"""
from __future__ import annotations

from aiohttp import web

from notrace.admission import Admission
from notrace.metrics import Metrics
from notrace.settings import Settings
from notrace.web import Page
from sandbox import Sandbox

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
SANDBOX = web.AppKey("sandbox", Sandbox)
ADMISSION = web.AppKey("admission", Admission)
#: Built once at start-up from the declarations: the catalogue, OpenAPI and docs bodies.
CATALOGUE = web.AppKey("catalogue", bytes)
OPENAPI = web.AppKey("openapi", bytes)
DOCS = web.AppKey("docs", str)
#: The web page at / and its script and stylesheet (notrace.web).
PAGE = web.AppKey("page", Page)
