"""metadata: set or delete document information, XMP kept in sync or dropped.
Runs in the CHILD."""
from __future__ import annotations

import pikepdf
import pikepdf.models.metadata  # noqa: F401  (open_metadata imports it lazily)

from notrace.operations._common import OUR_BUGS, Output, open_pdf, pdf_output

#: Our parameter -> (document information key, XMP property).
FIELDS = {
    "title": ("/Title", "dc:title"),
    "author": ("/Author", "dc:creator"),
    "subject": ("/Subject", "dc:description"),
    "keywords": ("/Keywords", "pdf:Keywords"),
    "creator": ("/Creator", "xmp:CreatorTool"),
    "producer": ("/Producer", "pdf:Producer"),
}


def metadata(inputs: list[memoryview], params: dict, *, max_pages: int) -> Output:
    """Absent parameters leave a field alone; an empty one deletes it. With xmp=sync an
    existing XMP packet gets the same changes (none is created: less to leak); when it
    cannot be parsed it is dropped, and the report says so. xmp=drop removes it."""
    pdf = open_pdf(inputs[0], password=params.get("password"), max_pages=max_pages)
    changes = {name: params[name] for name in FIELDS if params.get(name) is not None}
    for name, value in changes.items():
        key = FIELDS[name][0]
        if value:
            pdf.docinfo[key] = pikepdf.String(value)
        elif key in pdf.docinfo:
            del pdf.docinfo[key]
    report = {"changed": sorted(changes), "xmp": _update_xmp(pdf, changes, params["xmp"])}
    return pdf_output(pdf, report)


def _update_xmp(pdf: pikepdf.Pdf, changes: dict, mode: str) -> str:
    if "/Metadata" not in pdf.Root:
        return "absent"
    if mode == "drop":
        del pdf.Root["/Metadata"]
        return "dropped"
    try:
        # pikepdf would add itself as the editing tool and a modification date: no traces.
        with pdf.open_metadata(set_pikepdf_as_editor=False, update_docinfo=False,
                               strict=True) as xmp:
            for name, value in changes.items():
                prop = FIELDS[name][1]
                if value:
                    xmp[prop] = [value] if prop == "dc:creator" else value
                elif prop in xmp:
                    del xmp[prop]
    except (MemoryError, *OUR_BUGS):
        raise
    except Exception:  # unreadable XMP: dropping it is the only way to keep it in sync
        del pdf.Root["/Metadata"]
        return "dropped_unreadable"
    return "updated"
