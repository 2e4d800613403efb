"""The web page at GET / and its two assets, built once at start-up from the declarations.

Runs in the server at start-up (and in tests). The HTML is generated here from
notrace.operations (one <option> per operation, one fieldset of labelled controls per
operation: notrace.web.controls); the behaviour is static/app.js and the look
static/app.css, both package data served from memory by the same server. The page has no
inline script or style and loads nothing from anywhere else, so it runs under PAGE_CSP.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
from html import escape
from typing import Mapping

from notrace.operations.spec import Operation
from notrace.uploads import max_files
from notrace.web.controls import control

__all__ = ["PAGE_CSP", "ASSET_TYPES", "Asset", "Page", "build"]

#: Only this server's own script and stylesheet; requests only to this server; downloads
#: are made from blob: URLs. No inline code, no frames, no <base>, forms post here only.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "img-src 'self' blob: data:; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")
#: The assets, by the name they are served under (/<name>), with their media types.
ASSET_TYPES = {"app.js": "text/javascript; charset=utf-8",
               "app.css": "text/css; charset=utf-8"}
#: The one line the page says about the files.
NOTICE = ("Your files are processed in memory by a single-use sandboxed process and never "
          "stored: not on disk, not in a log. The answer comes straight back to this browser.")
_TYPE_WORDS = {"application/pdf": "PDF", "image/jpeg": "JPEG", "image/png": "PNG"}
#: File name endings the picker offers besides the media types (some systems go by name).
_ENDINGS = {"application/pdf": (".pdf",), "image/jpeg": (".jpg", ".jpeg"), "image/png": (".png",)}


@dataclasses.dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


@dataclasses.dataclass(frozen=True)
class Page:
    html: str
    assets: Mapping[str, Asset]


def _files_hint(op: Operation) -> str:
    kinds = " or ".join(_TYPE_WORDS.get(m, m) for m in op.inputs.media_types)
    low, high = op.inputs.min, max_files(op)
    if high == 1:
        return f"Takes one {kinds} file."
    return (f"Takes {low} to {high} {kinds} files, used in the order listed; "
            "move them up or down to change it.")


def _option(op: Operation, selected: bool) -> str:
    types = op.inputs.media_types
    accept = ",".join((*types, *(e for m in types for e in _ENDINGS.get(m, ()))))
    return (f'<option value="{escape(op.name)}" data-min="{op.inputs.min}" '
            f'data-max="{max_files(op)}" data-accept="{escape(accept)}" '
            f'data-output="{escape(op.output)}" data-summary="{escape(op.summary)}" '
            f'data-hint="{escape(_files_hint(op))}"{" selected" if selected else ""}>'
            f"{escape(op.name)}</option>")


def _fieldset(op: Operation, selected: bool) -> str:
    controls = "".join(control(op, p) for p in op.params) or "<p>No parameters.</p>"
    hidden = "" if selected else " hidden disabled"
    one_of = ""
    if op.one_of:
        one_of = ('<p class="help">Give exactly one of: '
                  f"{escape(', '.join(op.one_of))}.</p>")
    if op.any_of:
        one_of += ('<p class="help">Give at least one of: '
                   f"{escape(', '.join(op.any_of))}.</p>")
    return (f'<fieldset class="params" id="params-{escape(op.name)}" '
            f'data-operation="{escape(op.name)}"{hidden}>'
            f"<legend>Options of {escape(op.name)}</legend>{one_of}{controls}</fieldset>")


def _html(operations: Mapping[str, Operation]) -> str:
    first = next(iter(operations))
    options = "".join(_option(op, name == first) for name, op in operations.items())
    fieldsets = "".join(_fieldset(op, name == first) for name, op in operations.items())
    first_op = operations[first]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>notrace: PDF tools</title><link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/app.css"><script src="/app.js" defer></script>'
        "</head><body><header><h1>notrace</h1>"
        f'<p class="notice" id="notice">{escape(NOTICE)}</p></header><main>'
        "<noscript><p>This page needs JavaScript. The API works without it: see "
        '<a href="/docs">/docs</a>.</p></noscript>'
        '<form id="job" novalidate>'
        '<div class="field"><label for="operation">Operation</label>'
        f'<select id="operation" name="operation" aria-describedby="summary">{options}</select>'
        f'<p class="help" id="summary">{escape(first_op.summary)}</p></div>'
        '<div class="field files"><label for="files">Files</label>'
        '<div class="drop" id="drop"><p>Drop files here, or choose them:</p>'
        '<input type="file" id="files" multiple aria-describedby="files-hint"></div>'
        f'<p class="help" id="files-hint">{escape(_files_hint(first_op))}</p>'
        '<ol id="file-list" aria-label="Chosen files, in order"></ol></div>'
        f"{fieldsets}"
        '<div class="field" id="key-field" hidden><label for="api-key">API key</label>'
        '<input type="password" id="api-key" autocomplete="off" spellcheck="false" '
        'aria-describedby="key-help"><p class="help" id="key-help">This service asks for '
        "an API key. It is kept in this page's memory only and sent with each request; "
        "reloading the page forgets it.</p></div>"
        '<div class="actions"><button type="submit" id="run">Run</button></div>'
        '<div class="progress" id="progress-box" hidden><label for="progress">Upload</label>'
        '<progress id="progress" max="100" value="0"></progress></div>'
        '<p id="status" role="status" aria-live="polite"></p>'
        '<div class="problem" id="problem" role="alert" hidden>'
        '<h2 id="problem-title"></h2><p id="problem-detail"></p></div>'
        '<div class="result" id="result" hidden><h2>Result</h2>'
        '<p><a id="download" href="#">Download</a></p><dl id="report"></dl>'
        '<pre id="json-result" tabindex="0" aria-label="JSON answer" hidden></pre></div>'
        "</form></main><footer><p>The same operations as an HTTP API: "
        '<a href="/docs">/docs</a>, <a href="/openapi.json">/openapi.json</a>.</p></footer>'
        "</body></html>")


def _asset(name: str) -> Asset:
    body = importlib.resources.files("notrace.web").joinpath("static", name).read_bytes()
    return Asset(body, ASSET_TYPES[name])


def build(operations: Mapping[str, Operation]) -> Page:
    """The page for these operations, and its assets (read once from the package)."""
    return Page(_html(operations), {name: _asset(name) for name in ASSET_TYPES})
