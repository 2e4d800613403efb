"""The /docs page and the /problems/<slug> pages: HTML rendered server-side from the
OpenAPI document and the problem table. Self-contained: no script at all, one inline
style allowed by its hash in the page's own Content-Security-Policy.

Runs in the server at start-up (pages are built once) and in tests.
"""
from __future__ import annotations

import base64
import hashlib
from html import escape

from notrace.problems import TYPES, ProblemType

__all__ = ["render_docs", "render_problem", "PAGE_CSP"]

_STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
          "padding:0 1rem;color:#222}code,pre{background:#f4f4f4;padding:0 .2em}"
          "table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;"
          "padding:.2rem .5rem;text-align:left;vertical-align:top}h2{margin-top:2.5rem}"
          "h3{margin-top:2rem;border-top:1px solid #ddd;padding-top:1rem}")
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
#: The CSP of these pages: the strict one, plus this page's own style by hash.
PAGE_CSP = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body>{body}</body></html>")


def _schema_text(schema: dict) -> str:
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"<code>{escape(str(v))}</code>"
                                           for v in schema["enum"]))
    elif "pattern" in schema:
        parts.append(f"pattern <code>{escape(schema['pattern'])}</code>")
    if "x-notrace-minimum" in schema or "x-notrace-maximum" in schema:
        parts.append(f"from {schema.get('x-notrace-minimum', '-inf')} "
                     f"to {schema.get('x-notrace-maximum', 'inf')}")
    return "; ".join(parts)


def _operation_html(path: str, op: dict) -> str:
    body = op["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]
    required = set(form["required"])
    rows = []
    for name, schema in form["properties"].items():
        kind = schema.get("x-notrace-kind", "file")
        default = escape(str(schema["default"])) if "default" in schema else ""
        rows.append(f"<tr><td><code>{escape(name)}</code></td><td>{escape(kind)}</td>"
                    f"<td>{'yes' if name in required else ''}</td><td>{default}</td>"
                    f"<td>{escape(schema.get('description', ''))} {_schema_text(schema)}</td></tr>")
    forms = ", ".join(f"<code>{escape(m)}</code>" for m in body)
    answers = ", ".join(f"<code>{escape(m)}</code>" for m in op["responses"]["200"]["content"])
    failures = ", ".join(s for s in op["responses"] if s != "200")
    return (f'<h3 id="op-{escape(op["operationId"])}"><code>POST {escape(path)}</code></h3>'
            f"<p>{escape(op['summary'])}</p><p>Request: {forms}"
            f"{' (raw body: parameters in the query string)' if 'application/pdf' in body else ''}."
            f" Answer: {answers}. Failures: {failures} (problem+json).</p>"
            "<table><tr><th>part</th><th>type</th><th>required</th><th>default</th>"
            f"<th>meaning</th></tr>{''.join(rows)}</table>" + _headers_html(op["responses"]))


def _headers_html(responses: dict) -> str:
    """The response headers the operation may send, with the statuses that carry each."""
    seen: dict[str, tuple[list[str], str]] = {}
    for status, response in responses.items():
        for name, header in response.get("headers", {}).items():
            seen.setdefault(name, ([], header.get("description", "")))[0].append(status)
    rows = "".join(f"<tr><td><code>{escape(name)}</code></td><td>{', '.join(statuses)}</td>"
                   f"<td>{escape(meaning)}</td></tr>"
                   for name, (statuses, meaning) in seen.items())
    return ("<table><tr><th>response header</th><th>on</th><th>meaning</th></tr>"
            f"{rows}</table>") if rows else ""


def _problems_table() -> str:
    rows = "".join(f'<tr id="problem-{t.slug}"><td><code>{t.uri}</code></td><td>{t.status}</td>'
                   f"<td>{escape(t.title)}</td><td>{escape(t.doc)}</td></tr>"
                   for t in TYPES.values())
    return ("<table><tr><th>type</th><th>status</th><th>title</th><th>when</th></tr>"
            f"{rows}</table>")


def render_docs(spec: dict) -> str:
    """The whole API as one readable page."""
    info = spec["info"]
    ops, others = [], []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if path.startswith("/api/v1/") and method == "post":
                ops.append(_operation_html(path, op))
            else:
                others.append(f"<tr><td><code>{method.upper()} {escape(path)}</code></td>"
                              f"<td>{escape(op['summary'])}</td></tr>")
    body = (f"<h1>{escape(info['title'])} {escape(info['version'])}</h1>"
            f"<p>{escape(info['description'])}</p>"
            "<p>Send input files as parts named <code>file</code> (their order is kept) and "
            "parameters as text parts of a <code>multipart/form-data</code> body. The machine-"
            'readable description is <a href="/openapi.json">/openapi.json</a>.</p>'
            f"<h2>Service endpoints</h2><table>{''.join(others)}</table>"
            f"<h2>Operations</h2>{''.join(ops)}"
            "<h2 id=\"problem-types\">Problem types</h2><p>Failures answer <code>application/problem+json</code> "
            "(RFC 9457) with <code>type</code>, <code>title</code>, <code>status</code>, "
            "<code>detail</code> and <code>instance</code> (the request id).</p>"
            f"{_problems_table()}")
    return _page(f"{info['title']} API", body)


def render_problem(problem: ProblemType) -> str:
    """The page a problem `type` URI points to."""
    body = (f"<h1>{escape(problem.title)}</h1><p>HTTP status {problem.status}, type "
            f"<code>{problem.uri}</code>.</p><p>{escape(problem.doc)}</p>"
            '<p>All problem types: <a href="/docs#problem-types">/docs</a>.</p>')
    return _page(problem.title, body)
