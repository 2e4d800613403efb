"""Embedded files: attachments (list, or extract) and attach. Runs in the CHILD.

Only the document's EmbeddedFiles name tree is read and written (pikepdf.Attachments);
files attached to annotations are not listed. Names: the client's `names` are reduced
to letters, digits, dot, dash and underscore (body.safe_filename: no path, no control
character) before they enter the document, and the names of extracted members are the
document's own reduced the same way, prefixed by their position. Nothing about the
upload (its part's filename) is ever read: the service never sees it.
"""
from __future__ import annotations

import pikepdf

from notrace.operations._common import Output, OutputFile, json_output, open_pdf, pdf_output
from notrace.operations.body import safe_filename
from notrace.operations.formats import SNIFF_BYTES, sniff
from notrace.operations.problems import Problem

__all__ = ["MAX_LISTED", "attachments", "attach"]

#: Attachments listed or extracted at most (more: "truncated").
MAX_LISTED = 1000
_OCTETS = "application/octet-stream"


def _entries(pdf: pikepdf.Pdf) -> tuple[list[tuple[str, pikepdf.AttachedFileSpec]], bool]:
    entries, truncated = [], False
    for name, spec in pdf.attachments.items():
        if len(entries) >= MAX_LISTED:
            truncated = True
            break
        entries.append((str(name), spec))
    return entries, truncated


def _describe(name: str, spec: pikepdf.AttachedFileSpec, data: bytes) -> dict:
    """The listing of one attachment; `size` is its decoded length (the /Size a
    document declares may be absent or wrong)."""
    embedded = spec.get_file()
    return {"name": name, "filename": str(spec.filename or ""),
            "description": str(spec.description or ""), "size": len(data),
            "mime_type": str(embedded.mime_type or "") or None}


def attachments(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """{"attachments": [...], "truncated"}; with `extract`, a zip of the files (named
    attachment-<k>-<name>), the same list as its report."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    entries, truncated = _entries(pdf)
    listed, files = [], []
    for k, (name, spec) in enumerate(entries, start=1):
        data = spec.get_file().read_bytes()
        entry = _describe(name, spec, data)
        listed.append(entry)
        if params["extract"]:
            files.append(OutputFile(f"attachment-{k}-{safe_filename(entry['filename'] or name)}",
                                    _OCTETS, data))
        del data
    if not params["extract"]:
        return json_output("attachments.json", {"attachments": listed, "truncated": truncated})
    return Output(files, {"attachments": listed, "truncated": truncated}, archive=True)


def _names(params: dict, count: int) -> list[str]:
    if params["names"] is None:
        return [f"attachment-{k}" for k in range(1, count + 1)]
    names = [safe_filename(n.strip()) for n in params["names"].split(",")]
    if len(names) != count:
        raise Problem("bad_parameter", f"names: {len(names)} names for {count} files")
    return names


def attach(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """The files after the first input embedded in it, in order, under `names`. A name
    the document already has gets -2, -3... (nothing is replaced)."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages, which=1)
    files = inputs[1:]
    taken = set(pdf.attachments.keys())
    added = []
    for name, data in zip(_names(params, len(files)), files):
        unique, n = name, 1
        while unique in taken:
            n += 1
            stem, dot, ext = name.rpartition(".")
            unique = f"{stem}-{n}.{ext}" if dot and stem else f"{name}-{n}"
        taken.add(unique)
        kind = sniff(bytes(data[:SNIFF_BYTES])) or _OCTETS
        pdf.attachments[unique] = pikepdf.AttachedFileSpec(pdf, bytes(data), filename=unique,
                                                           mime_type=kind)
        added.append(unique)
    return pdf_output(pdf, {"attached": added})
