"""Jobs: what the sandbox is asked to do for one request, and what its Result means.

Runs in the server loop (and in the CLI, through Sandbox.run_sync): the HTTP handler and
`notrace run` share this module, so both answer the same bytes and the same problems.
Everything a child hands back is untrusted until checked here: the manifest must be a
small JSON object whose file list matches the outputs exactly.
"""
from __future__ import annotations

import dataclasses
import io
import json
import re
import zipfile
from notrace.operations.spec import Operation
from notrace.problems import for_child_code, for_sandbox_status
from notrace.settings import Settings
from sandbox import Limits, Result

__all__ = ["ENTRY", "Answer", "BadManifest", "job_params", "sandbox_limits", "interpret",
           "report_header"]

#: The one in-child entry that runs every operation.
ENTRY = "notrace.operations.child:run"
_MAX_MANIFEST_BYTES = 64 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Fixed timestamp for zip entries: results carry no trace of when they were made.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class BadManifest(Exception):
    """The child answered "ok" with a manifest that does not fit: a bug of ours."""


@dataclasses.dataclass(frozen=True)
class Answer:
    """A successful result, ready to send: body, its media type, a download name, and
    the operation's report (a small JSON object, e.g. what sanitize removed)."""

    body: bytes
    media_type: str
    filename: str | None
    report: dict
    files: int


def sandbox_limits(settings: Settings) -> Limits:
    return Limits(memory_mb=settings.child_memory_mb, cpu_s=settings.child_cpu_s,
                  wall_s=settings.child_wall_s, output_mb=settings.child_output_mb)


def job_params(op: Operation, validated: dict, settings: Settings) -> dict:
    """The params dict the child entry receives."""
    return {"operation": op.name, "params": validated, "max_pages": settings.max_pages}


def interpret(op: Operation, result: Result) -> Answer:
    """The Answer for an ok Result, else raise the HttpProblem it means.

    Raises BadManifest when a child answered ok with outputs that do not fit.
    """
    if result.status != "ok":
        raise for_sandbox_status(result.status)
    manifest, files = _manifest(result.outputs)
    if "problem" in manifest:
        raise for_child_code(manifest.get("problem"), manifest.get("detail"))
    entries = manifest.get("files")
    report = manifest.get("report", {})
    if not isinstance(entries, list) or len(entries) != len(files) or not isinstance(report, dict):
        raise BadManifest("the manifest's file list does not match the outputs")
    names, types = [], []
    for entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("media_type"), str)):
            raise BadManifest("a manifest file entry is not {name, media_type}")
        names.append(_safe_filename(entry["name"]))
        types.append(entry["media_type"])
    if op.output == "json":
        body = files[0] if files else json.dumps(report, ensure_ascii=True).encode()
        return Answer(body, "application/json", None, report, len(files))
    if not files and op.output != "archive":  # an archive may be empty (no images found)
        raise BadManifest("an operation answering a document produced none")
    if op.output == "archive" or len(files) > 1:
        return Answer(_zip(names, files), "application/zip", f"{op.name}.zip", report,
                      len(files))
    media_type = types[0] if types[0] in ("application/pdf", "application/zip") \
        else "application/octet-stream"
    return Answer(files[0], media_type, names[0], report, 1)


def _manifest(outputs: list[bytes]) -> tuple[dict, list[bytes]]:
    if not outputs or len(outputs[0]) > _MAX_MANIFEST_BYTES:
        raise BadManifest("no manifest, or one that is too large")
    try:
        manifest = json.loads(outputs[0])
    except ValueError:
        raise BadManifest("the manifest is not JSON") from None
    if not isinstance(manifest, dict):
        raise BadManifest("the manifest is not a JSON object")
    return manifest, list(outputs[1:])


def _safe_filename(name: str) -> str:
    """A download name from the child's manifest (the child's own naming, e.g. part-1.pdf):
    ASCII letters, digits, dot, dash and underscore only; never a path."""
    cleaned = _SAFE_NAME.sub("_", name.rsplit("/", 1)[-1]).strip("._")[:100]
    return cleaned or "result"


def _zip(names: list[str], files: list[bytes]) -> bytes:
    """A zip built in memory (never a temporary file); duplicate names get a suffix."""
    buffer = io.BytesIO()
    seen: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in zip(names, files):
            unique, n = name, 1
            while unique in seen:
                n += 1
                stem, dot, ext = name.rpartition(".")
                unique = f"{stem}-{n}.{ext}" if dot else f"{name}-{n}"
            seen.add(unique)
            info = zipfile.ZipInfo(unique, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=1)
    return buffer.getvalue()


def report_header(report: dict, limit: int = 4096) -> str | None:
    """The report as one header value (ASCII JSON: no CR/LF possible), None if too big."""
    text = json.dumps(report, ensure_ascii=True, separators=(",", ":"))
    return text if len(text) <= limit else None
